"""Shared fixtures: tiny model configs that compile in seconds on a 2-core CPU."""

import ml_collections
import pytest

from vpn_jax import xla_cpu

# The suite runs on the CPU: matmul kernel gradients, same values, a faster suite
# (tests/test_xla_cpu.py proves the values equal).
xla_cpu.use_matmul_kernel_gradients()


def make_tiny_config(**overrides) -> ml_collections.ConfigDict:
    """A complete model config at toy size; override any field."""
    config = ml_collections.ConfigDict(
        dict(decoder='pixelcnn',
             block='rmb',
             channels=6,
             encoder_blocks=1,
             decoder_blocks=2,
             encoder_dilations=(2, ),
             lstm_channels=6,
             top_channels=9,
             output='softmax',
             num_colors=3,
             action_dim=0,
             state_dim=0))
    config.update(overrides)
    return config


@pytest.fixture
def tiny_config():
    return make_tiny_config


@pytest.fixture(scope='module')
def sigmoid_model():
    """(module, variables, video uint8[3, 4, 6, 6, 1]): a tiny Moving MNIST-like VPN and random
    videos, for tests of likelihood-based figures and training options."""
    import jax
    import numpy as np
    from vpn_jax.model.vpn import build_model, init_variables
    module = build_model(make_tiny_config(output='sigmoid', num_colors=1))
    variables = init_variables(module, jax.random.key(1), height=6, width=6)
    video = np.asarray(jax.random.randint(jax.random.key(2), (3, 4, 6, 6, 1), 0, 256), np.uint8)
    return module, variables, video
