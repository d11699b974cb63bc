"""Decoders: the PixelCNN decoder of the VPN (sect. 3.2) and the baseline's CNN (sect. 3.3)."""

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vpn_jax.model.encoder import residual_stack
from vpn_jax.model.masked_conv import MaskedConv

# PixelCNN's first layer: a 7x7 convolution with mask A (van den Oord et al. 2016).
INPUT_KERNEL_SIZE = 7


class Decoder(nn.Module):
    """Maps (frame t, context from frames < t) to per-sub-pixel logits for frame t.

    PixelCNN (`masked=True`): h = MaskA_7x7 * x_t + W_ctx * context, then `num_blocks` residual
    blocks whose every convolution has mask B, then ReLU, masked 1x1 to `top_channels`, ReLU,
    masked 1x1 to the output. The logit for sub-pixel (i, j, c) sees context and the sub-pixels
    of x_t before (i, j, c) in (row, column, colour) order. No dilation (sect. 4.3).

    Baseline (`masked=False`): the frame is not an input; h = W_ctx * context, then the same
    stack with unmasked convolutions: every sub-pixel of frame t depends only on frames < t.

    Attributes:
      block_cls: `ResidualMultiplicativeBlock` or `ReluResidualBlock`.
      channels: c (residual stream 2c).
      num_blocks: l = 12 RMBs or 24 ReLU blocks in the paper.
      top_channels: width of the layer before the output (768 or 1536 in the paper).
      num_colors: C, 1 or 3.
      output: 'softmax' (256 logits per sub-pixel) or 'sigmoid' (one logit per sub-pixel).
      masked: PixelCNN (True) or baseline (False).
      dtype: computation dtype; logits are float32.
      remat: what each block keeps for the backward pass (`encoder.REMAT_POLICIES`).
    """
    block_cls: Callable[..., nn.Module]
    channels: int
    num_blocks: int
    top_channels: int
    num_colors: int
    output: str = 'softmax'
    masked: bool = True
    dtype: Any = jnp.float32
    remat: str = 'none'

    @nn.compact
    def __call__(self,
                 frames: Optional[jax.Array],
                 context: jax.Array,
                 cond: Optional[jax.Array] = None) -> jax.Array:
        """Logits for each sub-pixel of the frames.

        Args:
          frames: float[N, H, W, C] in [-1, 1], the frames being predicted (teacher forcing);
            ignored (may be None) for the baseline.
          context: float[N, H, W, L], the ConvLSTM output after the previous frame.
          cond: float[N, D] or None, action/state conditioning of this frame.
        Returns:
          float32[N, H, W, C, 256] ('softmax') or float32[N, H, W, C] ('sigmoid').
        """
        mask_b = 'B' if self.masked else None
        conv = lambda features, kernel_size, mask_type, name: MaskedConv(features,
                                                                         kernel_size=kernel_size,
                                                                         mask_type=mask_type,
                                                                         num_colors=self.num_colors,
                                                                         dtype=self.dtype,
                                                                         name=name)
        width = 2 * self.channels
        h = conv(width, 1, None, 'context')(context, cond)
        if self.masked:
            h = h + conv(width, INPUT_KERNEL_SIZE, 'A', 'input')(frames)
        for block in residual_stack(self.block_cls,
                                    num_blocks=self.num_blocks,
                                    channels=self.channels,
                                    dilations=(),
                                    mask_type=mask_b,
                                    num_colors=self.num_colors,
                                    dtype=self.dtype,
                                    remat=self.remat):
            h = block(h, cond)
        h = conv(self.top_channels, 1, mask_b, 'top')(nn.relu(h), cond)
        values = 256 if self.output == 'softmax' else 1
        logits = conv(self.num_colors * values, 1, mask_b, 'logits')(nn.relu(h))
        logits = logits.astype(jnp.float32)
        if self.output == 'softmax':
            return logits.reshape(logits.shape[:-1] + (self.num_colors, 256))
        return logits
