"""Convolutional LSTM over time (sect. 3.1), resolution preserving."""

from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vpn_jax.model.masked_conv import MaskedConv

Carry = Tuple[jax.Array, jax.Array]  # (memory c, hidden h), each float32[B, H, W, features].


class ConvLSTMCell(nn.Module):
    """`flax.linen.ConvLSTMCell`'s equations and parameters, on `MaskedConv`.

    gates = W_ih * x + W_hh * h (3x3, 4 * features outputs, both with a bias), split as
    (i, g, f, o); c' = sigmoid(f + 1) c + sigmoid(i) tanh(g); h' = sigmoid(o) tanh(c'). The same
    parameter tree as Flax's cell ('ih' and 'hh', each with 'kernel' and 'bias'; `tests/
    test_model.py` checks both give the same outputs), but its convolutions are the model's
    `conv2d`, like every other layer's.

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

    Training, evaluation and sampling all run it through `__call__`: over a whole sequence from
    the zero state, or (sampling) over one new frame from the state the previous call returned.

    Attributes:
      features: hidden channels (256 in the paper).
      dtype: computation dtype; the carry stays float32.
    """
    features: int
    dtype: Any = jnp.float32

    def setup(self):
        self.cell = ConvLSTMCell(self.features, dtype=self.dtype)

    def step(self, carry: Carry, inputs: jax.Array) -> Tuple[Carry, jax.Array]:
        """inputs: float[B, H, W, Cin] -> (new carry, h: float32[B, H, W, features])."""
        (c, h), _ = self.cell(carry, inputs)
        c, h = c.astype(jnp.float32), h.astype(jnp.float32)
        return (c, h), h

    def __call__(self, inputs: jax.Array, carry: Optional[Carry] = None) -> Tuple[Carry, jax.Array]:
        """inputs: float[B, T, H, W, Cin] -> (carry after frame T-1, float32[B, T, H, W, features]).

        `carry` is the state before frame 0 (None: zeros); output t summarises frames 0..t.
        """
        if carry is None:
            # Zeros typed like the inputs: under shard_map they then vary over the mesh as the
            # inputs do, which a scan's carry must.
            zero = jnp.zeros_like(inputs[:, 0, :, :, :1], jnp.float32)
            zero = jnp.broadcast_to(zero, zero.shape[:-1] + (self.features, ))
            carry = (zero, zero)
        scan = nn.scan(lambda module, carry, x: module.step(carry, x),
                       variable_broadcast='params',
                       split_rngs={'params': False},
                       in_axes=1,
                       out_axes=1)
        return scan(self, carry, inputs)
