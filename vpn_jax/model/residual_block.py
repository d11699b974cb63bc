"""The ReLU residual block of He et al. 2016 used by the paper's "ReLU" VPN variants."""

from typing import Any, Callable, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vpn_jax.model.masked_conv import IncrementalConv, MaskedConv, group_slice, set_group


class ReluResidualBlock(nn.Module):
    """Pre-activation bottleneck: h + W3 * relu(W2 * relu(W1 * relu(h))).

    W1 is 1x1 (2c -> c), W2 is 3x3 (c -> c, dilated), W3 is 1x1 (c -> 2c). One 3x3 convolution
    per block, so the ReLU variants use twice as many blocks as the RMB variants to have the same
    receptive field (sect. 5.1).

    Attributes:
      channels: c; input and output have 2c channels.
      dilation: dilation of the 3x3 convolution.
      mask_type: None or 'B'; applies to all three convolutions.
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
        conv = lambda features, kernel_size, dilation, name: MaskedConv(features,
                                                                        kernel_size=kernel_size,
                                                                        dilation=dilation,
                                                                        mask_type=self.mask_type,
                                                                        num_colors=self.num_colors,
                                                                        dtype=self.dtype,
                                                                        name=name)
        y = conv(self.channels, 1, 1, 'reduce')(nn.relu(h), cond)
        y = conv(self.channels, 3, self.dilation, 'conv')(nn.relu(y), cond)
        y = conv(h.shape[-1], 1, 1, 'expand')(nn.relu(y), cond)
        return h + y.astype(h.dtype)


class IncrementalReluBlock:
    """A trained, masked `ReluResidualBlock` at one pixel and colour group at a time.

    The fast sampler's form of the block (see `IncrementalConv`, and `IncrementalRMB` for the
    arguments). `spatial` names its 3x3 layer.
    """

    def __init__(self, params: Dict[str, Any], layer: Callable[..., IncrementalConv],
                 num_colors: int):
        self.reduce = layer(params['reduce'])
        self.expand = layer(params['expand'])
        self.spatial = {'conv': layer(params['conv'])}
        self.num_colors = num_colors

    def group(self, g: int, h: jax.Array, inputs: Dict[str, jax.Array], pre: Dict[str, jax.Array],
              left: Dict[str, jax.Array]) -> jax.Array:
        """Colour group g of h + W3 relu(W2 relu(W1 relu(h))) at the current pixel."""
        y1 = self.reduce.group(g, self.reduce.bias, jax.nn.relu(h))
        inputs['conv'] = set_group(inputs['conv'], g, jax.nn.relu(y1), self.num_colors)
        y2 = self.spatial['conv'].group(g, pre['conv'], inputs['conv'], left['conv'])
        inputs['expand'] = set_group(inputs['expand'], g, jax.nn.relu(y2), self.num_colors)
        y3 = self.expand.group(g, self.expand.bias, inputs['expand'])
        return group_slice(h, g, self.num_colors) + y3

    def zero_inputs(self, batch: int, dtype: Any) -> Dict[str, jax.Array]:
        """The per-pixel input vectors before any group is written: float[B, c] zeros."""
        return {name: jnp.zeros((batch, self.expand.cin), dtype) for name in ('conv', 'expand')}
