"""Convolutional LSTM over time (sect. 3.1), resolution preserving, built on flax's cell."""

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Carry = Tuple[jax.Array, jax.Array]  # (memory c, hidden h), each float32[B, H, W, features].


class ConvLSTM(nn.Module):
    """`flax.linen.ConvLSTMCell` with 3x3 kernels, scanned over the time axis.

    `step` advances one frame, so a sampler can carry the state instead of re-running the
    sequence; `__call__` scans `step` over a whole sequence with shared parameters.

    Attributes:
      features: hidden channels (256 in the paper).
      dtype: computation dtype; the carry stays float32.
    """
    features: int
    dtype: Any = jnp.float32

    def setup(self):
        self.cell = nn.ConvLSTMCell(self.features, kernel_size=(3, 3), dtype=self.dtype)

    def initial_carry(self, batch_size: int, height: int, width: int) -> Carry:
        """Zero state: two float32[B, H, W, features]."""
        zeros = jnp.zeros((batch_size, height, width, self.features), jnp.float32)
        return zeros, zeros

    def step(self, carry: Carry, inputs: jax.Array) -> Tuple[Carry, jax.Array]:
        """inputs: float[B, H, W, Cin] -> (new carry, h: float32[B, H, W, features])."""
        (c, h), _ = self.cell(carry, inputs)
        c, h = c.astype(jnp.float32), h.astype(jnp.float32)
        return (c, h), h

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """inputs: float[B, T, H, W, Cin] -> float32[B, T, H, W, features], from a zero state."""
        b, _, height, width, _ = inputs.shape
        scan = nn.scan(lambda module, carry, x: module.step(carry, x),
                       variable_broadcast='params',
                       split_rngs={'params': False},
                       in_axes=1,
                       out_axes=1)
        _, outputs = scan(self, self.initial_carry(b, height, width), inputs)
        return outputs
