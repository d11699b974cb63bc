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
