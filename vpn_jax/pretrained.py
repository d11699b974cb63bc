"""Trained models shipped with the package.

    module, variables, config = vpn_jax.load_pretrained('moving_mnist_cpu')

Each model is a folder `vpn_jax/weights/<name>/` with two files:

* `params.msgpack`: the float32 parameters, as `flax.serialization.msgpack_serialize` writes a
  nested dict of arrays (no optimiser state; msgpack holds no code, so loading executes nothing);
* `model.json`: `{'config': the experiment config it was trained with, 'sha256': of
  params.msgpack, 'training': {'step', 'batch_size', 'train_seconds', 'cores', 'stages', ...}
  (totals over every training stage, warm starts included),
  'results': {...}}`; `results` holds the figures `python -m vpn_jax.score_pretrained` measured,
  which `tests/test_pretrained.py` checks the weights still reproduce.

`python -m vpn_jax.export_pretrained --workdir=W --name=N [--step=S]` exports a training run's
checkpoint into that layout.
"""

import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import serialization

from vpn_jax.model.vpn import build_model, init_variables
from vpn_jax.training.checkpoint import config_to_json, load_checkpoint_and_step
from vpn_jax.training.metrics import read_metrics, training_seconds

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')
PARAMS_FILE = 'params.msgpack'
INFO_FILE = 'model.json'


def names() -> List[str]:
    """The shipped models, sorted."""
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    return sorted(n for n in os.listdir(WEIGHTS_DIR)
                  if os.path.isfile(os.path.join(WEIGHTS_DIR, n, INFO_FILE)))


def model_dir(name: str, weights_dir: Optional[str]) -> str:
    root = weights_dir or WEIGHTS_DIR
    known = names() if weights_dir is None else sorted(os.listdir(root))
    if not isinstance(name, str) or name not in known:
        raise ValueError(f'Unknown pretrained model {name!r}; known: {known}.')
    return os.path.join(root, name)


def info(name: str, *, weights_dir: Optional[str] = None) -> Dict[str, Any]:
    """The model's `model.json`: config, sha256, training and results."""
    with open(os.path.join(model_dir(name, weights_dir), INFO_FILE), encoding='utf-8') as f:
        return json.load(f)


def _abstract_params(module, config: ml_collections.ConfigDict) -> Any:
    size = int(config.data.image_size)
    shapes = jax.eval_shape(
        lambda: init_variables(module, jax.random.key(0), height=size, width=size))
    return shapes['params']


def load_pretrained(
        name: str,
        *,
        weights_dir: Optional[str] = None) -> Tuple[Any, Dict[str, Any], ml_collections.ConfigDict]:
    """Loads a shipped model, like `load_checkpoint` loads a training run.

    Args:
      name: one of `vpn_jax.pretrained.names()`, e.g. 'moving_mnist_cpu'.
      weights_dir: a folder of exported models to read instead of the package's.
    Returns:
      (module, variables, config): a `VideoPixelNetwork`, `{'params': ...}` (float32 arrays on
      the default device) and the experiment config it was trained with.
    Raises:
      ValueError: for an unknown name (the message lists the known ones), or when the file does
        not match its recorded checksum or the model its config builds.
    """
    directory = model_dir(name, weights_dir)
    record = info(name, weights_dir=weights_dir)
    with open(os.path.join(directory, PARAMS_FILE), 'rb') as f:
        blob = f.read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != record['sha256']:
        raise ValueError(f'{os.path.join(directory, PARAMS_FILE)} is corrupt: its sha256 is '
                         f'{digest}, model.json records {record["sha256"]}. Reinstall vpn_jax.')
    config = ml_collections.ConfigDict(record['config'])
    module = build_model(config.model)
    params = serialization.msgpack_restore(blob)
    expected = _abstract_params(module, config)
    got_shapes = jax.tree_util.tree_map(lambda x: (tuple(x.shape), str(x.dtype)), params)
    want_shapes = jax.tree_util.tree_map(lambda x: (tuple(x.shape), str(x.dtype)), expected)
    if got_shapes != want_shapes:
        raise ValueError(f'{name}: the stored parameters do not match the model its config '
                         'builds (a different tree, shape or dtype).')
    return module, {'params': jax.tree_util.tree_map(jnp.asarray, params)}, config


def load_model(spec: str) -> Tuple[Any, Dict[str, Any], ml_collections.ConfigDict]:
    """(module, variables, config) of a shipped model's name (`load_pretrained`), a training
    workdir (its newest intact checkpoint, `load_checkpoint`) or 'WORKDIR@STEP' (that step's)."""
    path, _, step = spec.partition('@')
    if os.path.isdir(os.path.expanduser(path)):
        return load_checkpoint_and_step(path, int(step) if step else None)[:3]
    return load_pretrained(spec)


# Written into a workdir when its run starts from another model's parameters (train.init_from):
# the training stages those parameters had received, so that an export counts them too.
WARM_START_FILE = 'warm_start.json'
# The train fields that tell one training stage's recipe from another's.
STAGE_FIELDS = ('learning_rate', 'num_context', 'withhold_frames', 'withhold_decay_steps',
                'withhold_frames_end', 'binarize_frames', 'init_from', 'init_context_from')


def _stage(workdir: str, step: int, config: ml_collections.ConfigDict) -> Dict[str, Any]:
    """One run's share of the training: its steps, batch and seconds up to `step` (summed from
    metrics.jsonl) and the recipe fields (`STAGE_FIELDS`) it trained with."""
    path = os.path.join(workdir, 'metrics.jsonl')
    seconds = 0.0
    if os.path.exists(path):
        logged = training_seconds([r for r in read_metrics(path) if r['step'] <= step])
        seconds = logged[max(logged)] if logged else 0.0
    return {
        'run': os.path.basename(os.path.normpath(workdir)),
        'variant': config.get('variant', ''),
        'step': int(step),
        'batch_size': int(config.train.batch_size),
        'train_seconds': round(seconds, 1),
        'train': {
            k: config.train[k]
            for k in STAGE_FIELDS if k in config.train
        },
    }


def training_stages(workdir: str, step: int,
                    config: ml_collections.ConfigDict) -> List[Dict[str, Any]]:
    """The training the parameters at `step` of `workdir` received, oldest stage first: those its
    warm start (train.init_from) had received, as recorded in its `WARM_START_FILE`, then this
    run's `step` steps. A warm-started workdir without the file lists this run only."""
    stages = []
    path = os.path.join(workdir, WARM_START_FILE)
    if config.train.get('init_from', '') and os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            stages = list(json.load(f)['stages'])
    return stages + [_stage(workdir, step, config)]


def lineage(source: str) -> List[Dict[str, Any]]:
    """`training_stages` of a warm-start source: a shipped model's name, a training workdir (its
    newest intact checkpoint) or 'WORKDIR@STEP'."""
    path, _, step = source.partition('@')
    if os.path.isdir(os.path.expanduser(path)):
        path = os.path.abspath(os.path.expanduser(path))
        _, _, config, loaded = load_checkpoint_and_step(path, int(step) if step else None)
        return training_stages(path, loaded, config)
    # Every shipped model records its stages (tests/test_pretrained.py checks them).
    return list(info(source)['training']['stages'])


def write_warm_start(workdir: str, source: str) -> None:
    """Records in `workdir` the training stages of `source`, the run's train.init_from, at the
    moment the run starts from it (a shipped model may be replaced later)."""
    _write_json(os.path.join(workdir, WARM_START_FILE), {
        'init_from': source,
        'stages': lineage(source)
    })


def _training_record(workdir: str, step: int, config: ml_collections.ConfigDict,
                     cores: int) -> Dict[str, Any]:
    """Steps, sequences and training seconds the parameters at `step` received over all their
    training stages (`training_stages`: warm starts included), and the stages themselves."""
    stages = training_stages(workdir, step, config)
    steps = sum(s['step'] for s in stages)
    seconds = sum(s['train_seconds'] for s in stages)
    return {
        'step': int(steps),
        'batch_size': int(config.train.batch_size),
        'sequences_seen': int(sum(s['step'] * s['batch_size'] for s in stages)),
        'train_seconds': round(seconds, 1),
        'cores': int(cores),
        'core_hours': round(seconds * cores / 3600.0, 3),
        'stages': stages,
    }


def export(workdir: str,
           name: str,
           *,
           step: Optional[int] = None,
           cores: int = 1,
           weights_dir: Optional[str] = None) -> str:
    """Writes checkpoint `step` (default: newest) of `workdir` as shipped model `name`.

    Keeps the `results` of an existing model.json only when the parameters are unchanged.
    Returns the model's folder.
    """
    # The step actually loaded: with step=None a broken newest checkpoint falls back to an older.
    module, variables, config, trained_step = load_checkpoint_and_step(workdir, step)
    del module
    params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32),
                                    jax.device_get(variables['params']))
    params = serialization.to_state_dict(params)
    blob = serialization.msgpack_serialize(params)
    directory = os.path.join(weights_dir or WEIGHTS_DIR, name)
    os.makedirs(directory, exist_ok=True)
    digest = hashlib.sha256(blob).hexdigest()
    info_path = os.path.join(directory, INFO_FILE)
    results = {}
    if os.path.exists(info_path):
        with open(info_path, encoding='utf-8') as f:
            old = json.load(f)
        if old.get('sha256') == digest:
            results = old.get('results', {})
    record = {
        'name':
        name,
        'config':
        config_to_json(config),
        'sha256':
        digest,
        'training':
        _training_record(os.path.abspath(os.path.expanduser(workdir)), trained_step, config, cores),
        'results':
        results,
    }
    with open(os.path.join(directory, PARAMS_FILE), 'wb') as f:
        f.write(blob)
    write_info(directory, record)
    return directory


def write_info(directory: str, record: Dict[str, Any]) -> None:
    """Writes model.json atomically (a crash leaves the old file or the new one)."""
    _write_json(os.path.join(directory, INFO_FILE), record)


def _write_json(path: str, record: Dict[str, Any]) -> None:
    """Writes `record` to `path` atomically (a crash leaves the old file or the new one)."""
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(record, f, indent=1, sort_keys=True, allow_nan=False)
        f.write('\n')
    os.replace(tmp, path)
