"""Everything the project does for XLA:CPU's speed, and nothing the model depends on.

None of it changes results; the commands (`vpn_jax.main`, `vpn_jax.evaluate`, the benchmarks)
call `configure()` first thing, and the test suite turns on the convolutions. On GPU and TPU
nothing here is used: the model runs XLA's own convolutions and gradients.

* `use_matmul_kernel_gradients` makes every model convolution compute its kernel gradient with
  matmuls (`vpn_jax.xla_cpu.conv`); XLA:CPU's own kernel-gradient convolutions are far slower.
* `configure_scheduler` turns XLA:CPU's concurrency-optimised scheduler off through XLA_FLAGS:
  the convolutions' matmuls already use every core, so running other operations beside them only
  competes for cores and caches. XLA reads the flag when its first backend starts.
  `vpn_jax.sample_main` keeps XLA's default, with which the sampler is faster.
* `small_batch_matmul` is the fast sampler's matrix product on a CPU: row by row for small
  batches, which XLA:CPU runs faster than one product.
* `keep_freed_memory` makes glibc's malloc keep freed memory. XLA:CPU mallocs a step's buffers
  and frees them when the step ends; glibc returns large blocks to the kernel on free, so every
  step would fault its working set in again, page by page.

By how much: WORKSPACE.md, "Speed on the CPU". From the shell, for other programs:

    XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:\
glibc.malloc.arena_max=1
"""

import ctypes
import os
import platform
from typing import Dict, MutableMapping, Optional

from absl import logging
import jax
import jax.numpy as jnp

from vpn_jax.model import masked_conv
from vpn_jax.xla_cpu import conv

FLAG = '--xla_cpu_enable_concurrency_optimized_scheduler'


def configure(*, keep_freed: bool = True, concurrent_scheduler: bool = False) -> Dict[str, bool]:
    """The commands' setup: call it before anything touches a JAX device.

    The scheduler flag, malloc's settings (when `keep_freed`) and the matmul kernel gradients.
    Returns which of the first two were set (a user's own XLA_FLAGS or GLIBC_TUNABLES win).
    """
    done = {
        'scheduler': configure_scheduler(concurrent_scheduler),
        'keep_freed_memory': keep_freed and keep_freed_memory(),
    }
    use_matmul_kernel_gradients()
    return done


def use_matmul_kernel_gradients(enabled: bool = True) -> None:
    """Model convolutions traced on a CPU backend get `vpn_jax.xla_cpu.conv.conv2d`'s gradients.

    Same values; the kernel gradients are matmuls. Other backends keep XLA's convolution. False
    restores XLA's everywhere. Affects functions traced afterwards.
    """
    masked_conv.set_conv2d(_conv2d_on_cpu if enabled else None)


def _conv2d_on_cpu(x, kernel, dilation, live_taps):
    if jax.default_backend() == 'cpu':
        return conv.conv2d(x, kernel, dilation, live_taps)
    return masked_conv.xla_conv2d(x, kernel, dilation)


def configure_scheduler(concurrent: bool = False,
                        environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Adds `FLAG=<concurrent>` to XLA_FLAGS (default: off) unless XLA_FLAGS sets FLAG already.

    Returns whether the flag was added: a user's own setting wins. Without effect (and logged)
    once a JAX backend has started, since XLA has read its flags by then.
    """
    environ = os.environ if environ is None else environ
    current = environ.get('XLA_FLAGS', '')
    if FLAG in current:
        return False
    environ['XLA_FLAGS'] = f'{current} {FLAG}={str(concurrent).lower()}'.strip()
    if environ is os.environ and _backends_started():
        logging.warning('%s was set after JAX started a backend and has no effect there.', FLAG)
    return True


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # A JAX without this private helper: cannot tell.
        return False


# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def keep_freed_memory(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Makes glibc's malloc keep freed memory for reuse instead of returning it to the system.

    Sets, with `mallopt`: no mmap for large blocks (M_MMAP_MAX 0), no trimming of the heap
    (M_TRIM_THRESHOLD -1) and a single arena (M_ARENA_MAX 1). One arena, because with several a
    step's buffers can land in more than one heap and the process then holds them twice. The
    costs: the process keeps its peak memory until it exits, and compiles are a little slower.
    Call it before JAX starts its threads: an arena a thread already uses stays. Returns whether
    the settings were made: False off glibc, or when GLIBC_TUNABLES sets a `glibc.malloc`
    tunable (the user's own setting wins).
    """
    environ = os.environ if environ is None else environ
    if 'glibc.malloc.' in environ.get('GLIBC_TUNABLES', ''):
        return False
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = [
        mallopt(param, value)
        for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    ]
    if not all(ok):
        logging.warning(
            'mallopt refused a setting (results %s); freed memory may still be '
            'returned to the system.', ok)
    return all(ok)


# The fast sampler's per-pixel products (`vpn_jax.sampling`, on a CPU backend). XLA:CPU runs a
# matrix-vector product at memory speed, but a [B, K] x [K, N] product with a small B (2 to 8)
# slower than B separate ones (4x for B = 2 at K = 256, N = 512).
_ROWWISE_MAX_BATCH = 8
_ROWWISE_MIN_WEIGHTS = 1 << 14  # Below this, per-op overhead dominates: one product.


def small_batch_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x: float[B, K] @ w: float[K, N], one matrix-vector product per row for small B and big w."""
    if 1 < x.shape[0] <= _ROWWISE_MAX_BATCH and w.size >= _ROWWISE_MIN_WEIGHTS:
        return jnp.concatenate([x[i:i + 1] @ w for i in range(x.shape[0])], axis=0)
    return x @ w
