"""The Robotic Pushing input pipeline: windows, determinism, resumption, evaluation batches."""

import numpy as np
import pytest

import pushing_fixtures
from vpn_jax.data import pushing
from vpn_jax.data import pushing_format
from vpn_jax import tfds_datasets

T = 20


def fake_source(n=10, length=T):
    """Example e, frame t: every pixel e * 20 + t; action[t] = (e, t, ...), state = -action."""
    source = []
    for e in range(n):
        frames = np.arange(length)
        video = np.broadcast_to((e * 20 + frames)[:, None, None, None] % 256,
                                (length, 64, 64, 3)).astype(np.uint8)
        action = np.stack([np.full(length, e), frames, frames * 0.5, frames * 2, -frames], 1)
        source.append({
            'video': video,
            'action': action.astype(np.float32),
            'state': -action[:, :3].astype(np.float32)
        })
    return source


def _ids(batch):
    """(example, first frame) of each window, checking windows are consecutive and aligned."""
    examples = batch['actions'][:, 0, 0].astype(int)
    starts = batch['actions'][:, 0, 1].astype(int)
    num_frames = batch['video'].shape[1]
    for b, (e, s) in enumerate(zip(examples, starts)):
        frames = np.arange(s, s + num_frames)
        np.testing.assert_array_equal(batch['actions'][b, :, 1], frames)
        np.testing.assert_array_equal(batch['states'][b, :, 1], -frames)
        np.testing.assert_array_equal(batch['video'][b, :, 0, 0, 0], (e * 20 + frames) % 256)
    return list(zip(examples, starts))


def test_train_batch_shapes_and_aligned_windows():
    batch = pushing.train_batch(fake_source(), seed=0, step=0, batch_size=4)
    assert batch['video'].shape == (4, 12, 64, 64, 3) and batch['video'].dtype == np.uint8
    assert batch['actions'].shape == (4, 12, 5) and batch['actions'].dtype == np.float32
    assert batch['states'].shape == (4, 12, 3) and batch['states'].dtype == np.float32
    _ids(batch)


def test_deterministic_under_seed_and_shuffled():
    source = fake_source()
    a = [_ids(pushing.train_batch(source, seed=7, step=s, batch_size=5)) for s in range(4)]
    b = [_ids(pushing.train_batch(source, seed=7, step=s, batch_size=5)) for s in range(4)]
    c = [_ids(pushing.train_batch(source, seed=8, step=s, batch_size=5)) for s in range(4)]
    assert a == b and a != c
    # Each epoch (2 batches of 5 from 10 examples) is a permutation; offsets cover [0, 8].
    for epoch in range(2):
        examples = [e for batch in a[2 * epoch:2 * epoch + 2] for e, _ in batch]
        assert sorted(examples) == list(range(10))
        assert examples != list(range(10))
    starts = [s for batch in a for _, s in batch]
    assert min(starts) >= 0 and max(starts) <= T - 12 and len(set(starts)) > 3


def test_resume_from_checkpointed_position():
    source = fake_source()
    it = pushing.TrainIterator(source, batch_size=3, seed=1)
    full = [_ids(next(it)) for _ in range(6)]
    it = pushing.TrainIterator(source, batch_size=3, seed=1)
    for _ in range(4):
        next(it)
    state = it.get_state()
    assert state == {'seed': 1, 'step': 4}
    resumed = pushing.TrainIterator(source, batch_size=3).set_state(state)
    assert [_ids(next(resumed)) for _ in range(2)] == full[4:]


def test_processes_split_the_global_batch():
    source = fake_source()
    whole = pushing.train_batch(source, seed=3, step=2, batch_size=6)
    parts = [
        pushing.train_batch(source, seed=3, step=2, batch_size=6, process_index=i, process_count=3)
        for i in range(3)
    ]
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))


def test_eval_batches_full_sequences_in_order_with_mask():
    source = fake_source(n=7, length=21)  # Records may hold more steps: the first 20 are used.
    batches = list(pushing.eval_batches(source, batch_size=4))
    assert len(batches) == pushing.num_eval_batches(source, 4) == 2
    for batch in batches:
        assert batch['video'].shape == (4, 20, 64, 64, 3)
        assert [s for _, s in _ids(batch)] == [0] * 4
    examples = [e for batch in batches for e, _ in _ids(batch)]
    assert examples == [0, 1, 2, 3, 4, 5, 6, 6]
    np.testing.assert_array_equal(np.concatenate([b['mask'] for b in batches]),
                                  [True] * 7 + [False])
    # Context and predicted frames as in sect. 6: 2 + 18, all 20 actions given.
    assert pushing_format.NUM_CONTEXT == 2
    assert pushing_format.EVAL_FRAMES - pushing_format.NUM_CONTEXT == 18


def test_too_short_examples_are_errors():
    with pytest.raises(ValueError, match='fewer than 12'):
        pushing.train_batch(fake_source(length=8), seed=0, step=0, batch_size=2)


def test_pipeline_over_prepared_tfds_source(tmp_path):
    expected = pushing_fixtures.write_bair_manual_dir(str(tmp_path / 'manual'),
                                                      train_files=2,
                                                      records_per_file=2)
    tfds_datasets.prepare('bair_robot_pushing',
                          data_dir=str(tmp_path / 'data'),
                          manual_dir=str(tmp_path / 'manual'))
    source = pushing.data_source('bair_robot_pushing',
                                 split='train',
                                 data_dir=str(tmp_path / 'data'))
    batch = pushing.train_batch(source, seed=0, step=0, batch_size=2)
    assert batch['video'].shape == (2, 12, 64, 64, 3)
    assert batch['actions'].shape == (2, 12, 4) and batch['states'].shape == (2, 12, 3)
    # Every window is a slice of one of the written sequences.
    written = list(expected['train'].values())
    for b in range(2):
        matches = [(w, o) for w in written for o in range(30 - 12 + 1)
                   if np.array_equal(w['action'][o:o + 12], batch['actions'][b])]
        assert len(matches) == 1
        w, o = matches[0]
        np.testing.assert_array_equal(batch['video'][b], w['video'][o:o + 12])
        np.testing.assert_array_equal(batch['states'][b], w['state'][o:o + 12])
    test = pushing.data_source('bair_robot_pushing', split='test', data_dir=str(tmp_path / 'data'))
    batch = next(pushing.eval_batches(test, batch_size=2))
    assert batch['video'].shape == (2, 20, 64, 64, 3)
