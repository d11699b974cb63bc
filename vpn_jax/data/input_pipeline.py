"""Training and evaluation batches for Moving MNIST, Robotic Pushing and PushSim.

Every batch is a dict of numpy arrays (the host's share of the global batch):

    video:   uint8[B, T, S, S, C]   S = config.data.image_size (64 in the paper; smaller crops
                                    are for tests)
    actions: float32[B, T, A]       pushing only; all frames (sect. 6.1)
    states:  float32[B, T_c, S']    pushing only; the first num_context frames only (the paper
                                    discards the states of predicted frames)
    mask:    bool[B]                evaluation only; False on padding of the last batch

Training batches are a pure function of `(config.train.seed, step)` (and of the process index
in a multi-process run), so the data position to checkpoint is the step itself.

Datasets (`config.data.name`):

* 'moving_mnist': training sequences generated on the fly from the train digits
  (`vpn_jax.data.moving_mnist.sample_batch`); validation and test are the fixed splits of the TFDS
  dataset `moving_mnist_vpn` (`config.data.validation_dataset` / `test_dataset`), prepared on
  first use when `config.data.prepare_if_missing` (the offline 'generated' config needs no
  downloads).
* 'robotic_pushing' (or 'bair_robot_pushing'): the prepared TFDS splits; random 12-frame
  training windows (`vpn_jax.data.pushing.train_batch`), 20-frame evaluation sequences.
* 'push_sim': the procedural stand-in `vpn_jax.data.push_sim` (train / validation / test from
  seeds `config.data.sim_seeds`), for CPU runs and the action-conditioning check.
* 'video_array': your own videos, a uint8[N, T, H, W, C] .npy at `config.data.path`, split by
  `data.validation_fraction` / `data.test_fraction` (`vpn_jax.data.video_array`).
"""

import os
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import ml_collections
import numpy as np

from vpn_jax.data import moving_mnist
from vpn_jax.data import pushing
from vpn_jax.data import push_sim
from vpn_jax.data import video_array

DATASETS = ('moving_mnist', 'robotic_pushing', 'bair_robot_pushing', 'push_sim', 'video_array')
PUSHING = ('robotic_pushing', 'bair_robot_pushing', 'push_sim')
Batch = Dict[str, np.ndarray]


def is_pushing(config: ml_collections.ConfigDict) -> bool:
    """Whether the data are action-conditioned pushing videos (softmax, nats/dim)."""
    return config.data.name in PUSHING


def _crop(video: np.ndarray, size: int) -> np.ndarray:
    """Central `size` x `size` crop of uint8[..., H, W, C] (no-op when size is the frame size)."""
    h, w = video.shape[-3:-1]
    if size == h and size == w:
        return video
    if size > min(h, w):
        raise ValueError(f'data.image_size={size} exceeds the frames ({h}x{w}).')
    top, left = (h - size) // 2, (w - size) // 2
    return video[..., top:top + size, left:left + size, :]


def _model_inputs(batch: Mapping[str, np.ndarray],
                  config: ml_collections.ConfigDict,
                  shuffle_key: Sequence[int] = (0, )) -> Batch:
    """The batch as the model takes it: frames cropped, states of the context frames only,
    conditioning the model does not use dropped.

    With `config.data.shuffle_actions` (an ablation) each sequence gets the actions of another
    sequence of the batch (a roll by a random offset drawn from `(train.seed, *shuffle_key)`),
    so that the actions carry no information about the video.
    """
    out = {'video': _crop(np.asarray(batch['video'], np.uint8), config.data.image_size)}
    if 'actions' in batch and config.model.action_dim:
        out['actions'] = np.asarray(batch['actions'], np.float32)
        n = len(out['actions'])
        if config.data.get('shuffle_actions', False) and n > 1:
            rng = np.random.default_rng([config.train.seed, 7, *shuffle_key])
            out['actions'] = np.roll(out['actions'], 1 + int(rng.integers(n - 1)), axis=0)
    if 'states' in batch and config.model.state_dim:
        out['states'] = np.asarray(batch['states'][:, :config.data.num_context], np.float32)
    if 'mask' in batch:
        out['mask'] = np.asarray(batch['mask'], bool)
    return out


# ------------------------------------------------------------------------------------------------
# Sources and checks.


def _tfds_source(dataset: str, split: str, config: ml_collections.ConfigDict):
    """A `tfds.data_source` over `dataset` ('name' or 'name/config'), split `split`."""
    from vpn_jax import tfds_datasets
    data_dir = config.data.tfds_data_dir or None
    manual_dir = config.data.get('manual_dir', '') or None
    return tfds_datasets.data_source(dataset,
                                     split=split,
                                     data_dir=data_dir,
                                     manual_dir=manual_dir,
                                     prepare_if_missing=config.data.get(
                                         'prepare_if_missing', False))


def _sim_source(config: ml_collections.ConfigDict, which: str) -> push_sim.PushSimSource:
    seeds = dict(zip(('train', 'validation', 'test'), config.data.sim_seeds))
    sizes = dict(zip(('train', 'validation', 'test'), config.data.sim_sizes))
    num_frames = max(config.data.num_frames, config.data.eval_num_frames)
    sim = push_sim.PushSimConfig(num_frames=num_frames,
                                 turn_probability=config.data.get('sim_turn_probability', 0.3),
                                 downsample=config.data.get('sim_downsample', 1),
                                 random_floor=config.data.get('sim_random_floor', True))
    return push_sim.PushSimSource(seeds[which], sizes[which], sim)


def eval_split(config: ml_collections.ConfigDict, which: str) -> tuple:
    """(dataset, split) evaluated as `which` ('validation' or 'test')."""
    if which not in ('validation', 'test'):
        raise ValueError(f"which must be 'validation' or 'test'; got {which!r}.")
    if config.data.name == 'video_array':
        return config.data.path, which
    return config.data[f'{which}_dataset'], config.data[f'{which}_split']


def _array_split(config: ml_collections.ConfigDict, split: str) -> video_array.VideoArraySource:
    return video_array.open_split(config.data.path,
                                  split,
                                  validation_fraction=config.data.validation_fraction,
                                  test_fraction=config.data.test_fraction,
                                  split_seed=config.data.get('split_seed', 0))


def eval_source(config: ml_collections.ConfigDict, which: str) -> Any:
    """Random-access source (`len`, `[i]`) of the validation or test split.

    Examples are dicts with 'video' uint8[T, H, W, C] and, for pushing, 'action' and 'state'.
    Raises FileNotFoundError / ValueError when the data directory or the split is missing.
    """
    if config.data.name == 'push_sim':
        return _sim_source(config, which)
    if config.data.name == 'video_array':
        return _array_split(config, which)
    dataset, split = eval_split(config, which)
    return _tfds_source(dataset, split, config)


def train_source(config: ml_collections.ConfigDict) -> Any:
    """Moving MNIST: the train digits uint8[N, 28, 28]; pushing: a random-access source."""
    name = config.data.name
    if name == 'moving_mnist':
        return moving_mnist.load_digits(config.data.digits,
                                        'train',
                                        directory=config.data.digits_dir or None,
                                        data_dir=config.data.tfds_data_dir or None)
    if name == 'push_sim':
        return _sim_source(config, 'train')
    if name == 'video_array':
        return _array_split(config, 'train')
    return _tfds_source(name, config.data.get('train_split', 'train'), config)


def check_data(config: ml_collections.ConfigDict, *, train: bool = True) -> None:
    """Raises before any compute when the dataset is unknown or a directory/split is missing.

    Checks the names and directories only (cheap); opening the sources raises for splits that a
    prepared dataset lacks.
    """
    name = config.data.name
    if name not in DATASETS:
        raise ValueError(f'Unknown dataset {name!r}; expected one of {DATASETS}.')
    for field in ('tfds_data_dir', 'digits_dir', 'manual_dir'):
        path = config.data.get(field, '')
        if path and not os.path.isdir(os.path.expanduser(path)):
            raise FileNotFoundError(f'config.data.{field}={path!r} does not exist.')
    if name == 'moving_mnist' and train and config.data.digits == 'idx' and \
            not config.data.digits_dir:
        raise ValueError("data.digits='idx' needs data.digits_dir (the folder with the IDX files).")
    # Evaluation scores frames num_context.. of eval_num_frames; training may use shorter
    # sequences with its own train.num_context (checked in train.check_config).
    nc, t = config.data.num_context, config.data.get('eval_num_frames', config.data.num_frames)
    if not 1 <= nc < t:
        raise ValueError(f'data.num_context must be in [1, {t - 1}] (data.eval_num_frames - 1); '
                         f'got {nc}.')
    if name == 'video_array':
        path = config.data.get('path', '')
        if not path:
            raise ValueError("data.name='video_array' needs data.path: a .npy of uint8[N, T, H, "
                             "W, C] videos (vpn_jax.data.video_array.save).")
        if not os.path.isfile(os.path.expanduser(path)):
            raise FileNotFoundError(f'config.data.path={path!r} does not exist; write it with '
                                    'vpn_jax.data.video_array.save(path, videos).')
        videos = video_array.load(path)
        video_array.split_indices(len(videos),
                                  validation_fraction=config.data.validation_fraction,
                                  test_fraction=config.data.test_fraction)
        for field in ('num_frames', 'eval_num_frames'):
            if config.data[field] > videos.shape[1]:
                raise ValueError(f'data.{field}={config.data[field]} exceeds the '
                                 f'{videos.shape[1]} frames of the videos in {path}.')
        if videos.shape[-1] != config.model.num_colors:
            raise ValueError(f'The videos in {path} have {videos.shape[-1]} colour channels; set '
                             f'model.num_colors={videos.shape[-1]}.')
    if name == 'push_sim' and len(config.data.sim_sizes) != 3:
        raise ValueError('data.sim_sizes must give (train, validation, test) sizes.')


def _first_video_shape(source: Any) -> Optional[Tuple[int, ...]]:
    """(T, H, W, C) of the first sequence of a random-access source; None when it is empty."""
    if not len(source):
        return None
    return tuple(np.shape(source[0]['video']))


def check_sources(config: ml_collections.ConfigDict,
                  train_source: Any = None,
                  eval_sources: Optional[Mapping[str, Any]] = None) -> None:
    """Raises ValueError, naming the config field, when the sequences are too short for
    data.num_frames / data.eval_num_frames or their frames smaller than data.image_size.

    Reads one sequence of each source; meant to run right after the sources are opened, before
    the model is built, so that such a config fails before any compute (and before a workdir is
    created).
    """
    size = config.data.image_size
    checks = []
    if train_source is not None:
        if config.data.name == 'moving_mnist':
            shape = (None, moving_mnist.FRAME_SIZE, moving_mnist.FRAME_SIZE, 1)
        else:
            shape = _first_video_shape(train_source)
        checks.append(('training', 'num_frames', shape))
    for which, source in (eval_sources or {}).items():
        if source is not None:
            checks.append((which, 'eval_num_frames', _first_video_shape(source)))
    for which, field, shape in checks:
        if shape is None:
            continue
        t, h, w = shape[:3]
        if t is not None and config.data[field] > t:
            raise ValueError(f'data.{field}={config.data[field]} exceeds the {t} frames of the '
                             f'{which} sequences of {config.data.name!r}.')
        if size > min(h, w):
            raise ValueError(f'data.image_size={size} exceeds the {h}x{w} frames of the {which} '
                             f'sequences of {config.data.name!r}.')


# ------------------------------------------------------------------------------------------------
# Batches.


def train_batch(config: ml_collections.ConfigDict,
                source: Any,
                step: int,
                *,
                process_index: int = 0,
                process_count: int = 1) -> Batch:
    """This process's share of training batch `step` (a pure function of seed, step, process).

    Args:
      config: the experiment config (data.*, train.batch_size, train.seed).
      source: `train_source(config)`.
      step: the batch number (the checkpointed data position).
    Returns:
      video uint8[B', T, S, S, C] (T = data.num_frames), actions float32[B', T, A] and states
      float32[B', num_context, S'] when the model takes them; B' = batch_size // process_count.
    """
    global_batch = config.train.batch_size
    if global_batch % process_count:
        raise ValueError(f'train.batch_size={global_batch} is not divisible by the {process_count} '
                         'processes.')
    local = global_batch // process_count
    if config.data.name == 'moving_mnist':
        # Process p takes stream batch `step * P + p` of size B'; one process: batch `step`.
        video = moving_mnist.sample_batch(source,
                                          local,
                                          config.train.seed,
                                          step * process_count + process_index,
                                          num_frames=config.data.num_frames)
        return _model_inputs({'video': video}, config)
    if config.data.name == 'video_array':
        # Every process draws the global batch and keeps its share.
        video = video_array.train_batch(source,
                                        batch_size=global_batch,
                                        num_frames=config.data.num_frames,
                                        seed=config.train.seed,
                                        step=step)
        return _model_inputs({'video': video[process_index * local:(process_index + 1) * local]},
                             config)
    batch = pushing.train_batch(source,
                                seed=config.train.seed,
                                step=step,
                                batch_size=global_batch,
                                num_frames=config.data.num_frames,
                                process_index=process_index,
                                process_count=process_count)
    return _model_inputs(batch, config, (0, step, process_index))


def _video_eval(source: Any, batch_size: int, num_frames: int, process_index: int,
                process_count: int, max_batches: int) -> Iterator[Batch]:
    n = len(source)
    local = batch_size // process_count
    for b, start in enumerate(range(0, n, batch_size)):
        if max_batches and b >= max_batches:
            return
        positions = np.arange(start + process_index * local, start + (process_index + 1) * local)
        indices = np.minimum(positions, n - 1)
        if hasattr(source, '__getitems__'):
            examples = source.__getitems__([int(i) for i in indices])
        else:
            examples = [source[int(i)] for i in indices]
        video = np.stack([np.asarray(e['video'])[:num_frames] for e in examples])
        yield {'video': video, 'mask': positions < n}


def num_eval_batches(config: ml_collections.ConfigDict, source: Any, max_batches: int = 0) -> int:
    """Batches that `eval_batches` yields for `source`."""
    n = -(-len(source) // config.eval.batch_size)
    return min(n, max_batches) if max_batches else n


def eval_batches(config: ml_collections.ConfigDict,
                 source: Any,
                 *,
                 max_batches: int = 0,
                 process_index: int = 0,
                 process_count: int = 1) -> Iterator[Batch]:
    """The split in order, in global batches of `config.eval.batch_size`, padded, with `mask`.

    Sequences have `data.eval_num_frames` frames (Moving MNIST 20, pushing 20: 2 context and 18
    predicted). `max_batches` > 0 keeps only the first batches (a fixed prefix of the split).

    Yields:
      video uint8[B', T, S, S, C], mask bool[B'] (False on padding), and for pushing actions
      float32[B', T, A], states float32[B', num_context, S']; B' = batch_size // process_count.
    """
    batch_size = config.eval.batch_size
    if batch_size % process_count:
        raise ValueError(f'eval.batch_size={batch_size} is not divisible by the {process_count} '
                         'processes.')
    num_frames = config.data.eval_num_frames
    if config.data.name in ('moving_mnist', 'video_array'):
        it = _video_eval(source, batch_size, num_frames, process_index, process_count, max_batches)
    else:
        it = pushing.eval_batches(source,
                                  batch_size=batch_size,
                                  num_frames=num_frames,
                                  process_index=process_index,
                                  process_count=process_count)
    for b, batch in enumerate(it):
        if max_batches and b >= max_batches:
            return
        yield _model_inputs(batch, config, (1, b, process_index))


def evaluation_sequences(config: ml_collections.ConfigDict, split: str,
                         num_videos: int) -> Dict[str, np.ndarray]:
    """The first `num_videos` sequences of the evaluation split `split` ('validation' or 'test').

    Returns video uint8[V, T, S, S, C] and, for pushing, actions float32[V, T, A] and states
    float32[V, num_context, S'], without padding (V = num_videos, or fewer if the split is
    smaller).
    """
    source = eval_source(config, split)
    batches = eval_batches(config,
                           source,
                           max_batches=-(-num_videos // max(1, config.eval.batch_size)))
    parts = []
    for batch in batches:
        parts.append({k: v[batch['mask']] for k, v in batch.items() if k != 'mask'})
        if sum(len(p['video']) for p in parts) >= num_videos:
            break
    keys = [k for k in ('video', 'actions', 'states') if k in parts[0]]
    return {k: np.concatenate([p[k] for p in parts])[:num_videos] for k in keys}


def model_args(batch: Mapping[str, Any]) -> tuple:
    """(video, actions or None, states or None) from a batch dict."""
    return batch['video'], batch.get('actions'), batch.get('states')
