r"""Markdown table of recipe probes by what a viewer sees, on the validation split.

    python benchmarks/probe_viewer.py --probes=withhold50:W1,withhold50_ctx:W2 \
        [--steps=1200,600] [--sequences=32] [--samples=4] [--json=OUT.json]

Each probe is a workdir of `python -m vpn_jax.main` (a `cpu_vpn`-like recipe with one change),
or a shipped model's name (the probes' start, at step 0).
For each, the checkpoint at its step (default: the newest) is scored on the first `--sequences`
validation sequences: the validation NLL, the context gain (`vpn_jax.video_metrics`), and of
`--samples` samples per sequence at temperature 1 (seed 0) the lit-pixel mass ratio at
generated frames 11, 15 and 20 (1-based, as the paper counts them) and the best-of-K IoU at
frame 11 and averaged over frames 11-20. `cpu h` is the run's training time to that step
(evaluation excluded) in core-hours of the host that trained it, from its metrics.jsonl.
The validation split chooses recipes; the test split scores only what ships.
"""

import json
import os

from absl import app
from absl import flags
import jax
import numpy as np

from vpn_jax.training.metrics import read_metrics, training_seconds

_PROBES = flags.DEFINE_list('probes', None, 'NAME:WORKDIR, ...')
_STEPS = flags.DEFINE_list('steps', [], 'Checkpoint step per probe (default: the newest).')
_SEQUENCES = flags.DEFINE_integer('sequences', 32, 'Validation sequences.')
_SAMPLES = flags.DEFINE_integer('samples', 4, 'Samples per sequence.')
_JSON = flags.DEFINE_string('json', None, 'Also write the figures here.')


def score_probe(workdir: str, step, sequences: int, samples: int) -> dict:
    """The table row's figures for the checkpoint `step` (None: newest) of `workdir`."""
    from vpn_jax import video_metrics
    from vpn_jax.data.input_pipeline import evaluation_sequences
    from vpn_jax.training.checkpoint import load_checkpoint_and_step
    if os.path.isdir(workdir):
        module, variables, config, step = load_checkpoint_and_step(workdir, step)
        seconds = training_seconds(read_metrics(os.path.join(workdir, 'metrics.jsonl')))
    else:  # A shipped model: the probes' common start.
        from vpn_jax.pretrained import load_pretrained
        module, variables, config = load_pretrained(workdir)
        step, seconds = 0, {0: 0.0}
    video = evaluation_sequences(config, 'validation', sequences)['video']
    result = video_metrics.viewer_metrics(module,
                                          variables,
                                          video,
                                          num_context=int(config.data.num_context),
                                          num_samples=samples,
                                          rng=jax.random.key(0))
    result.update(step=int(step), core_hours=seconds.get(int(step), float('nan')) / 3600)
    return result


def main(argv):
    del argv
    steps = [int(s) for s in _STEPS.value] or [None] * len(_PROBES.value)
    print('| probe | steps | cpu h | NLL | context gain | mass 11 / 15 / 20 '
          '| best-of-K IoU 11 / mean 11-20 |')
    print('| --- | ---: | ---: | ---: | ---: | --- | --- |')
    out = {}
    for spec, step in zip(_PROBES.value, steps):
        name, workdir = spec.split(':', 1)
        r = score_probe(workdir, step, _SEQUENCES.value, _SAMPLES.value)
        out[name] = r
        mass, iou = r['mass_ratio'], r['iou_best']
        print(
            f'| {name} | {r["step"]:,} | {r["core_hours"]:.2f} | {r["nll"]:.1f} | '
            f'{r["context_gain"]:+.1f} | {mass[0]:.2f} / {mass[4]:.2f} / {mass[-1]:.2f} | '
            f'{iou[0]:.2f} / {np.mean(iou):.2f} |',
            flush=True)
    if _JSON.value:
        with open(_JSON.value, 'w') as f:
            json.dump(out, f, indent=1)


if __name__ == '__main__':
    flags.mark_flags_as_required(['probes'])
    app.run(main)
