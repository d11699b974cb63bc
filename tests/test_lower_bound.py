"""Tests of vpn_jax.lower_bound: the entropy of the targets of the predicted frames."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from vpn_jax import lower_bound as lb
from vpn_jax_datasets.moving_mnist_vpn import moving_mnist_vpn_dataset_builder as mmb

DUMMY_DATA = os.path.join(os.path.dirname(mmb.__file__), 'dummy_data')


def _hand_made_video():
    """uint8[1, 12, 2, 2, 1]: 10 context frames (ignored), then two predicted frames."""
    video = np.full((1, 12, 2, 2, 1), 128, dtype=np.uint8)  # Context: maximal entropy, ignored.
    video[0, 10, :, :, 0] = [[0, 255], [51, 204]]  # z = 0, 1, 0.2, 0.8.
    video[0, 11, :, :, 0] = [[255, 0], [0, 255]]  # Binary: no entropy.
    return video


def test_entropy_table_endpoints_and_symmetry():
    table = lb.entropy_table()
    assert table.shape == (256, ) and table[0] == 0.0 and table[255] == 0.0
    np.testing.assert_allclose(table, table[::-1], rtol=0, atol=1e-15)
    assert table.argmax() in (127, 128) and table.max() < math.log(2)


def test_lower_bound_of_hand_made_video_equals_hand_computation():
    # By hand: h(0.2) = h(0.8) = -(0.2 ln 0.2 + 0.8 ln 0.8) = 0.32189 + 0.17851 = 0.50040 nats.
    # Frame 10 holds 2 * h(0.2) = 1.00080 nats, frame 11 holds 0: mean 0.50040 nats/frame.
    by_hand = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    assert by_hand == pytest.approx(0.500402, abs=1e-6)
    video = _hand_made_video()
    assert lb.lower_bound(video) == pytest.approx(by_hand, rel=1e-12)
    assert lb.lower_bound(video[..., 0]) == pytest.approx(by_hand, rel=1e-12)  # [B, T, H, W].
    # Counting the last frame only, or two copies of the batch, changes what is expected.
    assert lb.lower_bound(video, num_context=11) == 0.0
    assert lb.lower_bound(np.concatenate([video, video])) == pytest.approx(by_hand, rel=1e-12)
    # All 12 frames: 10 context frames of 4 pixels at z = 128/255, plus 2 * h(0.2).
    z = 128 / 255
    h_half = -(z * math.log(z) + (1 - z) * math.log(1 - z))
    assert lb.lower_bound(video, num_context=0) == pytest.approx(
        (10 * 4 * h_half + 2 * by_hand) / 12, rel=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match='uint8'):
        lb.lower_bound(np.zeros((1, 12, 2, 2), np.float32))
    with pytest.raises(ValueError, match='num_context'):
        lb.lower_bound(np.zeros((1, 10, 2, 2), np.uint8))


def test_split_and_command_on_the_standard_config_with_dummy_data(tmp_path):
    expected_videos = np.load(os.path.join(DUMMY_DATA, 'mnist_test_seq.npy'), allow_pickle=False)
    expected = lb.lower_bound(expected_videos.transpose(1, 0, 2, 3))
    data_dir = str(tmp_path / 'data')
    value, n = lb.split_lower_bound('test',
                                    config='standard',
                                    data_dir=data_dir,
                                    manual_dir=DUMMY_DATA,
                                    chunk=1)
    assert n == 2 and value == pytest.approx(expected, rel=1e-12)
    # The command reuses the prepared split; its last line is the figure.
    out = subprocess.run([
        sys.executable, '-m', 'vpn_jax.lower_bound', '--split=test', '--config=standard',
        f'--data_dir={data_dir}'
    ],
                         capture_output=True,
                         text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == f'lower bound: {expected:.3f} nats/frame'
    with pytest.raises(ValueError, match='no split'):
        lb.split_lower_bound('validation', config='standard', data_dir=data_dir)
