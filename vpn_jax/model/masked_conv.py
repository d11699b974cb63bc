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

from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp
import numpy as np

Taps = Tuple[Tuple[int, int], ...]

# The name every `MaskedConv` gives its output (bias and conditioning included), so that a
# rematerialisation policy can keep the convolutions' outputs and recompute the cheap
# element-wise work between them (`vpn_jax.model.encoder.REMAT_POLICIES`, 'convs').
CONV_OUTPUT = 'conv_output'


def xla_conv2d(x: jax.Array,
               kernel: jax.Array,
               dilation: int = 1,
               live_taps: Optional[Taps] = None) -> jax.Array:
    """Resolution-preserving convolution: x float[N, H, W, Cin], kernel float[k, k, Cin, Cout].

    Stride 1, zero padding of `dilation * (k // 2)` on each side (k odd), so H and W are kept;
    returns float[N, H, W, Cout]. `live_taps` lists the kernel positions a mask can leave
    non-zero; XLA needs no such hint (an implementation may use it to skip dead taps' gradients).
    """
    del live_taps
    return jax.lax.conv_general_dilated(x,
                                        kernel,
                                        window_strides=(1, 1),
                                        padding='SAME',
                                        rhs_dilation=(dilation, dilation),
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


_conv2d_impl: Callable[..., jax.Array] = xla_conv2d


def set_conv2d(impl: Optional[Callable[..., jax.Array]]) -> None:
    """Replaces, process-wide, the convolution every `MaskedConv` runs (None: XLA's own).

    `impl(x, kernel, dilation, live_taps)` must compute `xla_conv2d`'s value; only how it is
    differentiated may differ. `vpn_jax.xla_cpu` uses this for its faster CPU kernel gradients.
    Takes effect for functions traced afterwards.
    """
    global _conv2d_impl
    _conv2d_impl = xla_conv2d if impl is None else impl


def conv2d(x: jax.Array,
           kernel: jax.Array,
           dilation: int = 1,
           live_taps: Optional[Taps] = None) -> jax.Array:
    """`xla_conv2d`'s value, computed by the implementation `set_conv2d` chose."""
    if kernel.shape[0] % 2 != 1 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f'conv2d needs a square kernel of odd size; got {kernel.shape[:2]}.')
    return _conv2d_impl(x, kernel, dilation, live_taps)


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

    The output is named `CONV_OUTPUT` for rematerialisation policies.
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
            # Kernel positions the mask zeroes entirely (a hint for `conv2d`).
            live_taps = tuple(zip(*np.nonzero(mask.any(axis=(2, 3)))))
        else:
            live_taps = None
        bias = self.param('bias', nn.initializers.zeros_init(), (out_features, ), jnp.float32)
        y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.dilation, live_taps)
        y = y + bias.astype(self.dtype)
        if cond is not None:
            y = y + nn.Dense(out_features, dtype=self.dtype, name='cond')(cond)[:, None, None, :]
        # The identity, except inside a `jax.checkpoint` whose policy saves this name.
        return checkpoint_name(y, CONV_OUTPUT)


# ----------------------------------------------------------------------- incremental evaluation
# The fast sampler (vpn_jax/sampling.py) runs the trained decoder one pixel, and within a pixel one
# colour group, at a time. `IncrementalConv` is a `MaskedConv` in that form; the blocks' forms sit
# next to the blocks (`IncrementalRMB`, `IncrementalReluBlock`).


def group_bounds(num_channels: int, g: int, num_colors: int) -> Tuple[int, int]:
    """(lo, hi): channels lo..hi-1 of a `num_channels`-wide activation are colour group g."""
    groups = channel_groups(num_channels, num_colors)
    return int(np.argmax(groups == g)), int(np.sum(groups <= g))


def group_slice(vec: jax.Array, g: int, num_colors: int) -> jax.Array:
    """Colour group g of a per-pixel activation vector float[B, n]."""
    lo, hi = group_bounds(vec.shape[-1], g, num_colors)
    return vec[:, lo:hi]


def set_group(vec: jax.Array, g: int, values: jax.Array, num_colors: int) -> jax.Array:
    """`vec` float[B, n] with its colour group g replaced by `values`."""
    lo, hi = group_bounds(vec.shape[-1], g, num_colors)
    return vec.at[:, lo:hi].set(values)


class IncrementalConv:
    """A trained `MaskedConv` evaluated at one pixel and one colour group at a time.

    Built inside a trace from the layer's parameters. Output channels are permuted so that each
    colour group is one contiguous slice (`out[g] = (lo, hi)`); only the MU's fused gates need a
    non-trivial permutation (their group g becomes [g1_g, g2_g, g3_g, u_g]). The masks make an
    output at pixel p depend only on inputs before p (and p's earlier colours), so:

    * `rows_above` computes, once per row, the contribution of the kernel's q = k // 2 rows above
      the centre (which the masks leave whole) for the whole row;
    * `group` adds, per pixel and colour group, the taps left of the centre and the visible
      centre tap as one matrix-vector product.

    Attributes:
      q: k // 2 (0 for a 1x1 convolution): rows above and pixels to the left the layer reads.
      cin: input channels.
      bias: float[B, Cout], bias plus this frame's conditioning term.
    """

    def __init__(self,
                 params: Dict[str, Any],
                 *,
                 mask_type: str,
                 num_colors: int,
                 cond: Optional[jax.Array],
                 batch: int,
                 dtype: Any,
                 num_blocks: int = 1,
                 matmul: Callable[[jax.Array, jax.Array], jax.Array] = jnp.matmul):
        kernel = params['kernel']
        k, _, cin, cout = kernel.shape
        in_groups = channel_groups(cin, num_colors)
        out_groups = np.tile(channel_groups(cout // num_blocks, num_colors), num_blocks)
        kernel = kernel * causal_mask(k, in_groups, out_groups, mask_type)
        perm = np.concatenate([np.nonzero(out_groups == g)[0] for g in range(num_colors)])
        kernel = kernel[..., perm].astype(dtype)
        self.bias = conditioned_bias(params, cond, batch, dtype)[:, perm]
        counts = np.bincount(out_groups, minlength=num_colors)
        ends = np.cumsum(counts)
        self.out = [(int(e - n), int(e)) for n, e in zip(counts, ends)]
        self.q = q = k // 2
        self.cin = cin
        self._matmul = matmul
        self._up = kernel[:q] if q else None
        left = kernel[q, :q].reshape(q * cin, cout)
        # Per colour group g: the left taps and the centre tap in one matrix, so that a pixel
        # costs one matrix-vector product per layer and colour group.
        self._taps, self._lims = [], []
        for g, (lo, hi) in enumerate(self.out):
            visible = in_groups < g if mask_type == 'A' else in_groups <= g
            lim = int(np.sum(visible))  # Groups are contiguous and ascending: a prefix.
            self._lims.append(lim)
            taps = jnp.concatenate([left[:, lo:hi], kernel[q, q, :lim, lo:hi]], axis=0)
            self._taps.append(taps if taps.shape[0] else None)

    def rows_above(self, above: jax.Array) -> jax.Array:
        """Bias plus the rows above, for a whole row: float[B, W, Cout].

        above: float[B, q, W + 2q, Cin], the layer's inputs in the q rows above the current row,
        zero-padded by q columns on each side (zeros above the frame).
        """
        up = jax.lax.conv_general_dilated(above,
                                          self._up, (1, 1),
                                          'VALID',
                                          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
        return up[:, 0] + self.bias[:, None]

    def group(self,
              g: int,
              pre: jax.Array,
              x: jax.Array,
              left: Optional[jax.Array] = None) -> jax.Array:
        """Outputs of colour group g at the current pixel: float[B, hi_g - lo_g].

        pre: float[B, Cout], `bias` or, for k > 1, `rows_above` at this pixel.
        x: float[B, Cin], the layer's input at the current pixel, final for groups <= g.
        left: float[B, q * Cin], the layer's inputs at the q pixels to the left (k > 1).
        """
        lo, hi = self.out[g]
        y = pre[:, lo:hi]
        if self._taps[g] is not None:
            inputs = [x[:, :self._lims[g]]] if left is None else [left, x[:, :self._lims[g]]]
            y = y + self._matmul(jnp.concatenate(inputs, axis=1), self._taps[g])
        return y


def conditioned_bias(params: Dict[str, Any], cond: Optional[jax.Array], batch: int,
                     dtype: Any) -> jax.Array:
    """A `MaskedConv`'s bias plus its conditioning term (a per-image bias); float[B, Cout]."""
    bias = jnp.broadcast_to(params['bias'].astype(dtype)[None], (batch, params['bias'].shape[0]))
    if 'cond' in params:
        dense = params['cond']
        bias = bias + (cond.astype(dtype) @ dense['kernel'].astype(dtype) +
                       dense['bias'].astype(dtype))
    return bias
