"""Resolution-preserving CNN encoder (sect. 3.1), applied to every frame independently."""

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vpn_jax.model.masked_conv import MaskedConv


def residual_stack(block_cls: Callable[..., nn.Module],
                   *,
                   num_blocks: int,
                   channels: int,
                   dilations: Sequence[int],
                   mask_type: Optional[str],
                   num_colors: int,
                   dtype: Any,
                   remat: bool,
                   name_prefix: str = 'block') -> list:
    """`num_blocks` residual blocks (RMB or ReLU); block b uses `dilations[b]` (1 if empty)."""
    cls = nn.remat(block_cls) if remat else block_cls
    return [
        cls(channels=channels,
            dilation=dilations[b] if dilations else 1,
            mask_type=mask_type,
            num_colors=num_colors,
            dtype=dtype,
            name=f'{name_prefix}_{b}') for b in range(num_blocks)
    ]


class Encoder(nn.Module):
    """3x3 input convolution to 2c channels, then `num_blocks` residual blocks; no striding.

    Attributes:
      block_cls: `ResidualMultiplicativeBlock` or `ReluResidualBlock`.
      channels: c (the blocks' residual stream has 2c channels).
      num_blocks: number of residual blocks (k = 8 RMBs or 16 ReLU blocks in the paper).
      dilations: per-block dilation, e.g. (1, 2, 4, 8, 1, 2, 4, 8); empty for none.
      dtype: computation dtype.
      remat: rematerialise each block in the backward pass (saves activation memory).
    """
    block_cls: Callable[..., nn.Module]
    channels: int
    num_blocks: int
    dilations: Sequence[int] = ()
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, frames: jax.Array, cond: Optional[jax.Array] = None) -> jax.Array:
        """frames: float[N, H, W, C] in [-1, 1]; cond: float[N, D] or None -> float[N, H, W, 2c]."""
        h = MaskedConv(2 * self.channels, kernel_size=3, dtype=self.dtype, name='input')(frames,
                                                                                         cond)
        for block in residual_stack(self.block_cls,
                                    num_blocks=self.num_blocks,
                                    channels=self.channels,
                                    dilations=self.dilations,
                                    mask_type=None,
                                    num_colors=1,
                                    dtype=self.dtype,
                                    remat=self.remat):
            h = block(h, cond)
        return h
