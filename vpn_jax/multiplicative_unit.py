"""The Multiplicative Unit (sect. 4.1) and the Residual Multiplicative Block (sect. 4.2)."""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vpn_jax.masked_conv import MaskedConv


class MultiplicativeUnit(nn.Module):
    """MU(h) = g1 * tanh(g2 * h + g3 * u), with 3x3 convolutions (eq. 1 of the paper).

    g1, g2, g3 = sigmoid(W1..3 * h) and u = tanh(W4 * h). The four convolutions are fused into
    one with 4c outputs (one kernel read, one big matmul); masking keeps each gate's channel k in
    the colour group of h's channel k, so the element-wise products never mix colours.

    Attributes:
      dilation: dilation of the 3x3 convolutions.
      mask_type: None (encoder, baseline) or 'B' (PixelCNN decoder).
      num_colors: colour groups the mask respects.
      dtype: computation dtype.
    """
    dilation: int = 1
    mask_type: Optional[str] = None
    num_colors: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array, cond: Optional[jax.Array] = None) -> jax.Array:
        """h: float[N, H, W, c]; cond: float[N, D] or None -> float[N, H, W, c]."""
        c = h.shape[-1]
        gates = MaskedConv(c,
                           kernel_size=3,
                           dilation=self.dilation,
                           mask_type=self.mask_type,
                           num_colors=self.num_colors,
                           num_blocks=4,
                           dtype=self.dtype,
                           name='gates')(h, cond)
        g1, g2, g3, u = jnp.split(gates, 4, axis=-1)
        h = h.astype(gates.dtype)
        return nn.sigmoid(g1) * jnp.tanh(nn.sigmoid(g2) * h + nn.sigmoid(g3) * jnp.tanh(u))


class ResidualMultiplicativeBlock(nn.Module):
    """RMB(h) = h + W4 * MU(MU(W1 * h)): 1x1 to c, two MUs, 1x1 back to 2c (sect. 4.2).

    Attributes:
      channels: c, the MUs' width; input and output have 2c channels.
      dilation: dilation of the MUs' 3x3 convolutions (the same within a block, sect. 4.3).
      mask_type: None or 'B'; applies to every convolution in the block, the 1x1s included.
      num_colors: colour groups the mask respects.
      dtype: computation dtype.
    """
    channels: int
    dilation: int = 1
    mask_type: Optional[str] = None
    num_colors: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array, cond: Optional[jax.Array] = None) -> jax.Array:
        """h: float[N, H, W, 2c]; cond: float[N, D] or None -> float[N, H, W, 2c]."""
        conv = lambda features, kernel_size, name: MaskedConv(features,
                                                              kernel_size=kernel_size,
                                                              mask_type=self.mask_type,
                                                              num_colors=self.num_colors,
                                                              dtype=self.dtype,
                                                              name=name)
        mu = lambda name: MultiplicativeUnit(dilation=self.dilation,
                                             mask_type=self.mask_type,
                                             num_colors=self.num_colors,
                                             dtype=self.dtype,
                                             name=name)
        h1 = conv(self.channels, 1, 'reduce')(h, cond)  # No activation (sect. 4.2).
        h2 = mu('mu1')(h1, cond)
        h3 = mu('mu2')(h2, cond)
        h4 = conv(h.shape[-1], 1, 'expand')(h3, cond)
        return h + h4.astype(h.dtype)
