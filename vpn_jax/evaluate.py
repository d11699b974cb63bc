r"""Test-set NLL of a trained VPN in the paper's units, as a row of the paper's tables.

    python -m vpn_jax.evaluate --config=experiments/moving_mnist.py:cpu --workdir=/tmp/vpn_cpu
    python -m vpn_jax.evaluate --checkpoint=/tmp/vpn_cpu [--split=validation] [--max_batches=0]

With --workdir the model is rebuilt from --config and must match the checkpoint's model; with
only --checkpoint (a workdir or its checkpoints/ folder) the checkpoint's own config is used, and
--config, if given, supplies the data and evaluation settings. Moving MNIST is scored in
nats/frame (sigmoid cross-entropy summed over each of the 10 predicted frames, Tables 1-2),
pushing in nats/dim (softmax NLL over the 18 predicted frames, Table 3). The result goes to
`<workdir>/eval_<split>.json` and to the console next to the paper's numbers; a --max_batches
that leaves part of the split out writes `eval_<split>_partial.json` instead, so that it never
replaces a full result (the training run's own). A NaN or inf result is an error (non-zero exit,
nothing written): it means the checkpoint holds a broken model.
"""

import math
import os
from typing import Any, Dict, Mapping, Optional

from absl import app
from absl import flags
import jax
import ml_collections

from vpn_jax.training import checkpoint as ckpt
from vpn_jax import console
from vpn_jax.data import input_pipeline
from vpn_jax.training import train as train_lib
from vpn_jax.training.results import format_table, write_result
from vpn_jax import xla_cpu


def _workdir(path: str) -> str:
    """The training workdir of `path` (a workdir or its checkpoints/ folder), absolute."""
    path = os.path.abspath(os.path.expanduser(path)).rstrip('/')
    return os.path.dirname(path) if os.path.basename(path) == ckpt.CHECKPOINT_DIR else path


def evaluate_checkpoint(workdir: str,
                        config: Optional[ml_collections.ConfigDict] = None,
                        *,
                        which: str = 'test',
                        max_batches: Optional[int] = None,
                        step: Optional[int] = None,
                        progress: bool = True) -> Dict[str, Any]:
    """Evaluates the newest intact (or `step`) checkpoint in `workdir` on the validation or test
    split.

    Args:
      workdir: a training workdir (or its checkpoints/ folder).
      config: the experiment config; its model must match the checkpoint's. None: the
        checkpoint's own config.
      which: 'test' or 'validation'.
      max_batches: evaluation batches (0: the whole split); None: config.eval.test_batches for
        the test split, config.eval.validation_batches for validation.
    Returns:
      {'nll', 'units', 'num_sequences', 'seconds', 'partial', 'step'}.
    """
    return evaluate_with_config(workdir,
                                config,
                                which=which,
                                max_batches=max_batches,
                                step=step,
                                progress=progress)[0]


def evaluate_with_config(workdir: str,
                         config: Optional[ml_collections.ConfigDict] = None,
                         *,
                         which: str = 'test',
                         max_batches: Optional[int] = None,
                         step: Optional[int] = None,
                         data_dir: Optional[str] = None,
                         progress: bool = True):
    """`evaluate_checkpoint`, returning (result, the config used); `data_dir` overrides
    config.data.tfds_data_dir."""
    path = _workdir(workdir)
    if not os.path.isdir(ckpt.checkpoint_dir(path)):
        raise FileNotFoundError(f'No checkpoints in {ckpt.checkpoint_dir(path)!r}.')
    module, variables, saved, step = ckpt.load_checkpoint_and_step(path, step)
    if config is None:
        config = saved
    else:
        diff = ckpt.model_config_mismatch(saved.model.to_dict(), config.model.to_dict())
        if diff:
            lines = ', '.join(f'{k}: checkpoint {a!r} vs config {b!r}'
                              for k, (a, b) in diff.items())
            raise ckpt.IncompatibleCheckpointError(
                f'The checkpoint at step {step} in {ckpt.checkpoint_dir(path)} was written by a '
                f'different model config ({lines}). Use the config the checkpoint was trained '
                'with, or --checkpoint alone.')
    if data_dir is not None:
        config = ml_collections.ConfigDict(config.to_dict())
        config.data.tfds_data_dir = data_dir
    mesh = train_lib.make_mesh()
    if config.eval.batch_size < 1 or config.eval.batch_size % mesh.size:
        raise ValueError(f'eval.batch_size={config.eval.batch_size} must be >= 1 and divisible by '
                         f'the {mesh.size} devices.')
    input_pipeline.check_data(config, train=False)
    source = input_pipeline.eval_source(config, which)  # Raises for a missing dir or split.
    input_pipeline.check_sources(config, None, {which: source})
    params = train_lib.replicate(variables['params'], mesh)
    if max_batches is None:
        max_batches = config.eval.test_batches if which == 'test' else \
            config.eval.validation_batches
    result = train_lib.evaluate_source(config,
                                       module,
                                       params,
                                       source,
                                       mesh,
                                       max_batches=max_batches,
                                       desc=which,
                                       progress=progress)
    result['step'] = int(step)
    return result, config


def check_finite_result(result: Mapping[str, Any], path: str, which: str) -> None:
    """Raises FloatingPointError when the NLL is NaN or inf (a broken model, not a score)."""
    if not math.isfinite(result['nll']):
        raise FloatingPointError(
            f'The {which} NLL of the checkpoint at step {result["step"]} in {path} is '
            f'{result["nll"]}: its parameters (or the data) give a non-finite likelihood. Nothing '
            'was written.')


def _define_flags():
    from ml_collections import config_flags
    config_flags.DEFINE_config_file('config', None, 'Experiment config (path:variant).')
    flags.DEFINE_string('workdir', None, 'Training workdir holding checkpoints/.')
    flags.DEFINE_string(
        'checkpoint', None, 'Checkpoint workdir (or its checkpoints/ folder); '
        'the model config is read from it.')
    flags.DEFINE_enum('split', 'test', ['test', 'validation'], 'Which split to evaluate.')
    flags.DEFINE_integer('max_batches', None, 'Evaluation batches (0: all; default: config).')
    flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
    flags.DEFINE_string('data_dir', None, 'Overrides config.data.tfds_data_dir.')
    flags.DEFINE_bool(
        'keep_freed_memory', True, 'glibc malloc keeps freed memory for the next batch: faster '
        'on the CPU, at the cost of holding the peak (see vpn_jax/xla_cpu/__init__.py).')


def main(argv):
    del argv
    fv = flags.FLAGS
    xla_cpu.configure(keep_freed=fv.keep_freed_memory)  # Before any device is touched.
    console.quiet_unless_asked()  # Orbax's INFO lines would bury the progress bar and results.
    path = fv.checkpoint or fv.workdir
    if not path:
        raise app.UsageError('Give --workdir (with --config) or --checkpoint.')
    if fv.workdir and fv.config is None:
        raise app.UsageError('--workdir needs --config; use --checkpoint to read the config '
                             'from the checkpoint.')
    result, config = evaluate_with_config(path,
                                          fv.config,
                                          which=fv.split,
                                          max_batches=fv.max_batches,
                                          step=fv.step,
                                          data_dir=fv.data_dir)
    check_finite_result(result, _workdir(path), fv.split)
    if jax.process_index() == 0:
        # Only an explicit --max_batches is an ad-hoc partial result; the config's own batch
        # limits give what the training run itself wrote.
        out = write_result(_workdir(path),
                           config,
                           result,
                           step=result['step'],
                           which=fv.split,
                           partial=fv.max_batches is not None and result['partial'])
        print(
            format_table(
                config, result,
                input_pipeline.eval_split(config, fv.split)[1]
                if config.data.name != 'push_sim' else fv.split))
        print(f'wrote {out}')


if __name__ == '__main__':
    _define_flags()
    app.run(main)
