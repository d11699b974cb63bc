"""Robotic Pushing (and BAIR) data: shared format helpers and the input pipeline.

Sect. 6 of the paper: 20-frame 64x64 RGB videos, each frame paired with the robot's state and the
commanded action. Training (sect. 6.1) uses random 12-frame sub-sequences with their states and
actions; 2 frames are context and 10 are predicted. Evaluation uses the full 20-frame sequences:
2 context frames (with their states and actions) and 18 predicted frames, all actions given.

Sources. The pipeline reads any random-access source: an object with `len(source)` and
`source[i]` (and optionally `source.__getitems__(indices)`) returning a dict

    video:  uint8[T, 64, 64, 3]
    action: float32[T, A]
    state:  float32[T, S]

as `tfds.data_source` does over the prepared `robotic_pushing` / `bair_robot_pushing` builders
(see `data_source` below) and as `vpn_jax.data.push_sim.PushSimSource` does in memory.

Batches (numpy dicts; the caller moves them to devices and shards them):

    video:   uint8[B, T, 64, 64, 3]
    actions: float32[B, T, A]   the action at frame t leads from frame t to frame t + 1
    states:  float32[B, T, S]   the full sequence of states; the model takes states only for
                                the context frames: pass `states[:, :num_context]` (the paper
                                discards states of predicted frames in training and generation)
    mask:    bool[B]            evaluation only: False for padding in the last batch

Training batches are a pure function of `(seed, step)`: `train_batch(source, seed=..., step=...)`.
The checkpointable position of `TrainIterator` is just `{'seed', 'step'}`.
"""

import dataclasses
import functools
import math
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from vpn_jax.data import tfrecord

# Sect. 6 / 6.1 of the paper.
TRAIN_FRAMES = 12
NUM_CONTEXT = 2
EVAL_FRAMES = 20
IMAGE_SIZE = 64
# The original reader (prediction_input.py) keeps the first 95% of the sorted training files for
# training and the last 5% for validation (`train_val_split = 0.95`).
TRAIN_FILE_FRACTION = 0.95

# ------------------------------------------------------------------------------------------------
# Formats: shared by the TFDS builders in datasets/robotic_pushing and datasets/bair_robot_pushing.
# ------------------------------------------------------------------------------------------------


def tfds_features(num_frames: int, action_dim: int, state_dim: int):
    """TFDS features of one example: `video` uint8[T, 64, 64, 3] (ZLIB), `action`, `state`."""
    import tensorflow_datasets as tfds
    zlib = tfds.features.Encoding.ZLIB
    return tfds.features.FeaturesDict({
        'video':
        tfds.features.Tensor(shape=(num_frames, IMAGE_SIZE, IMAGE_SIZE, 3),
                             dtype=np.uint8,
                             encoding=zlib),
        'action':
        tfds.features.Tensor(shape=(num_frames, action_dim), dtype=np.float32),
        'state':
        tfds.features.Tensor(shape=(num_frames, state_dim), dtype=np.float32),
    })


def split_train_files(files: Sequence[str],
                      train_fraction: float = TRAIN_FILE_FRACTION) -> Tuple[List[str], List[str]]:
    """Deterministic hold-out of training *files*, as the original reader does.

    The files are sorted by name; the first `floor(train_fraction * n)` are training files, the
    rest validation files (264 push_train shards: 250 train, 14 validation).

    Returns:
      (train_files, validation_files), both sorted.
    """
    files = sorted(files)
    index = int(math.floor(train_fraction * len(files)))
    return files[:index], files[index:]


class FormatError(ValueError):
    """A record that parses as TFRecord framing but not as the expected example format."""


def _keys_cubic(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Cubic convolution kernel (Keys) with TF's legacy a = -0.75, for |x| < 2."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=16)
def legacy_bicubic_taps(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Taps of TF1's `tf.image.resize_bicubic` along one axis: int64[out, 4], float32[out, 4].

    TF1 semantics (align_corners=False, no half-pixel centres, the only mode in 2016; see
    tensorflow/core/kernels/image/resize_bicubic_op.cc, `LegacyScaler`): output pixel j samples
    input position `j * in_size / out_size` with the a = -0.75 cubic kernel over the 4 nearest
    input pixels, indices clamped to the border. The kernel offset is quantized to 1/1024 as TF's
    coefficient table does. For an integer ratio (512 -> 64) the weights are (0, 1, 0, 0): output
    pixel j is input pixel 8 j, so the resize is an exact subsampling.

    Returns:
      (indices, weights): output pixel j = sum_k weights[j, k] * input[indices[j, k]].
    """
    scale = np.float32(in_size / out_size)
    indices = np.zeros((out_size, 4), np.int64)
    weights = np.zeros((out_size, 4), np.float32)
    for j in range(out_size):
        pos = np.float32(j * scale)
        base = int(np.floor(pos))
        delta = np.rint((pos - base) * 1024) / 1024  # TF: lrintf(delta * kTableSize).
        for t, k in enumerate(range(-1, 3)):
            indices[j, t] = min(max(base + k, 0), in_size - 1)
            weights[j, t] = _keys_cubic(np.float64(k - delta))
    indices.flags.writeable = False
    weights.flags.writeable = False
    return indices, weights


def _resize_axis(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    indices, weights = legacy_bicubic_taps(x.shape[axis], size)
    shape = [1] * x.ndim
    shape[axis] = size
    out = 0.
    for t in range(4):
        if np.any(weights[:, t]):
            out = out + np.take(x, indices[:, t], axis=axis) * weights[:, t].reshape(shape)
    return out


def crop_and_resize(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """The 2016 reader's preprocessing: centre crop to a square, then TF1 bicubic to `size`.

    `tf.image.resize_image_with_crop_or_pad(image, m, m)` with m = min(H, W) keeps rows
    `(H - m) // 2 ...` and columns `(W - m) // 2 ...` (for 512x640: columns 64..575), then
    `tf.image.resize_bicubic` (see `legacy_bicubic_taps`). The float result is rounded to
    uint8 (exact for 512x640 -> 64x64, where the resize only subsamples).

    Args:
      image: uint8[H, W, C].
    Returns:
      uint8[size, size, C].
    """
    h, w = image.shape[:2]
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    crop = image[top:top + m, left:left + m].astype(np.float32)
    out = _resize_axis(_resize_axis(crop, size, 0), size, 1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def generate_examples(
    files: Sequence[str],
    parse: Callable[[bytes], Dict[str, np.ndarray]],
    *,
    skip_corrupt: bool = False,
    skipped: Optional[List[tfrecord.CorruptRecord]] = None
) -> Iterator[Tuple[str, Dict[str, np.ndarray]]]:
    """Yields `(key, example)` for each record of each file, `key = '<file name>:<index>'`.

    `parse(serialized) -> example` raises `FormatError` for a record that is not in the expected
    format; like framing damage (bad CRC), it is raised as `tfrecord.CorruptRecordError` naming
    the file and record index, or, with `skip_corrupt`, appended to `skipped` and skipped.
    """
    if skip_corrupt and skipped is None:
        raise ValueError('skip_corrupt=True needs a `skipped` list to report what was skipped.')
    from etils import epath
    for path in files:
        name = epath.Path(path).name
        for index, data in tfrecord.read_records(path, skip_corrupt=skip_corrupt, skipped=skipped):
            try:
                example = parse(data)
            except FormatError as e:
                record = tfrecord.CorruptRecord(str(path), index, str(e))
                if not skip_corrupt:
                    raise tfrecord.CorruptRecordError(record) from e
                skipped.append(record)
                continue
            yield f'{name}:{index}', example


def generate_split(split: str, files: Sequence[str],
                   parse: Callable[[bytes], Dict[str, np.ndarray]], *, skip_corrupt: bool,
                   metadata: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, np.ndarray]]]:
    """A builder's `_generate_examples` for one split: `generate_examples`, then the corrupt
    records it skipped are logged and counted in `metadata['skipped_records'][split]`."""
    from absl import logging
    skipped: List[tfrecord.CorruptRecord] = []
    yield from generate_examples(files, parse, skip_corrupt=skip_corrupt, skipped=skipped)
    for record in skipped:
        logging.warning('Skipped corrupt record %s', record)
    metadata.setdefault('skipped_records', {})[split] = len(skipped)
    logging.info('%s: %d files, %d corrupt records skipped.', split, len(files), len(skipped))


def float_vector(feature: Any, key: str, dim: int) -> np.ndarray:
    """float32[dim] from a `tf.train.Feature` holding a float_list; FormatError otherwise."""
    if feature.WhichOneof('kind') != 'float_list':
        raise FormatError(f'{key}: expected a float_list, got {feature.WhichOneof("kind")}')
    values = feature.float_list.value
    if len(values) != dim:
        raise FormatError(f'{key}: expected {dim} floats, got {len(values)}')
    return np.asarray(values, np.float32)


def single_bytes(feature: Any, key: str) -> bytes:
    """The one bytes value of a `tf.train.Feature`; FormatError otherwise."""
    if feature.WhichOneof('kind') != 'bytes_list' or len(feature.bytes_list.value) != 1:
        raise FormatError(f'{key}: expected one bytes value')
    return feature.bytes_list.value[0]


# ------------------------------------------------------------------------------------------------
# Input pipeline.
# ------------------------------------------------------------------------------------------------


def data_source(name: str, *, split: str, data_dir: Optional[str] = None):
    """`tfds.data_source` over a prepared split of 'robotic_pushing' or 'bair_robot_pushing'."""
    from vpn_jax import tfds_datasets
    return tfds_datasets.data_source(name, split=split, data_dir=data_dir)


def _get_many(source: Any, indices: Sequence[int]) -> List[Mapping[str, np.ndarray]]:
    if hasattr(source, '__getitems__'):
        return list(source.__getitems__([int(i) for i in indices]))
    return [source[int(i)] for i in indices]


def _stack(examples: Sequence[Mapping[str, np.ndarray]],
           windows: Sequence[slice]) -> Dict[str, np.ndarray]:
    return {
        'video':
        np.stack([np.asarray(e['video'])[w] for e, w in zip(examples, windows)]),
        'actions':
        np.stack([np.asarray(e['action'])[w]
                  for e, w in zip(examples, windows)]).astype(np.float32),
        'states':
        np.stack([np.asarray(e['state'])[w] for e, w in zip(examples, windows)]).astype(np.float32),
    }


def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, 0, epoch]).permutation(n)


def train_batch(source: Any,
                *,
                seed: int,
                step: int,
                batch_size: int,
                num_frames: int = TRAIN_FRAMES,
                process_index: int = 0,
                process_count: int = 1) -> Dict[str, np.ndarray]:
    """Training batch number `step`: a pure function of `(seed, step)` and the source.

    The stream of training examples is an endless sequence of epochs; each epoch is a fresh
    permutation of the source (drawn from `(seed, epoch)`), and example number p of the stream
    is cut to a random window of `num_frames` consecutive frames (offset drawn from `(seed, p)`).
    Batch `step` holds stream positions `step * batch_size ... + batch_size - 1`; with several
    processes, each takes its contiguous `batch_size // process_count` of them.

    Args:
      source: random-access source of dicts (see the module docstring), all of length T >=
        num_frames.
      seed: int seed.
      step: int >= 0, the batch number (the checkpointable position).
      batch_size: global batch size B (divisible by process_count).
      num_frames: frames per training window (12 in sect. 6.1).
    Returns:
      video uint8[B', num_frames, 64, 64, 3], actions float32[B', num_frames, A],
      states float32[B', num_frames, S], with B' = batch_size // process_count.
    """
    n = len(source)
    if n == 0:
        raise ValueError('The source is empty.')
    if batch_size % process_count:
        raise ValueError(f'batch_size {batch_size} is not divisible by {process_count} processes.')
    local = batch_size // process_count
    start = step * batch_size + process_index * local
    positions = np.arange(start, start + local)
    indices, windows = [], []
    perms: Dict[int, np.ndarray] = {}
    for p in positions:
        epoch = int(p // n)
        if epoch not in perms:
            perms[epoch] = _epoch_permutation(seed, epoch, n)
        indices.append(int(perms[epoch][p % n]))
    examples = _get_many(source, indices)
    for p, e in zip(positions, examples):
        length = np.asarray(e['video']).shape[0]
        if length < num_frames:
            raise ValueError(f'An example has {length} frames, fewer than {num_frames}.')
        offset = int(np.random.default_rng([seed, 1, int(p)]).integers(0, length - num_frames + 1))
        windows.append(slice(offset, offset + num_frames))
    return _stack(examples, windows)


@dataclasses.dataclass
class TrainIterator:
    """Endless iterator of `train_batch`es; its position is the checkpointable `{'seed', 'step'}`.

    >>> it = TrainIterator(source, seed=0, batch_size=64)
    >>> batch = next(it)                   # step 0
    >>> saved = it.get_state()             # {'seed': 0, 'step': 1}
    >>> TrainIterator(source, batch_size=64).set_state(saved)  # continues with step 1
    """
    source: Any
    batch_size: int
    seed: int = 0
    step: int = 0
    num_frames: int = TRAIN_FRAMES
    process_index: int = 0
    process_count: int = 1

    def __iter__(self) -> 'TrainIterator':
        return self

    def __next__(self) -> Dict[str, np.ndarray]:
        batch = train_batch(self.source,
                            seed=self.seed,
                            step=self.step,
                            batch_size=self.batch_size,
                            num_frames=self.num_frames,
                            process_index=self.process_index,
                            process_count=self.process_count)
        self.step += 1
        return batch

    def get_state(self) -> Dict[str, int]:
        return {'seed': int(self.seed), 'step': int(self.step)}

    def set_state(self, state: Mapping[str, int]) -> 'TrainIterator':
        self.seed, self.step = int(state['seed']), int(state['step'])
        return self


def eval_batches(source: Any,
                 *,
                 batch_size: int,
                 num_frames: int = EVAL_FRAMES,
                 process_index: int = 0,
                 process_count: int = 1) -> Iterator[Dict[str, np.ndarray]]:
    """All examples in order, the first `num_frames` frames of each, padded to full batches.

    Evaluation (sect. 6): frames `[:NUM_CONTEXT]` with their states and actions are context, the
    following `num_frames - NUM_CONTEXT` (18) frames are predicted given all their actions.
    The last batch is padded by repeating the last example, with `mask` False on the padding, so
    that every batch has the same shape (one compilation). With several processes, process i
    gets the i-th contiguous `batch_size // process_count` of every global batch.

    Yields:
      video uint8[B', num_frames, 64, 64, 3], actions float32[B', num_frames, A],
      states float32[B', num_frames, S], mask bool[B'], with B' = batch_size // process_count.
    """
    n = len(source)
    if batch_size % process_count:
        raise ValueError(f'batch_size {batch_size} is not divisible by {process_count} processes.')
    local = batch_size // process_count
    for start in range(0, n, batch_size):
        positions = np.arange(start + process_index * local, start + (process_index + 1) * local)
        mask = positions < n
        indices = np.minimum(positions, n - 1)
        examples = _get_many(source, indices)
        for e in examples:
            if np.asarray(e['video']).shape[0] < num_frames:
                raise ValueError(f'An example has fewer than {num_frames} frames.')
        batch = _stack(examples, [slice(0, num_frames)] * len(examples))
        batch['mask'] = mask
        yield batch


def num_eval_batches(source: Any, batch_size: int) -> int:
    """Number of batches `eval_batches` yields."""
    return -(-len(source) // batch_size)
