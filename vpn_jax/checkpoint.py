"""Checkpoints with orbax: the train state, the config (JSON) and the data position.

Layout: `workdir/checkpoints/<step>/{state, config, data}`; the newest `keep` steps are kept.

* `state`: the `TrainState` pytree (step, params, RMSProp state, plateau state).
* `config`: the whole experiment config as JSON, so that `load_checkpoint(workdir)` can rebuild
  the model without the config file.
* `data`: the training data position `{'seed': int, 'step': int}` (batches are a pure function
  of both, see `vpn_jax.input_pipeline`).

From a notebook:

    module, variables, config = vpn_jax.load_checkpoint('/tmp/vpn_cpu')
    logits = module.apply(variables, video)
"""

import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import jax
import ml_collections
import orbax.checkpoint as ocp

ITEMS = ('state', 'config', 'data')
CHECKPOINT_DIR = 'checkpoints'


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


def save(mngr: ocp.CheckpointManager, step: int, state: Any, config: ml_collections.ConfigDict,
         data_position: Mapping[str, int]) -> None:
    """Saves `state`, the config and the data position as checkpoint `step`."""
    mngr.save(int(step),
              args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      config=ocp.args.JsonSave(config_to_json(config)),
                                      data=ocp.args.JsonSave(dict(data_position))))


def read_config(mngr: ocp.CheckpointManager, step: int) -> ml_collections.ConfigDict:
    """The config saved with checkpoint `step` (lists where the original had tuples)."""
    restored = mngr.restore(int(step), args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return ml_collections.ConfigDict(restored['config'])


def read_data_position(mngr: ocp.CheckpointManager, step: int) -> Dict[str, int]:
    """The data position saved with checkpoint `step`: {'seed': int, 'step': int}."""
    restored = mngr.restore(int(step), args=ocp.args.Composite(data=ocp.args.JsonRestore()))
    return {k: int(v) for k, v in restored['data'].items()}


def restore_state(mngr: ocp.CheckpointManager, step: int, target: Any) -> Any:
    """Restores the train state of checkpoint `step` into the structure, shapes and shardings of
    `target` (a state, or a tree of `jax.ShapeDtypeStruct` with shardings)."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    restored = mngr.restore(int(step),
                            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return restored['state']


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def model_config_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any]) -> Dict[str, Any]:
    """Model fields that differ and change the parameters: {field: (saved, current)}.

    Compute-only fields (dtype, remat, image_chunk) may change between runs and are ignored.
    """
    from vpn_jax.vpn import MODEL_FIELDS
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
        raise ValueError(f'The checkpoint at step {step} in {mngr.directory} was written by a '
                         f'different model config ({lines}). Use another --workdir, or the '
                         'config the checkpoint was trained with.')


def load_checkpoint(
        workdir: str,
        step: Optional[int] = None) -> Tuple[Any, Dict[str, Any], ml_collections.ConfigDict]:
    """Rebuilds the model from the checkpoint's own config and loads its parameters.

    Args:
      workdir: the training run's --workdir (holding `checkpoints/`), or the `checkpoints`
        directory itself.
      step: the checkpoint step; None for the newest.
    Returns:
      (module, variables, config): a `VideoPixelNetwork`, `{'params': ...}` on the default
      device, and the experiment config it was trained with.
    """
    from vpn_jax import train  # Late import: train imports this module.
    path = os.path.abspath(os.path.expanduser(workdir))
    if os.path.basename(path.rstrip('/')) == CHECKPOINT_DIR:
        path = os.path.dirname(path.rstrip('/'))
    if not os.path.isdir(checkpoint_dir(path)):
        raise FileNotFoundError(f'No checkpoints in {checkpoint_dir(path)!r}.')
    mngr = manager(path, create=False)
    step = mngr.latest_step() if step is None else int(step)
    if step is None or step not in mngr.all_steps():
        raise FileNotFoundError(f'No checkpoint {"" if step is None else step} in '
                                f'{checkpoint_dir(path)!r}; it has steps {mngr.all_steps()}.')
    config = read_config(mngr, step)
    module = train.build_module(config)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.eval_shape(lambda: train.create_train_state(config, module, jax.random.key(0)))
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)
    state = restore_state(mngr, step, abstract)
    mngr.close()
    return module, {'params': state.params}, config
