"""XLA:CPU scheduling for the command-line programs (training, evaluation, benchmarks).

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
"""

import os
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
