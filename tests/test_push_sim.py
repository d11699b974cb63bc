"""PushSim: deterministic, action-conditioned, same features as the pushing builders."""

import numpy as np

from vpn_jax.data import push_sim
from vpn_jax.data import pushing

N = 40


def _sequences(seed=0, n=N):
    return [push_sim.generate(seed, i) for i in range(n)]


def test_features_and_determinism():
    a = push_sim.generate(3, 5)
    assert a['video'].shape == (20, 64, 64, 3) and a['video'].dtype == np.uint8
    assert a['action'].shape == (20, 2) and a['action'].dtype == np.float32
    assert a['state'].shape == (20, 2) and a['state'].dtype == np.float32
    b = push_sim.generate(3, 5)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a['video'], push_sim.generate(3, 6)['video'])
    assert not np.array_equal(a['video'], push_sim.generate(4, 5)['video'])


def test_gripper_drawn_at_state_and_moves_as_commanded_unless_blocked():
    reached = total = 0
    for s in _sequences():
        pos = np.rint(s['state'] * 64).astype(int)
        for t in range(20):
            y, x = pos[t]
            centre = s['video'][t, y + 2:y + 6, x + 2:x + 6]
            assert np.all(centre == 250)
        moved = np.diff(pos, axis=0)
        command = np.rint(s['action'][:-1] * push_sim.ACTION_SCALE).astype(int)
        # Never beyond the command, never against it.
        assert np.all(np.abs(moved) <= np.abs(command))
        assert np.all(moved * command >= 0)
        reached += np.all(moved == command, axis=1).sum()
        total += len(moved)
    assert 0.6 < reached / total < 1.0  # Mostly reached, sometimes blocked.


def test_actions_are_informative():
    """The gripper's displacement follows the true actions, not shuffled ones."""
    seqs = _sequences()
    rng = np.random.default_rng(0)
    true_err = shuffled_err = 0.0
    for s in seqs:
        moved = np.diff(s['state'], axis=0) * 64
        command = s['action'][:-1] * push_sim.ACTION_SCALE
        true_err += np.abs(moved - command).sum()
        other = seqs[rng.integers(len(seqs))]['action'][:-1] * push_sim.ACTION_SCALE
        shuffled_err += np.abs(moved - other).sum()
    assert true_err < 0.3 * shuffled_err


def test_blocks_are_pushed_not_destroyed():
    pushed = 0
    for s in _sequences():
        video = s['video']
        for colour in push_sim.BLOCK_COLOURS:
            counts = np.all(video == colour, axis=-1).sum(axis=(1, 2))
            assert len(set(counts.tolist())) == 1  # Blocks never overlap or leave the floor.
            if counts[0]:
                where = [np.argwhere(np.all(f == colour, -1)).min(0) for f in video]
                pushed += any(not np.array_equal(where[0], w) for w in where)
    assert pushed > 0  # Some blocks get pushed.


def test_source_feeds_the_pipeline():
    source = push_sim.PushSimSource(seed=0, size=16)
    assert len(source) == 16
    np.testing.assert_array_equal(source[3]['video'], push_sim.generate(0, 3)['video'])
    batch = pushing.train_batch(source, seed=0, step=0, batch_size=4)
    assert batch['video'].shape == (4, 12, 64, 64, 3)
    assert batch['actions'].shape == (4, 12, 2) and batch['states'].shape == (4, 12, 2)
    batch = next(pushing.eval_batches(source, batch_size=4))
    assert batch['video'].shape == (4, 20, 64, 64, 3)


def test_downsampled_frames_are_block_means_of_the_full_frames():
    full = push_sim.generate(1, 2, push_sim.PushSimConfig(num_frames=5, turn_probability=1.0))
    for factor in (2, 4):
        small = push_sim.generate(
            1, 2, push_sim.PushSimConfig(num_frames=5, turn_probability=1.0, downsample=factor))
        size = 64 // factor
        assert small['video'].shape == (5, size, size, 3) and small['video'].dtype == np.uint8
        means = full['video'].reshape(5, size, factor, size, factor, 3).mean(axis=(2, 4))
        assert np.abs(small['video'] - means).max() <= 0.5
        np.testing.assert_array_equal(small['action'], full['action'])
        np.testing.assert_array_equal(small['state'], full['state'])
    with np.testing.assert_raises(ValueError):
        push_sim.PushSimConfig(downsample=3)


def test_turn_probability_one_redraws_every_command():
    config = push_sim.PushSimConfig(num_frames=20, turn_probability=1.0)
    kept = total = 0
    for i in range(20):
        actions = push_sim.generate(0, i, config)['action']
        kept += np.all(actions[1:] == actions[:-1], axis=1).sum()
        total += len(actions) - 1
    # A redrawn command repeats the last one only by chance (1 in 81 for 9 x 9 commands).
    assert kept / total < 0.05


def test_fixed_floor_changes_only_the_floor():
    random = push_sim.generate(3, 4, push_sim.PushSimConfig(num_frames=6))
    fixed = push_sim.generate(3, 4, push_sim.PushSimConfig(num_frames=6, random_floor=False))
    np.testing.assert_array_equal(random['action'], fixed['action'])
    np.testing.assert_array_equal(random['state'], fixed['state'])
    differs = (random['video'] != fixed['video']).any(axis=-1)
    assert differs.any()
    # The moving squares are drawn over the floor, so they match wherever the floor is hidden.
    np.testing.assert_array_equal(differs[:, :push_sim.WALL], False)  # The wall is shared.
    # Two sequences share the fixed floor: their first frames agree away from gripper and blocks.
    other = push_sim.generate(3, 5, push_sim.PushSimConfig(num_frames=1, random_floor=False))
    floor_only = (fixed['video'][0] == other['video'][0]).all(-1)
    assert floor_only.mean() > 0.8
