r"""Convolution gradients on this machine: XLA's vs `vpn_jax.xla_cpu.conv.conv2d`'s, in FLOP/s.

    python benchmarks/conv_gradients.py [--batch=4] [--size=64]

For the paper-size layers (c = 128: the MU gates 3x3 128 -> 512, undilated and at dilation 8;
the RMB's 1x1s 256 -> 128 and 128 -> 256; the ConvLSTM's 3x3 256 -> 1024) it times, jit-compiled,
best of 3 after a warm-up: the forward convolution, the input gradient, XLA's kernel gradient
(`jax.vjp` of `lax.conv_general_dilated`) and conv2d's kernel gradient (one matmul per kernel
row on the CPU), each as FLOP/s and as a fraction of a 2048^2 float32 matmul timed in the same
process. Like vpn_jax.main it turns XLA:CPU's concurrency scheduler off and keeps freed memory
in malloc (`vpn_jax/xla_cpu/__init__.py`): without that, every call faults its buffers in again and the
benchmark times page faults. Current figures: WORKSPACE.md, "CPU: convolution gradients".
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from vpn_jax.xla_cpu import conv
from vpn_jax import xla_cpu

_BATCH = flags.DEFINE_integer('batch', 4, 'Images per convolution (batch x frames).')
_SIZE = flags.DEFINE_integer('size', 64, 'Image height and width.')
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    'keep_freed_memory', True, 'glibc malloc keeps freed memory between calls (as in '
    'vpn_jax.main; see vpn_jax/xla_cpu/__init__.py); --nokeep_freed_memory for glibc\'s default.')

LAYERS = (  # (name, k, dilation, Cin, Cout)
    ('MU gates 3x3', 3, 1, 128, 512),
    ('MU gates 3x3, dilation 8', 3, 8, 128, 512),
    ('RMB reduce 1x1', 1, 1, 256, 128),
    ('RMB expand 1x1', 1, 1, 128, 256),
    ('ConvLSTM 3x3', 3, 1, 256, 1024),
)


def best_time(f, *args, repeats: int = 3) -> float:
    jax.block_until_ready(f(*args))
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - start)
    return best


def main(argv):
    del argv
    kept = xla_cpu.configure(keep_freed=_KEEP_FREED_MEMORY.value)['keep_freed_memory']
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((2048, 2048)), jnp.float32)
    matmul = 2 * 2048**3 / best_time(jax.jit(lambda m: m @ m), a)
    n, s = _BATCH.value, _SIZE.value
    print(f'{n}x{s}x{s} inputs; 2048^2 float32 matmul: {matmul / 1e9:.0f} GFLOP/s; '
          f'{jax.devices()[0].device_kind}; malloc keeps freed memory: {kept}')
    print(f'{"layer":<26} {"pass":<22} {"ms":>8} {"GFLOP/s":>8} {"of matmul":>9}')
    for name, k, d, cin, cout in LAYERS:
        x = jnp.asarray(rng.standard_normal((n, s, s, cin)), jnp.float32)
        kernel = jnp.asarray(rng.standard_normal((k, k, cin, cout)) * 0.05, jnp.float32)
        g = jnp.asarray(rng.standard_normal((n, s, s, cout)), jnp.float32)
        flops = 2 * n * s * s * k * k * cin * cout
        passes = {
            'forward (lax)': (jax.jit(lambda x, w, d=d: conv.xla_conv2d(x, w, d)), (x, kernel)),
            'forward (conv2d)': (jax.jit(lambda x, w, d=d: conv.conv2d(x, w, d)), (x, kernel)),
            'input grad (lax)':
            (jax.jit(lambda x, w, g, d=d: jax.vjp(lambda y: conv.xla_conv2d(y, w, d), x)[1](g)[0]),
             (x, kernel, g)),
            'kernel grad (lax)':
            (jax.jit(lambda x, w, g, d=d: jax.vjp(lambda v: conv.xla_conv2d(x, v, d), w)[1](g)[0]),
             (x, kernel, g)),
            'kernel grad (conv2d)':
            (jax.jit(lambda x, w, g, d=d: jax.vjp(lambda v: conv.conv2d(x, v, d), w)[1](g)[0]),
             (x, kernel, g)),
        }
        for label, (f, args) in passes.items():
            seconds = best_time(f, *args)
            print(f'{name:<26} {label:<22} {seconds * 1e3:8.1f} {flops / seconds / 1e9:8.1f} '
                  f'{flops / seconds / matmul:9.0%}')


if __name__ == '__main__':
    app.run(main)
