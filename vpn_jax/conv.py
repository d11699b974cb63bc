"""The one convolution every layer uses: 2-D, stride 1, 'SAME', optionally dilated.

Its value is `lax.conv_general_dilated`'s. Its gradient is computed by hand (a `custom_vjp`)
because XLA:CPU's kernel-gradient convolutions are slow: at paper size (4x64x64, c=128) they run
at 16-19% of a 2048^2 matmul's FLOP/s for the 3x3 layers and at 5-6% for the 1x1s, against
66-75% for the forward convolution (`python benchmarks/conv_gradients.py`, WORKSPACE.md). On the
CPU the kernel gradient is therefore one matmul per kernel tap (49-64%),

    dK[i, j] = sum over n, y, x of  X_pad[n, y + d i, x + d j, :]^T  dY[n, y, x, :],

i.e. `k * k` matmuls of shape (Cin, N*H*W) @ (N*H*W, Cout), and a 1x1 convolution is a matmul in
both directions (80-86% forward, against lax's 36-39%). On other platforms (GPU, TPU)
`lax.platform_dependent` keeps XLA's own kernel gradient, which cuDNN and the TPU compiler do
well (on a lent H100 the paper-size train step ran at 28.7% MFU in bf16, WORKSPACE.md; the
per-tap formulation was not timed there). The input gradient is the usual convolution of dY with
the flipped, transposed kernel on every platform.

Tested against `jax.vjp` of `lax.conv_general_dilated` (`tests/test_conv.py`).
"""

import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp

_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def xla_conv2d(x: jax.Array, kernel: jax.Array, dilation: int = 1) -> jax.Array:
    """`conv2d`'s value with XLA's own gradients (the reference the tests and benchmarks use)."""
    return jax.lax.conv_general_dilated(x,
                                        kernel,
                                        window_strides=(1, 1),
                                        padding='SAME',
                                        rhs_dilation=(dilation, dilation),
                                        dimension_numbers=_DIMENSIONS)


def _pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 1x1 convolution as a matmul: float[N, H, W, Cin], float[1, 1, Cin, Cout]."""
    return jnp.einsum('nhwc,cd->nhwd', x, kernel[0, 0])


def conv2d(x: jax.Array,
           kernel: jax.Array,
           dilation: int = 1,
           live_taps: Optional[Tuple[Tuple[int, int], ...]] = None) -> jax.Array:
    """Resolution-preserving convolution: x float[N, H, W, Cin], kernel float[k, k, Cin, Cout].

    k must be odd; zero padding of `dilation * (k // 2)` on each side keeps H and W. Returns
    float[N, H, W, Cout] in the common dtype of `x` and `kernel` (cast them first).

    `live_taps`, if given, lists the kernel positions (i, j) that the caller's mask can leave
    non-zero; the kernel gradient is computed only there and reported as zero elsewhere, which is
    exact for a kernel that is multiplied by that mask (a PixelCNN mask kills 4 of 9 taps of a 3x3
    kernel and 24 of 49 of a 7x7).
    """
    if kernel.shape[0] % 2 != 1 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f'conv2d needs a square kernel of odd size; got {kernel.shape[:2]}.')
    # Inside `shard_map` an operand may vary over a mesh axis while the other does not (the
    # ConvLSTM's zero state meets per-device parameters). A custom_vjp must return cotangents
    # typed like its inputs, so both are made varying over the same axes first; JAX transposes
    # that cast (a psum) where it is needed.
    axes = _varying_axes(x) | _varying_axes(kernel)
    x, kernel = (_vary(a, axes) for a in (x, kernel))
    k = kernel.shape[0]
    all_taps = tuple((i, j) for i in range(k) for j in range(k))
    live_taps = all_taps if live_taps is None else tuple(sorted(map(tuple, live_taps)))
    if not set(live_taps) <= set(all_taps):
        raise ValueError(f'live_taps {live_taps} lie outside the {k}x{k} kernel.')
    return _conv2d(x, kernel, dilation, live_taps)


def _varying_axes(a: jax.Array) -> frozenset:
    """Mesh axes over which `a` varies inside shard_map (empty outside)."""
    aval = jax.typeof(a)
    if hasattr(aval, 'manual_axis_type'):  # JAX >= 0.9.
        return aval.manual_axis_type.varying
    return getattr(aval, 'vma', frozenset())


def _vary(a: jax.Array, axes: frozenset) -> jax.Array:
    missing = tuple(sorted(axes - _varying_axes(a)))
    return jax.lax.pcast(a, missing, to='varying') if missing else a


def vary_like(tree, like: jax.Array):
    """`tree`'s arrays, made to vary over the shard_map mesh axes `like` varies over.

    E.g. a scan's zero initial carry, which must have the type of the carry the body returns.
    The identity outside shard_map.
    """
    return jax.tree_util.tree_map(lambda a: _vary(a, _varying_axes(like)), tree)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d(x: jax.Array, kernel: jax.Array, dilation: int, live_taps) -> jax.Array:
    del live_taps  # Used by the backward pass only.
    if kernel.shape[0] == 1 and kernel.shape[1] == 1:
        return _pointwise(x, kernel)
    return xla_conv2d(x, kernel, dilation)


def _conv2d_fwd(x, kernel, dilation, live_taps):
    return _conv2d(x, kernel, dilation, live_taps), (x, kernel)


def _kernel_grad_taps(x: jax.Array, g: jax.Array, kernel_shape, dilation: int,
                      live_taps) -> jax.Array:
    """dK as one (Cin, N*H*W) @ (N*H*W, Cout) matmul per live tap; float[k, k, Cin, Cout].

    Each tap's window is reshaped to a 2-D (N*H*W, Cin) matrix first: XLA:CPU contracts a single
    dimension faster than the three (n, h, w) of the equivalent 4-D einsum.
    """
    k = kernel_shape[0]
    pad = dilation * (k // 2)
    n, h, w, cin = x.shape
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    g = g.reshape(n * h * w, g.shape[-1])
    zero = jnp.zeros(kernel_shape[2:], g.dtype)

    def tap(i, j):
        window = padded[:, i * dilation:i * dilation + h, j * dilation:j * dilation + w]
        return jnp.einsum('mc,md->cd', window.reshape(n * h * w, cin), g)

    taps = [tap(i, j) if (i, j) in live_taps else zero for i in range(k) for j in range(k)]
    return jnp.stack(taps).reshape(kernel_shape)


def _kernel_grad_xla(x: jax.Array, g: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
    return jax.vjp(lambda kk: xla_conv2d(x, kk, dilation), kernel)[1](g)[0]


def _conv2d_bwd(dilation, live_taps, residuals, g):
    x, kernel = residuals
    g = g.astype(x.dtype)
    if kernel.shape[0] == 1 and kernel.shape[1] == 1:
        dx = jnp.einsum('nhwd,cd->nhwc', g, kernel[0, 0])
        m = x.shape[0] * x.shape[1] * x.shape[2]
        dk = jnp.einsum('mc,md->cd', x.reshape(m, -1), g.reshape(m, -1))[None, None]
        return dx, dk.astype(kernel.dtype)
    # Input gradient: correlate dY with the kernel flipped in space, Cin and Cout swapped. With
    # odd k and symmetric padding this is again a 'SAME' convolution.
    dx = xla_conv2d(g, jnp.flip(kernel, (0, 1)).swapaxes(2, 3), dilation)
    dk = jax.lax.platform_dependent(
        x,
        g,
        kernel,
        cpu=lambda x, g, kernel: _kernel_grad_taps(x, g, kernel.shape, dilation, live_taps),
        default=lambda x, g, kernel: _kernel_grad_xla(x, g, kernel, dilation))
    return dx, dk.astype(kernel.dtype)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)
