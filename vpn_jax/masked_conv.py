"""Convolutions with PixelCNN masks over space (raster order) and colour (R, G, B).

Sect. 2 of the paper orders the sub-pixels of a frame by (row, column, colour). A decoder
layer's feature channels are split into one contiguous group per colour: group g may only carry
information about sub-pixels up to colour g of the current pixel. A masked kernel then lets
output group g see

* every input position strictly above the centre row, and left of the centre in the centre row;
* at the centre position, input groups g' < g (mask 'A', the decoder's first layer, which reads
  the frame itself) or g' <= g (mask 'B', every later layer).

With one colour (Moving MNIST) mask 'A' hides the centre and mask 'B' shows it. Without a mask
the same module is a plain (optionally dilated) convolution, as used by the encoders and by the
baseline's decoders.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vpn_jax.conv import conv2d


def channel_groups(num_channels: int, num_groups: int) -> np.ndarray:
    """Colour group of each channel: contiguous, near-equal blocks; int[num_channels].

    Channel k belongs to group `k * num_groups // num_channels`. For the input frame
    (num_channels == num_groups) channel c is colour c; for the 256-way output layer
    (num_channels == 256 * C) the logits of colour c form group c.
    """
    if num_channels < num_groups:
        raise ValueError(
            f'{num_channels} channels cannot be split into {num_groups} colour groups; '
            f'use at least {num_groups} channels.')
    return np.arange(num_channels) * num_groups // num_channels


def causal_mask(kernel_size: int, in_groups: np.ndarray, out_groups: np.ndarray,
                mask_type: str) -> np.ndarray:
    """PixelCNN mask; float32[kernel_size, kernel_size, len(in_groups), len(out_groups)]."""
    if mask_type not in ('A', 'B'):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}.")
    if kernel_size % 2 != 1:
        raise ValueError(f'Masked convolutions need an odd kernel size, got {kernel_size}.')
    centre = kernel_size // 2
    mask = np.zeros((kernel_size, kernel_size, len(in_groups), len(out_groups)), np.float32)
    mask[:centre] = 1.0
    mask[centre, :centre] = 1.0
    if mask_type == 'A':
        mask[centre, centre] = in_groups[:, None] < out_groups[None, :]
    else:
        mask[centre, centre] = in_groups[:, None] <= out_groups[None, :]
    return mask


class MaskedConv(nn.Module):
    """A resolution-preserving 2-D convolution, optionally masked, optionally conditioned.

    Attributes:
      features: output channels of one block (see `num_blocks`).
      kernel_size: odd spatial size of the (square) kernel.
      dilation: dilation rate (sect. 4.3; encoders only).
      mask_type: None (no mask), 'A' or 'B'.
      num_colors: number of colour groups the mask respects (1 or 3).
      num_blocks: the output is `num_blocks` stacked blocks of `features` channels, each block
        grouped like a `features`-channel layer. Used to fuse the MU's gates into one conv.
      dtype: computation dtype; parameters are float32.
    """
    features: int
    kernel_size: int = 3
    dilation: int = 1
    mask_type: Optional[str] = None
    num_colors: int = 1
    num_blocks: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, cond: Optional[jax.Array] = None) -> jax.Array:
        """x: float[N, H, W, Cin]; cond: float[N, D] or None -> float[N, H, W, blocks*features].

        `cond` (actions and states, sect. 6.1) enters as a 1x1 convolution of the vector
        broadcast over all positions, i.e. a per-image bias; it carries no pixel information
        and so needs no mask.
        """
        in_features = x.shape[-1]
        out_features = self.num_blocks * self.features
        k = self.kernel_size
        kernel = self.param('kernel', nn.initializers.lecun_normal(),
                            (k, k, in_features, out_features), jnp.float32)
        if self.mask_type is not None:
            mask = causal_mask(
                k, channel_groups(in_features, self.num_colors),
                np.tile(channel_groups(self.features, self.num_colors), self.num_blocks),
                self.mask_type)
            kernel = kernel * mask
            # Taps the mask zeroes entirely need no kernel gradient (vpn_jax.conv).
            live_taps = tuple(zip(*np.nonzero(mask.any(axis=(2, 3)))))
        else:
            live_taps = None
        bias = self.param('bias', nn.initializers.zeros_init(), (out_features, ), jnp.float32)
        y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.dilation, live_taps)
        y = y + bias.astype(self.dtype)
        if cond is not None:
            y = y + nn.Dense(out_features, dtype=self.dtype, name='cond')(cond)[:, None, None, :]
        return y
