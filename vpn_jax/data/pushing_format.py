"""The Robotic Pushing and BAIR formats: what the TFDS builders in datasets/ share.

Sect. 6 of the paper: 20-frame 64x64 RGB videos, each frame paired with the robot's state and the
commanded action. The builders read the original TFRecords (`vpn_jax.data.tfrecord`), crop and
resize the frames as the original reader did, and write TFDS examples

    video:  uint8[T, 64, 64, 3]
    action: float32[T, A]
    state:  float32[T, S]

which `vpn_jax.data.pushing` turns into training and evaluation batches.
"""

import functools
import math
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

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


# ------------------------------------------------------------------------ the builders' shared parts


def builder_configs(config_cls: Callable[..., Any]) -> List[Any]:
    """A pushing builder's two configs: corrupt records are errors, or skipped and counted."""
    return [
        config_cls(name='default', description='Corrupt records are errors.'),
        config_cls(name='skip_corrupt',
                   skip_corrupt=True,
                   description='Corrupt records are skipped, counted in '
                   "info.metadata['skipped_records'] and logged."),
    ]


def train_validation_files(files: Sequence[Any], what: str) -> Tuple[List[Any], List[Any]]:
    """`split_train_files`, refusing fewer than 2 files (`what` names them in the error)."""
    train, validation = split_train_files(files)
    if not train or not validation:
        raise ValueError(f'Need at least 2 {what} for the 95/5 train/validation file split, '
                         f'found {len(files)}.')
    return train, validation


class RecordSplits:
    """Mixin of the pushing builders: a split's examples from its record files.

    The builder defines `parse_record(self, serialized) -> example` and has a config with
    `skip_corrupt`; list it before `tfds.core.GeneratorBasedBuilder` in the bases.
    """

    def _generate_examples(self, split: str, files: Sequence[Any]):
        return generate_split(split,
                              files,
                              self.parse_record,
                              skip_corrupt=self.builder_config.skip_corrupt,
                              metadata=self.info.metadata)
