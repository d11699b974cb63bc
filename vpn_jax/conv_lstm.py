"""Convolutional LSTM over time (sect. 3.1), resolution preserving."""

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vpn_jax import conv
from vpn_jax.masked_conv import MaskedConv

Carry = Tuple[jax.Array, jax.Array]  # (memory c, hidden h), each float32[B, H, W, features].


class ConvLSTMCell(nn.Module):
    """`flax.linen.ConvLSTMCell`'s equations and parameters, on `vpn_jax.conv.conv2d`.

    gates = W_ih * x + W_hh * h (3x3, 4 * features outputs, both with a bias), split as
    (i, g, f, o); c' = sigmoid(f + 1) c + sigmoid(i) tanh(g); h' = sigmoid(o) tanh(c'). Flax's
    cell builds its convolutions itself, so it cannot use the convolution whose kernel gradient
    is fast on the CPU; this one can, and has the same parameter tree ('ih' and 'hh', each with
    'kernel' and 'bias'): `tests/test_model.py` checks that both give the same outputs.

    Attributes:
      features: hidden channels.
      dtype: computation dtype.
    """
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, carry: Carry, inputs: jax.Array) -> Tuple[Carry, jax.Array]:
        """carry: (c, h) float[B, H, W, features]; inputs float[B, H, W, Cin]."""
        c, h = carry
        gate_conv = lambda name: MaskedConv(
            4 * self.features, kernel_size=3, dtype=self.dtype, name=name)
        gates = gate_conv('ih')(inputs) + gate_conv('hh')(h)
        i, g, f, o = jnp.split(gates, 4, axis=-1)
        new_c = nn.sigmoid(f + 1) * c + nn.sigmoid(i) * jnp.tanh(g)
        new_h = nn.sigmoid(o) * jnp.tanh(new_c)
        return (new_c, new_h), new_h


class ConvLSTM(nn.Module):
    """A `ConvLSTMCell` with 3x3 kernels, scanned over the time axis.

    `step` advances one frame, so a sampler can carry the state instead of re-running the
    sequence; `__call__` scans `step` over a whole sequence with shared parameters.

    Attributes:
      features: hidden channels (256 in the paper).
      dtype: computation dtype; the carry stays float32.
    """
    features: int
    dtype: Any = jnp.float32

    def setup(self):
        self.cell = ConvLSTMCell(self.features, dtype=self.dtype)

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
        # Under shard_map the zero state must vary over the mesh like the inputs do.
        carry = conv.vary_like(self.initial_carry(b, height, width), inputs)
        _, outputs = scan(self, carry, inputs)
        return outputs
