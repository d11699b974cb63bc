"""The robotic_pushing and bair_robot_pushing builders on tiny files in the real formats."""

import shutil

import numpy as np
import pytest

import pushing_fixtures
from vpn_jax.data import pushing_format
from vpn_jax import tfds_datasets
from vpn_jax.data import tfrecord
from vpn_jax_datasets.bair_robot_pushing import bair_robot_pushing_dataset_builder as bair
from vpn_jax_datasets.robotic_pushing import robotic_pushing_dataset_builder as push

JPEG_TOLERANCE = 4  # Flat colour blocks, quality 95, no chroma subsampling.


def _by_action(source):
    """Example lookup independent of the order in which TFDS stored them."""
    return {np.asarray(source[i]['action']).tobytes(): source[i] for i in range(len(source))}


def _check_split(source, expected, video_tolerance):
    assert len(source) == len(expected)
    stored = _by_action(source)
    for key, exp in expected.items():
        got = stored[exp['action'].tobytes()]
        assert got['video'].dtype == np.uint8 and got['video'].shape == exp['video'].shape, key
        diff = np.abs(got['video'].astype(int) - exp['video'].astype(int)).max()
        assert diff <= video_tolerance, (key, diff)
        np.testing.assert_array_equal(got['action'], exp['action'])
        np.testing.assert_array_equal(got['state'], exp['state'])
        assert got['action'].dtype == got['state'].dtype == np.float32


@pytest.fixture(scope='module')
def push_prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp('push')
    expected = pushing_fixtures.write_push_manual_dir(str(root / 'manual'))
    builder = tfds_datasets.prepare('robotic_pushing',
                                    data_dir=str(root / 'data'),
                                    manual_dir=str(root / 'manual'))
    return builder, expected


@pytest.fixture(scope='module')
def bair_manual(tmp_path_factory):
    root = tmp_path_factory.mktemp('bair')
    expected = pushing_fixtures.write_bair_manual_dir(str(root / 'manual'))
    return root, expected


def test_push_values_read_back(push_prepared):
    builder, expected = push_prepared
    assert set(builder.info.splits) == {'train', 'validation', 'test_seen', 'test_novel'}
    for split, exp in expected.items():
        _check_split(builder.as_data_source(split=split), exp, JPEG_TOLERANCE)
    assert dict(builder.info.metadata['skipped_records']) == {s: 0 for s in expected}


def test_push_validation_is_last_five_percent_of_sorted_train_files(push_prepared):
    _, expected = push_prepared
    # 3 shards: floor(0.95 * 3) = 2 for training, the last one for validation.
    assert {k.split(':')[0]
            for k in expected['validation']} == {'push_train.tfrecord-00002-of-00003'}
    files = [f'push_train.tfrecord-{i:05d}-of-00264' for i in range(264)]
    train, validation = pushing_format.split_train_files(files[::-1])
    assert train == files[:250] and validation == files[250:]


def test_crop_then_resize_geometry():
    image = pushing_fixtures.push_image(
        np.array([[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [100, 110, 120]]], np.uint8))
    assert image.shape == (512, 640, 3)
    out = pushing_format.crop_and_resize(image)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # The magenta 64-pixel borders are gone; the quadrants land on 32x32 blocks.
    assert not np.any(np.all(out == pushing_fixtures.BORDER, axis=-1))
    np.testing.assert_array_equal(out[:32, :32], np.broadcast_to([10, 20, 30], (32, 32, 3)))
    np.testing.assert_array_equal(out[32:, 32:], np.broadcast_to([100, 110, 120], (32, 32, 3)))
    # TF1 legacy bicubic with an integer ratio is an exact subsampling at 8 j (columns from 64).
    noise = np.random.default_rng(0).integers(0, 256, (512, 640, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pushing_format.crop_and_resize(noise), noise[::8, 64:576:8])


def test_legacy_bicubic_taps():
    for in_size, out_size in ((512, 64), (100, 64), (30, 64)):
        indices, weights = pushing_format.legacy_bicubic_taps(in_size, out_size)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
        assert indices.min() >= 0 and indices.max() < in_size
    constant = np.full((100, 130, 3), 77, np.uint8)
    np.testing.assert_array_equal(pushing_format.crop_and_resize(constant), 77)


@pytest.mark.parametrize('kwargs, message', [
    (dict(drop_key='move/7/endeffector/vec_pitch_yaw'), 'missing key move/7/endeffector'),
    (dict(vector_length=4), 'expected 5 floats, got 4'),
    (dict(bad_jpeg_step=3), 'move/3/image/encoded: undecodable JPEG'),
    (dict(num_steps=19), 'missing key move/19/image/encoded'),
])
def test_push_corrupt_record_named_or_skipped(tmp_path, kwargs, message):
    good, _ = pushing_fixtures.push_record(0)
    bad, _ = pushing_fixtures.push_record(1, **kwargs)
    path = str(tmp_path / 'push_train.tfrecord-00000-of-00001')
    tfrecord.write_records(path, [good, bad, good])
    parse = push.parse_example
    with pytest.raises(tfrecord.CorruptRecordError) as error:
        list(pushing_format.generate_examples([path], parse))
    assert str(error.value).startswith(f'{path}: record 1: ') and message in str(error.value)
    skipped = []
    keys = [
        k for k, _ in pushing_format.generate_examples(
            [path], parse, skip_corrupt=True, skipped=skipped)
    ]
    assert keys == ['push_train.tfrecord-00000-of-00001:0', 'push_train.tfrecord-00000-of-00001:2']
    assert [(s.path, s.index) for s in skipped] == [(path, 1)]


def test_push_wrong_image_size_and_garbage_are_format_errors():
    with pytest.raises(pushing_format.FormatError, match='not a tf.train.Example'):
        push.parse_example(b'\xff\xff\xff garbage')
    data, _ = pushing_fixtures.push_record(0)
    with pytest.raises(pushing_format.FormatError, match='image is 512x640, expected 480x640'):
        push.parse_example(data, original_size=(480, 640))


def test_bair_values_read_back(bair_manual, tmp_path):
    root, expected = bair_manual
    builder = tfds_datasets.prepare('bair_robot_pushing',
                                    data_dir=str(tmp_path),
                                    manual_dir=str(root / 'manual'))
    assert set(builder.info.splits) == {'train', 'validation', 'test'}
    for split, exp in expected.items():
        _check_split(builder.as_data_source(split=split), exp, video_tolerance=0)


def test_bair_tarball_not_extracted_is_explained(tmp_path):
    (tmp_path / bair.TARBALL).write_bytes(b'')
    with pytest.raises(FileNotFoundError, match='Extract the tarball first: tar -xf'):
        tfds_datasets.prepare('bair_robot_pushing',
                              data_dir=str(tmp_path / 'data'),
                              manual_dir=str(tmp_path))


def test_bair_corrupt_crc_fails_or_is_skipped_and_counted(bair_manual, tmp_path):
    root, expected = bair_manual
    manual = tmp_path / 'manual'
    shutil.copytree(root / 'manual', manual)
    path = manual / 'softmotion30_44k' / 'test' / 'traj_0_to_255.tfrecords'
    pushing_fixtures.flip_payload_byte(str(path), 1)
    data_dir = str(tmp_path / 'data')
    with pytest.raises(tfrecord.CorruptRecordError,
                       match=r'traj_0_to_255\.tfrecords: record 1: data CRC mismatch'):
        tfds_datasets.prepare('bair_robot_pushing', data_dir=data_dir, manual_dir=str(manual))
    tfds_datasets.prepare('bair_robot_pushing/skip_corrupt',
                          data_dir=data_dir,
                          manual_dir=str(manual))
    # A fresh builder reads the count back from the prepared dataset's metadata.
    builder = tfds_datasets.builder('bair_robot_pushing/skip_corrupt', data_dir=data_dir)
    assert dict(builder.info.metadata['skipped_records']) == {
        'train': 0,
        'validation': 0,
        'test': 1
    }
    kept = {k: v for k, v in expected['test'].items() if not k.endswith(':1')}
    _check_split(builder.as_data_source(split='test'), kept, video_tolerance=0)


def test_bair_wrong_image_length():
    data, _ = pushing_fixtures.bair_record(0)
    from tensorflow_datasets.proto import tf_example_pb2
    example = tf_example_pb2.SequenceExample.FromString(data)
    example.context.feature['5/image_aux1/encoded'].bytes_list.value[0] = b'\0' * 100
    with pytest.raises(pushing_format.FormatError, match='5/image_aux1/encoded: 100 bytes'):
        bair.parse_example(example.SerializeToString())


def test_manual_download_instructions(tmp_path):
    assert 'push_train.tfrecord-00000-of-00264' in push.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert 'softmotion30_44k/train' in bair.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS
    (tmp_path / 'unrelated.txt').write_text('not a shard')
    with pytest.raises(FileNotFoundError, match='No push_train.tfrecord-'):
        tfds_datasets.prepare('robotic_pushing',
                              data_dir=str(tmp_path / 'data'),
                              manual_dir=str(tmp_path))


def test_concurrent_preparations_take_turns(bair_manual, tmp_path):
    # Two training runs started at once on a fresh data dir both prepare the dataset; flock
    # locks of separately opened files exclude each other within one process too, so threads
    # exercise the same path as processes.
    import concurrent.futures
    root, expected = bair_manual
    data_dir = str(tmp_path / 'data')
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(tfds_datasets.prepare,
                        'bair_robot_pushing',
                        data_dir=data_dir,
                        manual_dir=str(root / 'manual')) for _ in range(2)
        ]
        builders = [f.result() for f in futures]
    for builder in builders:
        assert builder.is_prepared()
        for split, exp in expected.items():
            _check_split(builder.as_data_source(split=split), exp, video_tolerance=0)
