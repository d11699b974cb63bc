"""Your own videos as a dataset: the .npy format, the folder reader, splits, batches, training."""

import json
import os

import numpy as np
import pytest

from train_helpers import compilation_cache, experiment_config  # pylint: disable=unused-import
from conftest import make_tiny_config
from vpn_jax.data import input_pipeline, video_array


def _videos(n=10, t=6, size=16, colors=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, t, size, size, colors), dtype=np.uint8)


def test_save_load_round_trip(tmp_path):
    videos = _videos()
    path = video_array.save(str(tmp_path / 'v.npy'), videos)
    loaded = video_array.load(path)
    np.testing.assert_array_equal(loaded, videos)
    assert not os.path.exists(path + '.tmp.npy')


@pytest.mark.parametrize('bad, match', [
    (np.zeros((2, 3, 8, 8), np.uint8), r'uint8\[N, T, H, W, C\]'),
    (np.zeros((2, 3, 8, 8, 1), np.float32), 'dtype uint8'),
    (np.zeros((2, 3, 8, 8, 4), np.uint8), '1 or 3 colour channels'),
])
def test_bad_arrays_are_refused_with_what_to_pass(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        video_array.save(str(tmp_path / 'v.npy'), bad)
    assert not os.listdir(tmp_path)


def test_a_pickled_object_array_is_not_loaded(tmp_path):
    path = tmp_path / 'v.npy'
    np.save(path, np.array([{'a': 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match='not a plain .npy'):
        video_array.load(str(path))


def test_splits_are_disjoint_complete_and_fixed():
    a = video_array.split_indices(50, validation_fraction=0.1, test_fraction=0.2, seed=3)
    b = video_array.split_indices(50, validation_fraction=0.1, test_fraction=0.2, seed=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert (len(a['test']), len(a['validation']), len(a['train'])) == (10, 5, 35)
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(50))
    with pytest.raises(ValueError, match='none for training'):
        video_array.split_indices(2, validation_fraction=0.5, test_fraction=0.5)


def test_train_batches_are_a_pure_function_of_seed_and_step(tmp_path):
    videos = _videos(n=12, t=9)
    path = video_array.save(str(tmp_path / 'v.npy'), videos)
    source = video_array.open_split(path, 'train', validation_fraction=0.2, test_fraction=0.2)
    batch = lambda seed, step: video_array.train_batch(
        source, batch_size=5, num_frames=4, seed=seed, step=step)
    np.testing.assert_array_equal(batch(0, 7), batch(0, 7))
    assert not np.array_equal(batch(0, 7), batch(0, 8))
    assert batch(0, 7).shape == (5, 4, 16, 16, 1)
    # Every window is a run of consecutive frames of one training video.
    train_videos = videos[source.indices]
    for window in batch(1, 3):
        assert any(
            np.array_equal(window, v[s:s + 4]) for v in train_videos for s in range(9 - 4 + 1))


def test_folder_of_gifs_round_trip(tmp_path):
    videos = _videos(n=3, t=5, colors=1)
    video_array.write_video_folder(str(tmp_path / 'clips'), videos)
    read = video_array.read_video_folder(str(tmp_path / 'clips'), num_frames=4, colors=1)
    np.testing.assert_array_equal(read, videos[:, :4])
    resized = video_array.read_video_folder(str(tmp_path / 'clips'), num_frames=4, colors=3, size=8)
    assert resized.shape == (3, 4, 8, 8, 3) and resized.dtype == np.uint8
    with pytest.raises(ValueError, match='has num_frames=9'):
        video_array.read_video_folder(str(tmp_path / 'clips'), num_frames=9)


def _array_config(path, **data):
    config = experiment_config('video_array', 'cpu')
    config.model = make_tiny_config(output='softmax', num_colors=1)
    config.data.path = path
    config.data.image_size = 16
    config.data.num_frames = 4
    config.data.eval_num_frames = 5
    config.data.num_context = 2
    config.data.update(data)
    t = config.train
    t.batch_size, t.num_steps, t.log_every_steps = 2, 2, 1
    t.eval_every_steps = t.checkpoint_every_steps = 2
    t.evaluate_test = True
    config.eval.batch_size = 2
    config.eval.validation_batches = 1
    return config


def test_config_errors_name_the_field(tmp_path):
    path = video_array.save(str(tmp_path / 'v.npy'), _videos(n=10, t=6))
    with pytest.raises(FileNotFoundError, match='data.path'):
        input_pipeline.check_data(_array_config(str(tmp_path / 'missing.npy')))
    with pytest.raises(ValueError, match='data.eval_num_frames=7 exceeds the 6 frames'):
        input_pipeline.check_data(_array_config(path, eval_num_frames=7))
    config = _array_config(path)
    config.model.num_colors = 3
    with pytest.raises(ValueError, match='model.num_colors=1'):
        input_pipeline.check_data(config)


def test_trains_and_evaluates_on_a_video_array(tmp_path):
    from vpn_jax.training import train
    path = video_array.save(str(tmp_path / 'v.npy'), _videos(n=10, t=6))
    config = _array_config(path)
    summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
    assert summary['step'] == 2
    assert summary['test']['num_sequences'] == 1  # 10% of 10 videos.
    assert np.isfinite(summary['validation']['nll'])
    with open(tmp_path / 'run' / 'eval_test.json', encoding='utf-8') as f:
        assert json.load(f)['dataset'] == path


def test_evaluation_sequences_are_the_split_in_order_without_padding(tmp_path):
    path = video_array.save(str(tmp_path / 'v.npy'), _videos(n=20, t=6))
    config = _array_config(path, validation_fraction=0.25)
    config.eval.batch_size = 4
    source = input_pipeline.eval_source(config, 'validation')
    expected = np.stack([np.asarray(source[i]['video'])[:5] for i in range(len(source))])
    assert len(expected) == 5  # Two batches of 4, the second padded with three repeats.
    got = input_pipeline.evaluation_sequences(config, 'validation', 3)['video']
    np.testing.assert_array_equal(got, expected[:3])
    got = input_pipeline.evaluation_sequences(config, 'validation', 100)['video']
    assert got.shape == (5, 5, 16, 16, 1) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
