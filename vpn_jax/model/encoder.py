"""Resolution-preserving CNN encoder (sect. 3.1), applied to every frame independently."""

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vpn_jax.model.masked_conv import CONV_OUTPUT, MaskedConv

# Rematerialisation of the residual blocks (the model's `remat` field): what each block keeps
# from its forward pass for the backward pass, the rest being recomputed there.
#   'none': everything autodiff needs (the most memory, no recomputation).
#   'blocks': only the block's input; the whole block's forward pass runs again in the backward
#     pass (about one more forward pass of the blocks).
#   'convs': every convolution's output (`MaskedConv`'s `CONV_OUTPUT`); the element-wise work
#     between them (the MU's sigmoid/tanh gates and products, the ReLUs) is recomputed, no
#     convolution is. Between the two in memory, and almost no extra FLOPs.
REMAT_POLICIES = {
    'none': None,
    'blocks': jax.checkpoint_policies.nothing_saveable,
    'convs': jax.checkpoint_policies.save_only_these_names(CONV_OUTPUT),
}


def remat_policy_name(remat: Any) -> str:
    """The policy name of a `remat` setting: a name in `REMAT_POLICIES`, or a bool.

    Configs written before the policies existed hold a bool: True was 'blocks', False 'none'.
    Raises ValueError for anything else, listing the valid names.
    """
    if isinstance(remat, bool):
        return 'blocks' if remat else 'none'
    if isinstance(remat, str) and remat in REMAT_POLICIES:
        return remat
    raise ValueError(f'remat must be one of {list(REMAT_POLICIES)} (or a bool: True is '
                     f"'blocks', False 'none'); got {remat!r}.")


def residual_stack(block_cls: Callable[..., nn.Module],
                   *,
                   num_blocks: int,
                   channels: int,
                   dilations: Sequence[int],
                   mask_type: Optional[str],
                   num_colors: int,
                   dtype: Any,
                   remat: Any,
                   name_prefix: str = 'block') -> list:
    """`num_blocks` residual blocks (RMB or ReLU); block b uses `dilations[b]` (1 if empty).

    remat: a `REMAT_POLICIES` name (or a bool, see `remat_policy_name`); each block is wrapped
    in `nn.remat` with that policy unless it is 'none'.
    """
    name = remat_policy_name(remat)
    cls = block_cls if name == 'none' else nn.remat(block_cls, policy=REMAT_POLICIES[name])
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
      remat: what each block keeps for the backward pass, a `REMAT_POLICIES` name (saves
        activation memory at the cost of recomputation).
    """
    block_cls: Callable[..., nn.Module]
    channels: int
    num_blocks: int
    dilations: Sequence[int] = ()
    dtype: Any = jnp.float32
    remat: str = 'none'

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
