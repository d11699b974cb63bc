"""XLA:CPU settings for the command-line programs (training, evaluation, benchmarks).

Two settings, both made before JAX starts a backend: the scheduler (`configure_scheduler`) and
glibc's handling of freed memory (`keep_freed_memory`).

## The scheduler

XLA:CPU's default scheduler is "concurrency optimised": it orders independent operations so that
they can run at the same time, trading memory for concurrency. Our convolutions' matmuls already
use every core, so an operation run beside one only competes with it for cores and caches: on the
2-core CI machine the paper-size train step is faster with that scheduler off (WORKSPACE.md,
"Figures"). Scheduling changes the order of operations, not their arithmetic; the parameters
after two train steps are the same bit for bit either way (tests/test_train.py).

XLA reads the setting from the XLA_FLAGS environment variable once, when JAX's first backend
starts; `jax.jit(..., compiler_options=...)` does not reach it (checked with jax 0.10.2: the
compiled program is unchanged). So the programs call `configure_scheduler()` before they touch a
device; in a notebook, set the variable before importing JAX:

    XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false

Other platforms ignore the flag.

Sampling is the exception (the fast sampler's per-pixel steps are many small operations, which
that scheduler can presumably overlap; not profiled). With it on, the paper-size sampler was
11-14% faster (2.85 and 3.65 s/frame against 3.19 and 4.15, two alternating pairs of
`benchmarks/sample_speed.py`, WORKSPACE.md), so `vpn_jax.sample_main` leaves XLA's default alone.

## Freed memory
XLA:CPU allocates a step's intermediate buffers with malloc and frees them when the step ends. glibc
serves large allocations (above a threshold that grows to at most 32 MB) with fresh pages from mmap
and unmaps them on free, so every step faults most of its working set in again, page by page, and
the kernel zeroes each page. `keep_freed_memory()` makes malloc keep freed memory for the next step
instead: no mmap, no trimming, and a single arena. On the 2026-12-04 Intel host
(WORKSPACE.md, "Freed memory"), the paper-size train step at 4 frames took 6.8-7.8 s against 9.0-9.2
s (0.8-2.8 million page faults per run against 3.3 million), at 20 frames with `image_chunk=2`
41.5-45.0 s against 48.4-50.4 s. The costs: the process holds on to its peak memory until it exits,
as GPU allocators do, and the heap fragments: at 20 frames with `image_chunk=0` the peak resident
memory rose from 12.0 to 21.3-21.8 GB (11.9-12.3 GB with chunks of 2 or 4 images). The small `cpu`
config's step took 2.5-2.8 s against 3.0-3.1 s (per-tap kernel gradient, one arena per core, as
then). glibc only; a GLIBC_TUNABLES setting of malloc's own wins, and the programs'
`--nokeep_freed_memory` turns it off. The same setting from the shell, for
other programs:

    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:\
glibc.malloc.arena_max=1
"""

import ctypes
import os
import platform
from typing import MutableMapping, Optional

from absl import logging

FLAG = '--xla_cpu_enable_concurrency_optimized_scheduler'


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
    (M_TRIM_THRESHOLD -1) and a single arena (M_ARENA_MAX 1). glibc's default is 8 arenas per
    core, and with it the 4-frame paper-size step still faulted ~2.9 million pages per run in the
    other threads' arenas, whose heaps are mmap'd. With one arena per core, a step's buffers
    could land in either arena's heap, so the process could hold them twice: at 20 frames with
    `image_chunk=2`, 21.9-22.0 GB in two of three runs, at 55-63% of the matmul, against 12.1
    GB and 72% in the third. One arena held 11.9-12.0 GB at 71-74% in four of five runs; in the
    fifth the heap still doubled once, in the first timed step: XLA:CPU takes a step's
    temporaries as one 10.2 GB block, and, most likely (not traced), a small allocation split
    from the freed block left it too small for the next step (WORKSPACE.md, "Kernel gradients by kernel row", "Repeat
    runs"). What one arena costs: compiles ~10-30% slower. It had also made the `cpu`
    config's step slower than two arenas with the per-tap kernel gradient (3.2-3.3 against
    2.5-2.8 s); with the kernel gradient by row it does not (1.94-2.00 against 2.04-2.29 s).
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
