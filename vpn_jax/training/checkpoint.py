"""Checkpoints with orbax: the train state, the config (JSON), the data position and a checksum.

Layout: `workdir/checkpoints/<step>/{state, config, data, checksum}`; the newest `keep` steps are
kept.

* `state`: the `TrainState` pytree (step, params, RMSProp state, plateau state).
* `config`: the whole experiment config as JSON, so that `load_checkpoint(workdir)` can rebuild
  the model without the config file.
* `data`: the training data position `{'seed': int, 'step': int}` (batches are a pure function
  of both, see `vpn_jax.data.input_pipeline`), and `'validated'`: whether the validation at this step
  was done before the save (training saves first, so that a failing validation loses nothing).
* `checksum`: `{'sha256': hex}` of the state's arrays as saved (`state_checksum`), verified on
  restore: orbax and tensorstore detect a truncated file or a missing item, but not flipped bits
  in a data file. Checkpoints without it (older ones) are restored without the check.

A checkpoint that cannot be read (a truncated or missing file, a missing item, a checksum that
does not match) is reported by its step; `restore_newest_intact` then falls back to the newest
checkpoint that can be read, and training moves the broken one aside (`BROKEN_DIR`), so that it
can save that step again.

From a notebook:

    module, variables, config = vpn_jax.load_checkpoint('/tmp/vpn_cpu')
    logits = module.apply(variables, video)
"""

import hashlib
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from vpn_jax.model.vpn import MODEL_FIELDS, build_model
from vpn_jax.training import state as state_lib

ITEMS = ('state', 'config', 'data', 'checksum')
CHECKPOINT_DIR = 'checkpoints'
BROKEN_DIR = 'broken_checkpoints'


class NonFiniteStateError(FloatingPointError):
    """A state with NaN or inf parameters was about to be saved."""


class CorruptCheckpointError(ValueError):
    """A checkpoint that cannot be read or whose content does not match its checksum."""


class NoIntactCheckpointError(CorruptCheckpointError):
    """Every checkpoint of a workdir is broken."""


class IncompatibleCheckpointError(ValueError):
    """An intact checkpoint of another model or seed than the config's (not a broken one)."""


def checkpoint_dir(workdir: str) -> str:
    """Absolute path of the checkpoint directory under `workdir` (orbax needs absolute paths)."""
    return os.path.join(os.path.abspath(os.path.expanduser(workdir)), CHECKPOINT_DIR)


def manager(workdir: str, *, keep: int = 3, create: bool = True) -> ocp.CheckpointManager:
    """An orbax CheckpointManager over `workdir/checkpoints`, keeping the newest `keep` steps.

    Saves are synchronous: a checkpoint is complete on disk when `save` returns, so a run killed
    right after cannot leave a half-written newest checkpoint (orbax also writes to a temporary
    directory and renames it when done).
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=keep,
                                           create=create,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=ITEMS)


def config_to_json(config: ml_collections.ConfigDict) -> Dict[str, Any]:
    """The config as JSON-compatible nested dicts (tuples become lists)."""
    return json.loads(config.to_json())


HostLeaves = List[Tuple[str, np.ndarray]]


def _host_leaves(state: Any) -> HostLeaves:
    """(path, numpy array) of every leaf of `state`, fetched to the host."""
    leaves = jax.tree_util.tree_leaves_with_path(state)
    values = jax.device_get([v for _, v in leaves])
    return [(jax.tree_util.keystr(k), np.asarray(v)) for (k, _), v in zip(leaves, values)]


def state_checksum(state: Any, host: Optional[HostLeaves] = None) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes (hex), computed on the host.

    host: `state`'s leaves already fetched (`_host_leaves(state)`), to fetch them only once.
    """
    h = hashlib.sha256()
    for path, value in host if host is not None else _host_leaves(state):
        h.update(f'{path}|{value.dtype.str}|{value.shape}|'.encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def nonfinite_params(state: Any, host: Optional[HostLeaves] = None) -> List[str]:
    """Paths of the floating-point parameter leaves of a train state that hold a NaN or inf.

    Only the parameters: the plateau state legitimately holds inf (its initial best value).
    """
    host = host if host is not None else _host_leaves(state)
    return [
        path for path, value in host if path.startswith('.params')
        and np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value))
    ]


def save(mngr: ocp.CheckpointManager, step: int, state: Any, config: ml_collections.ConfigDict,
         data_position: Mapping[str, int]) -> None:
    """Saves `state`, the config, the data position and the state's checksum as checkpoint `step`.

    Raises NonFiniteStateError (and saves nothing) when a parameter is NaN or inf: a checkpoint
    is a state to resume from, and a non-finite one would only fail again.
    """
    host = _host_leaves(state)
    bad = nonfinite_params(state, host)
    if bad:
        raise NonFiniteStateError(f'Not saving step {step}: non-finite parameters in '
                                  f'{", ".join(bad[:5])}{" ..." if len(bad) > 5 else ""}.')
    mngr.save(int(step),
              args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      config=ocp.args.JsonSave(config_to_json(config)),
                                      data=ocp.args.JsonSave(dict(data_position)),
                                      checksum=ocp.args.JsonSave(
                                          {'sha256': state_checksum(state, host)})))


def read_config(mngr: ocp.CheckpointManager, step: int) -> ml_collections.ConfigDict:
    """The config saved with checkpoint `step` (lists where the original had tuples)."""
    restored = mngr.restore(int(step), args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return ml_collections.ConfigDict(restored['config'])


def read_data_position(mngr: ocp.CheckpointManager, step: int) -> Dict[str, int]:
    """The data position saved with checkpoint `step`: {'seed': int, 'step': int, 'validated':
    0 or 1} (checkpoints without 'validated' were saved after their validation: 1)."""
    restored = mngr.restore(int(step), args=ocp.args.Composite(data=ocp.args.JsonRestore()))
    position = {k: int(v) for k, v in restored['data'].items()}
    position.setdefault('validated', 1)
    return position


def _step_path(mngr: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(mngr.directory), str(int(step)))


def has_checksum(mngr: ocp.CheckpointManager, step: int) -> bool:
    """Whether checkpoint `step` holds a checksum item (checkpoints of older versions do not)."""
    return os.path.isdir(os.path.join(_step_path(mngr, step), 'checksum'))


def restore_state(mngr: ocp.CheckpointManager, step: int, target: Any) -> Any:
    """Restores the train state of checkpoint `step` into the structure, shapes and shardings of
    `target` (a state, or a tree of `jax.ShapeDtypeStruct` with shardings).

    Verifies the state against the checkpoint's checksum item when it has one; raises
    CorruptCheckpointError naming the step when it does not match.
    """
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    args = {'state': ocp.args.StandardRestore(abstract)}
    checked = has_checksum(mngr, step)
    if checked:
        args['checksum'] = ocp.args.JsonRestore()
    restored = mngr.restore(int(step), args=ocp.args.Composite(**args))
    if checked:
        expected = restored['checksum']['sha256']
        actual = state_checksum(restored['state'])
        if actual != expected:
            raise CorruptCheckpointError(
                f'The checkpoint at step {step} in {mngr.directory} is corrupt: its state does '
                f'not match the checksum saved with it (sha256 {actual[:12]}... instead of '
                f'{expected[:12]}...).')
    else:
        logging.info(
            'Checkpoint %d in %s has no checksum (an older version wrote it); restored '
            'without verifying its content.', step, mngr.directory)
    return restored['state']


def _warn(message: str) -> None:
    """A warning in the log and on the console (console.quiet_unless_asked hides the log)."""
    logging.warning(message)
    print(f'WARNING: {message}', flush=True)


def restore_newest_intact(
    mngr: ocp.CheckpointManager,
    target: Any,
    *,
    read: Optional[Any] = None,
) -> Tuple[Optional[int], Any, Dict[str, Any], List[Tuple[int, str]]]:
    """The newest checkpoint that can be read and verified, newest first.

    Args:
      mngr: the manager.
      target: as for `restore_state`, or a function of `read(step)`'s result that returns it.
      read: optional `read(step) -> dict` of more items to read (e.g. the config and the data
        position); a failure there also marks the step as broken.
    Returns:
      (step, state, extra, broken): the step restored (None when there is no checkpoint; then
      state is None), its state, `read(step)`'s result, and [(step, reason)] of the newer
      checkpoints that were broken (each also reported with a warning).
    Raises:
      NoIntactCheckpointError when there are checkpoints and none of them can be read.
    """
    broken: List[Tuple[int, str]] = []
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            extra = read(step) if read is not None else {}
            state = restore_state(mngr, step, target(extra) if callable(target) else target)
        except (IncompatibleCheckpointError, MemoryError):
            raise  # Not a broken checkpoint: falling back would hide the real problem.
        except Exception as e:  # pylint: disable=broad-except
            reason = f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'
            if len(reason) > 300:
                reason = reason[:300] + '...'
            broken.append((step, reason))
            _warn(f'The checkpoint at step {step} in {mngr.directory} is broken ({reason}); '
                  'trying the next older one.')
            continue
        if broken:
            _warn(f'Falling back to the checkpoint at step {step}, the newest intact one in '
                  f'{mngr.directory} (broken: steps {[b for b, _ in broken]}).')
        return step, state, extra, broken
    if broken:
        raise NoIntactCheckpointError(f'No checkpoint in {mngr.directory} can be restored: ' +
                                      '; '.join(f'step {s}: {r}' for s, r in broken) +
                                      '. Move the checkpoints directory '
                                      'away to train from scratch.')
    return None, None, {}, broken


def move_aside(mngr: ocp.CheckpointManager, steps: List[int]) -> List[str]:
    """Moves the checkpoints `steps` to `workdir/broken_checkpoints/<step>-<time>`; their paths.

    Training does this with the broken checkpoints it fell back from, so that it can save those
    steps again, while the files stay for inspection.
    """
    workdir = os.path.dirname(str(mngr.directory).rstrip('/'))
    moved = []
    for step in steps:
        dest = os.path.join(workdir, BROKEN_DIR, f'{int(step)}-{int(time.time())}')
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(_step_path(mngr, step), dest)
        _warn(f'Moved the broken checkpoint at step {step} to {dest}.')
        moved.append(dest)
    return moved


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def model_config_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any]) -> Dict[str, Any]:
    """Model fields that differ and change the parameters: {field: (saved, current)}.

    Compute-only fields (dtype, remat) may change between runs and are ignored.
    """
    diff = {}
    for field in MODEL_FIELDS:
        a, b = _normalise(saved.get(field)), _normalise(current.get(field))
        if a != b:
            diff[field] = (a, b)
    return diff


def check_compatible(mngr: ocp.CheckpointManager, step: int,
                     config: ml_collections.ConfigDict) -> None:
    """Raises ValueError when checkpoint `step` holds a model with another configuration."""
    saved = read_config(mngr, step)
    diff = model_config_mismatch(saved.model.to_dict(), config.model.to_dict())
    if diff:
        lines = ', '.join(f'{k}: checkpoint {a!r} vs config {b!r}' for k, (a, b) in diff.items())
        raise IncompatibleCheckpointError(
            f'The checkpoint at step {step} in {mngr.directory} was written by a '
            f'different model config ({lines}). Use another --workdir, or the '
            'config the checkpoint was trained with.')


def load_checkpoint(
        workdir: str,
        step: Optional[int] = None) -> Tuple[Any, Dict[str, Any], ml_collections.ConfigDict]:
    """Rebuilds the model from the checkpoint's own config and loads its parameters.

    With step=None, a broken newest checkpoint is reported (a warning) and the newest intact one
    is loaded (`load_checkpoint_and_step` also says which).

    Args:
      workdir: the training run's --workdir (holding `checkpoints/`), or the `checkpoints`
        directory itself.
      step: the checkpoint step; None for the newest.
    Returns:
      (module, variables, config): a `VideoPixelNetwork`, `{'params': ...}` on the default
      device, and the experiment config it was trained with.
    """
    return load_checkpoint_and_step(workdir, step)[:3]


def load_checkpoint_and_step(
        workdir: str,
        step: Optional[int] = None) -> Tuple[Any, Dict[str, Any], ml_collections.ConfigDict, int]:
    """`load_checkpoint`, plus the step of the checkpoint it loaded."""
    path = os.path.abspath(os.path.expanduser(workdir))
    if os.path.basename(path.rstrip('/')) == CHECKPOINT_DIR:
        path = os.path.dirname(path.rstrip('/'))
    if not os.path.isdir(checkpoint_dir(path)):
        raise FileNotFoundError(f'No checkpoints in {checkpoint_dir(path)!r}.')
    mngr = manager(path, create=False)
    if step is not None and int(step) not in mngr.all_steps():
        raise FileNotFoundError(f'No checkpoint {step} in {checkpoint_dir(path)!r}; it has steps '
                                f'{mngr.all_steps()}.')
    if step is None and mngr.latest_step() is None:
        raise FileNotFoundError(f'No checkpoint in {checkpoint_dir(path)!r}.')

    def abstract_state(config):
        module = build_model(config.model)
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.eval_shape(
            lambda: state_lib.create_train_state(config, module, jax.random.key(0)))
        return module, jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)

    if step is not None:
        config = read_config(mngr, step)
        module, abstract = abstract_state(config)
        state = restore_state(mngr, step, abstract)
    else:
        # The newest intact checkpoint; each step's target shapes come from its own config.
        def read(s):
            config = read_config(mngr, s)
            module, abstract = abstract_state(config)
            return {'config': config, 'module': module, 'abstract': abstract}

        step, state, extra, _ = restore_newest_intact(mngr, lambda e: e['abstract'], read=read)
        module, config = extra['module'], extra['config']
    mngr.close()
    return module, {'params': state.params}, config, int(step)
