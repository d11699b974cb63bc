"""The Multiplicative Unit (sect. 4.1) and the Residual Multiplicative Block (sect. 4.2)."""

from typing import Any, Callable, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vpn_jax.model.masked_conv import IncrementalConv, MaskedConv, group_slice, set_group


def gated_update(gates: jax.Array, h: jax.Array) -> jax.Array:
    """The MU's element-wise part (eq. 1): gates float[..., 4n] = [g1, g2, g3, u], h [..., n].

    Returns sigmoid(g1) * tanh(sigmoid(g2) * h + sigmoid(g3) * tanh(u)).
    """
    g1, g2, g3, u = jnp.split(gates, 4, axis=-1)
    return nn.sigmoid(g1) * jnp.tanh(nn.sigmoid(g2) * h + nn.sigmoid(g3) * jnp.tanh(u))


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
        return gated_update(gates, h.astype(gates.dtype))


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


class IncrementalRMB:
    """A trained, masked `ResidualMultiplicativeBlock` at one pixel and colour group at a time.

    The fast sampler's form of the block (see `IncrementalConv`). `spatial` names the layers
    with 3x3 kernels, whose inputs the sampler buffers (rows above, pixels to the left).
    """

    def __init__(self, params: Dict[str, Any], layer: Callable[..., IncrementalConv],
                 num_colors: int):
        """params: the block's; layer(params, num_blocks=1) builds a mask-B `IncrementalConv`."""
        self.reduce = layer(params['reduce'])
        self.expand = layer(params['expand'])
        self.spatial = {name: layer(params[name]['gates'], num_blocks=4) for name in ('mu1', 'mu2')}
        self.num_colors = num_colors

    def group(self, g: int, h: jax.Array, inputs: Dict[str, jax.Array], pre: Dict[str, jax.Array],
              left: Dict[str, jax.Array]) -> jax.Array:
        """Colour group g of the block's output at the current pixel; float[B, n_g].

        h: float[B, 2c], the block's input (groups <= g final). inputs: the spatial layers'
        inputs at this pixel, float[B, c] each, in which group g is written here. pre, left: per
        spatial layer, `rows_above` at this pixel and the inputs of the pixels to the left.
        """
        colors = self.num_colors
        mu1, mu2 = self.spatial['mu1'], self.spatial['mu2']
        h1 = self.reduce.group(g, self.reduce.bias, h)  # No activation (sect. 4.2).
        inputs['mu1'] = set_group(inputs['mu1'], g, h1, colors)
        h2 = gated_update(mu1.group(g, pre['mu1'], inputs['mu1'], left['mu1']), h1)
        inputs['mu2'] = set_group(inputs['mu2'], g, h2, colors)
        h3 = gated_update(mu2.group(g, pre['mu2'], inputs['mu2'], left['mu2']), h2)
        inputs['expand'] = set_group(inputs['expand'], g, h3, colors)
        h4 = self.expand.group(g, self.expand.bias, inputs['expand'])
        return group_slice(h, g, self.num_colors) + h4

    def zero_inputs(self, batch: int, dtype: Any) -> Dict[str, jax.Array]:
        """The per-pixel input vectors before any group is written: float[B, c] zeros."""
        return {
            name: jnp.zeros((batch, self.expand.cin), dtype)
            for name in ('mu1', 'mu2', 'expand')
        }
