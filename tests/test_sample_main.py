"""`vpn_jax.sample_main`: from a checkpoint to grid.png, samples.gif and samples.npz."""

import os

import jax
import numpy as np
from PIL import Image

import vpn_jax
from train_helpers import tiny_experiment
from vpn_jax.training import checkpoint as ckpt
from vpn_jax import sample_main
from vpn_jax.training import train


def test_write_continuations_from_a_checkpoint(tmp_path):
    config = tiny_experiment('push_sim', size=8, frames=4, context=2)
    module = train.build_module(config)
    state = train.create_train_state(config, module, jax.random.key(0))
    mngr = ckpt.manager(str(tmp_path / 'run'))
    ckpt.save(mngr, 1, state, config, {'seed': 0, 'step': 1})
    mngr.close()

    module, variables, config = vpn_jax.load_checkpoint(str(tmp_path / 'run'))
    out = str(tmp_path / 'samples')
    grid = sample_main.write_continuations(module,
                                           variables,
                                           config,
                                           out,
                                           num_videos=2,
                                           num_samples=3,
                                           scale=1)
    saved = np.load(os.path.join(out, 'samples.npz'))
    samples, truth = saved['samples'], saved['ground_truth']
    assert samples.shape == (6, 4, 8, 8, 3) and samples.dtype == np.uint8
    assert truth.shape == (2, 4, 8, 8, 3) and int(saved['num_context']) == 2
    # Every sample starts with its own video's context frames, unchanged.
    np.testing.assert_array_equal(samples[:, :2], np.repeat(truth[:, :2], 3, axis=0))
    # The PNG is the paper-style grid of exactly these samples and ground truth.
    expected = vpn_jax.visualize.make_grid(samples,
                                           truth,
                                           num_context=2,
                                           num_samples=3,
                                           scale=1,
                                           border=2)
    np.testing.assert_array_equal(np.asarray(Image.open(grid)), expected)
    with Image.open(os.path.join(out, 'samples.gif')) as gif:
        # One image per time step; Pillow merges identical consecutive images (context frames).
        assert 2 <= gif.n_frames <= 4
