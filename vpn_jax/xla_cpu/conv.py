"""The model's convolution with a kernel gradient that XLA:CPU runs at matmul speed.

`conv2d` has `vpn_jax.model.masked_conv.xla_conv2d`'s value; its gradient is a `custom_vjp`,
because XLA:CPU's kernel-gradient convolutions run far below its matmul speed (the figures:
WORKSPACE.md, "Speed on the CPU"). The kernel gradient is computed with matmuls,

    dK[i, j] = sum over n, y, x of  X_pad[n, y + d i, x + d j, :]^T  dY[n, y, x, :],

a few images at a time, one (k Cin, n*H*W) @ (n*H*W, Cout) matmul per kernel row, its left
operand the row's k windows stacked channel-major (`_kernel_grad_rows`); a 1x1 convolution is a
matmul in both directions. The input gradient is the usual convolution of dY with the flipped,
transposed kernel. On other platforms `lax.platform_dependent` keeps XLA's own kernel gradient.
`vpn_jax.xla_cpu.use_matmul_kernel_gradients` makes the model use it; tested against `jax.vjp`
of XLA's convolution in `tests/test_xla_cpu.py`.
"""

import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from vpn_jax.model.masked_conv import xla_conv2d


def _pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 1x1 convolution as a matmul: float[N, H, W, Cin], float[1, 1, Cin, Cout]."""
    return jnp.einsum('nhwc,cd->nhwd', x, kernel[0, 0])


def conv2d(x: jax.Array,
           kernel: jax.Array,
           dilation: int = 1,
           live_taps: Optional[Tuple[Tuple[int, int], ...]] = None) -> jax.Array:
    """`xla_conv2d(x, kernel, dilation)`, differentiated with matmuls on the CPU.

    x float[N, H, W, Cin], kernel float[k, k, Cin, Cout] (k odd) -> float[N, H, W, Cout] in the
    common dtype of `x` and `kernel` (cast them first).

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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d(x: jax.Array, kernel: jax.Array, dilation: int, live_taps) -> jax.Array:
    del live_taps  # Used by the backward pass only.
    if kernel.shape[0] == 1 and kernel.shape[1] == 1:
        return _pointwise(x, kernel)
    return xla_conv2d(x, kernel, dilation)


def _conv2d_fwd(x, kernel, dilation, live_taps):
    return _conv2d(x, kernel, dilation, live_taps), (x, kernel)


def _runs(columns) -> Tuple[Tuple[int, ...], ...]:
    """Sorted column indices split into runs of consecutive ones: (0, 1, 3) -> ((0, 1), (3,))."""
    runs = []
    for j in sorted(columns):
        if runs and j == runs[-1][-1] + 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    return tuple(map(tuple, runs))


# Images per kernel-gradient chunk: as many as keep a chunk's x, stacked windows and dY within
# this many bytes (at least one image): one 64x64 image at c = 128, eight at the cpu config's
# c = 16. A shorter contraction makes XLA:CPU's matmul faster; tuned on both model sizes.
_CHUNK_BYTES = 16 * 2**20


def _kernel_grad_rows(x: jax.Array, g: jax.Array, kernel_shape, dilation: int,
                      live_taps) -> jax.Array:
    """dK, a few images at a time, one matmul per kernel row (per run of live taps in a row).

    x: float[N, H, W, Cin], g = dY: float[N, H, W, Cout]; returns float32[k, k, Cin, Cout].
    For a chunk of n images, x is transposed to channel-major (Cin, H + 2p, n, W + 2p) and
    padded, the live kernel columns' windows are stacked along the channels into A:
    float[(columns, Cin), H + 2p, n, W], and kernel row i is the single product

        dK[i, j0:j1] += A[(j0:j1, :), d i : d i + H] (as (r Cin, H n W))  @  dY (as (H n W, Cout)),

    dY transposed to (H, n, W, Cout) to match. Against one (N H W, Cin)^T @ (N H W, Cout) matmul
    per tap this gives XLA:CPU a non-transposed left operand with k times the rows, which it runs
    much faster (YNNPACK rather than Eigen), and the chunks keep the contraction short, which is
    faster again (WORKSPACE.md, "Speed on the CPU"). The chunks are a Python loop, not a
    `lax.scan`: XLA's cost analysis counts a loop body once, and the benchmarks' FLOP counts come
    from it.
    """
    k = kernel_shape[0]
    pad = dilation * (k // 2)
    n, h, w, cin = x.shape
    columns = sorted({j for _, j in live_taps})
    rows = [(i, run) for i in range(k) for run in _runs(j for row, j in live_taps if row == i)]
    image_bytes = h * w * (cin * (1 + len(columns)) + g.shape[-1]) * x.dtype.itemsize
    chunk = max(1, min(n, _CHUNK_BYTES // image_bytes))

    def chunk_kernel_grad(x, g):
        """x: float[n, H, W, Cin], g: float[n, H, W, Cout] -> float32[k, k, Cin, Cout]."""
        m = x.shape[0] * h * w
        padded = jnp.pad(x.transpose(3, 1, 0, 2), ((0, 0), (pad, pad), (0, 0), (pad, pad)))
        stacked = jnp.concatenate([padded[..., j * dilation:j * dilation + w] for j in columns])
        g = g.transpose(1, 0, 2, 3).reshape(m, g.shape[-1])
        taps = {}
        for i, run in rows:
            first = columns.index(run[0]) * cin
            lhs = stacked[first:first + len(run) * cin, i * dilation:i * dilation + h]
            product = jnp.einsum('cm,md->cd',
                                 lhs.reshape(len(run) * cin, m),
                                 g,
                                 preferred_element_type=jnp.float32)
            taps.update(zip(((i, j) for j in run), product.reshape(len(run), cin, -1)))
        zero = jnp.zeros(kernel_shape[2:], jnp.float32)
        return jnp.stack([taps.get((i, j), zero) for i in range(k)
                          for j in range(k)]).reshape(kernel_shape)

    parts = [
        chunk_kernel_grad(x[start:start + chunk], g[start:start + chunk])
        for start in range(0, n, chunk)
    ]
    return sum(parts[1:], parts[0])


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
        cpu=lambda x, g, kernel: _kernel_grad_rows(x, g, kernel.shape, dilation, live_taps),
        default=lambda x, g, kernel: _kernel_grad_xla(x, g, kernel, dilation))
    return dx, dk.astype(kernel.dtype)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)
