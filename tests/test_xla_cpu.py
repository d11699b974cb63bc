"""`vpn_jax.xla_cpu`: the CPU-speed settings change how, never what, the model computes.

`conv2d` (matmul kernel gradients) must equal XLA's convolution in value and gradients, and the
model must train to the same gradients with it as with XLA's. The tests marked `host` test the
machine's settings rather than the model (page faults, compiled programs); `pytest -m "not host"`
leaves them out.
"""

import json
import os
import platform
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vpn_jax
from conftest import make_tiny_config
from train_helpers import run_python
from vpn_jax import xla_cpu
from vpn_jax.model import masked_conv
from vpn_jax.model.masked_conv import causal_mask, channel_groups, xla_conv2d as lax_conv
from vpn_jax.xla_cpu import conv
from vpn_jax.xla_cpu.conv import conv2d


@pytest.mark.parametrize('k,dilation', [(1, 1), (3, 1), (3, 2), (3, 4), (7, 1)])
def test_value_and_gradients_equal_lax(k, dilation):
    rng = np.random.default_rng(k * 10 + dilation)
    x = jnp.asarray(rng.standard_normal((2, 9, 7, 5)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, 5, 6)), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal((2, 9, 7, 6)), jnp.float32)
    ours, ours_vjp = jax.vjp(lambda a, b: conv2d(a, b, dilation), x, kernel)
    want, want_vjp = jax.vjp(lambda a, b: lax_conv(a, b, dilation), x, kernel)
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5)
    for got, expected in zip(ours_vjp(cotangent), want_vjp(cotangent)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('k,mask_type,dilation', [(3, 'B', 1), (7, 'A', 1), (3, 'B', 2)])
def test_masked_kernel_gradient_skips_dead_taps_exactly(k, mask_type, dilation):
    """With a causal mask, the gradient w.r.t. the unmasked parameters equals lax's."""
    rng = np.random.default_rng(k)
    groups = channel_groups(6, 3)
    mask = causal_mask(k, groups, groups, mask_type)
    live = tuple(zip(*np.nonzero(mask.any(axis=(2, 3)))))
    assert len(live) == (k * k) // 2 + 1  # Rows above, left of centre, and the centre.
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, 6, 6)), jnp.float32)
    loss = lambda conv: lambda w: jnp.sum(jnp.sin(conv(x, w * mask)))
    got = jax.grad(loss(lambda a, w: conv2d(a, w, dilation, live)))(kernel)
    want = jax.grad(loss(lambda a, w: lax_conv(a, w, dilation)))(kernel)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='outside'):
        conv2d(x, kernel, 1, ((k, 0), ))


@pytest.mark.parametrize('live', [((0, 0), (0, 2), (1, 1), (2, 0), (2, 1)), ((1, 2), ),
                                  ((2, 2), (0, 1))])
def test_kernel_gradient_of_scattered_live_taps(live):
    """Live taps that are not a prefix of their row (runs split, rows skipped) get lax's gradient."""
    rng = np.random.default_rng(len(live))
    mask = np.zeros((3, 3, 1, 1), np.float32)
    mask[tuple(np.array(live).T)] = 1.0
    x = jnp.asarray(rng.standard_normal((2, 6, 5, 4)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 4, 3)), jnp.float32)
    loss = lambda conv: lambda w: jnp.sum(jnp.sin(conv(x, w * mask)))
    got = jax.grad(loss(lambda a, w: conv2d(a, w, 2, live)))(kernel)
    want = jax.grad(loss(lambda a, w: lax_conv(a, w, 2)))(kernel)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.all(np.asarray(got)[mask[..., 0, 0] == 0] == 0)


@pytest.mark.parametrize('images_per_chunk', [1, 2])
def test_kernel_gradient_summed_over_image_chunks(monkeypatch, images_per_chunk):
    """The CPU kernel gradient of 3 images in chunks of 1 or 2 (the last one short) is lax's."""
    rng = np.random.default_rng(images_per_chunk)
    x = jnp.asarray(rng.standard_normal((3, 6, 5, 4)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 4, 3)), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal((3, 6, 5, 3)), jnp.float32)
    image_bytes = 6 * 5 * (4 * (1 + 3) + 3) * 4  # x, the 3 stacked columns and dY of one image.
    monkeypatch.setattr(conv, '_CHUNK_BYTES', images_per_chunk * image_bytes)
    got = jax.vjp(lambda w: conv2d(x, w, 2), kernel)[1](cotangent)[0]
    want = jax.vjp(lambda w: lax_conv(x, w, 2), kernel)[1](cotangent)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_bfloat16_gradients_keep_dtypes():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, 6, 6, 4)), jnp.bfloat16)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 4, 8)), jnp.bfloat16)
    dx, dk = jax.grad(lambda a, b: conv2d(a, b, 2).astype(jnp.float32).sum(), (0, 1))(x, kernel)
    assert dx.dtype == jnp.bfloat16 and dk.dtype == jnp.bfloat16
    want = jax.grad(lambda b: lax_conv(x.astype(jnp.float32), b, 2).sum())(kernel.astype(
        jnp.float32))
    np.testing.assert_allclose(dk.astype(jnp.float32), want, rtol=0.05, atol=0.3)


def test_even_kernel_is_rejected():
    with pytest.raises(ValueError, match='odd size'):
        conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((2, 2, 1, 1)), 1)


def test_model_gradients_equal_with_xla_convolutions():
    """The whole model's loss and gradients with `conv2d` equal those with XLA's convolution."""
    config = make_tiny_config(num_colors=1, output='sigmoid', action_dim=2)
    module = vpn_jax.build_model(config)
    video = jax.random.randint(jax.random.key(1), (2, 3, 5, 5, 1), 0, 256).astype(jnp.uint8)
    actions = jax.random.normal(jax.random.key(2), (2, 3, 2))
    variables = jax.jit(module.init)(jax.random.key(0), video, actions)

    def loss_and_grads():
        loss = lambda v: -vpn_jax.log_likelihood(module, v, video, num_context=1, actions=actions
                                                 ).sum()
        return jax.jit(jax.value_and_grad(loss))(variables)

    xla_cpu.use_matmul_kernel_gradients(False)
    try:
        assert masked_conv._conv2d_impl is lax_conv
        expected = loss_and_grads()
    finally:
        xla_cpu.use_matmul_kernel_gradients()
    assert masked_conv._conv2d_impl is not lax_conv
    got = loss_and_grads()
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), got,
                           expected)


@pytest.mark.parametrize('batch', [1, 3, 9])
def test_small_batch_products_row_by_row_equal_one_product(batch):
    x = jax.random.normal(jax.random.key(0), (batch, 128))
    w = jax.random.normal(jax.random.key(1), (128, 160))
    np.testing.assert_allclose(xla_cpu.small_batch_matmul(x, w), x @ w, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------ host settings


@pytest.mark.host
def test_cpu_kernel_gradient_is_matmuls_not_a_convolution():
    """On the CPU the backward pass has one convolution (the input gradient), not two."""
    x = jnp.ones((1, 8, 8, 4))
    kernel = jnp.ones((3, 3, 4, 4))
    grad = jax.jit(jax.grad(lambda a, b: conv2d(a, b, 1).sum(), (0, 1)))
    hlo = grad.lower(x, kernel).compile().as_text()
    assert jax.default_backend() == 'cpu'
    assert hlo.count('convolution(') == 1, hlo


FREED_MEMORY_SCRIPT = textwrap.dedent('''
    import ctypes, json, resource, sys, threading
    from vpn_jax import xla_cpu
    kept = xla_cpu.keep_freed_memory() if sys.argv[1] == 'keep' else None
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    n = 64 << 20  # Above glibc's largest mmap threshold (32 MB), like a big XLA buffer.
    def step():  # What a train step does: allocate, touch every page, free.
        p = libc.malloc(n)
        ctypes.memset(p, 1, n)
        libc.free(p)
    def faults_of(run):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        run()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults = [faults_of(step) for _ in range(3)]
    # The next step on another thread, as XLA:CPU's steps may run on different threads.
    def on_thread():
        thread = threading.Thread(target=step)
        thread.start()
        thread.join()
    thread_faults = faults_of(on_thread)
    print(json.dumps(dict(kept=kept, faults=faults, thread_faults=thread_faults)))
''')


@pytest.mark.host
@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='mallopt settings are glibc\'s')
def test_keep_freed_memory_reuses_pages_instead_of_faulting_them_in():
    """After `keep_freed_memory`, a freed 64 MB block comes back without page faults.

    Also when the next allocation comes from another thread: one arena serves them all.

    With glibc's default, every allocation of it is a fresh mmap whose pages fault in again
    (16,384 faults with 4 kB pages): what made one 20-frame paper-size benchmark run take
    20.75 million page faults (WORKSPACE.md, "Freed memory").
    """
    env = dict(os.environ)
    env.pop('GLIBC_TUNABLES', None)
    runs = {
        mode: json.loads(run_python(FREED_MEMORY_SCRIPT, mode, env).stdout.splitlines()[-1])
        for mode in ('default', 'keep')
    }
    assert runs['keep']['kept'] is True
    reused = max(runs['keep']['faults'][1:])  # The first round faults the heap in once.
    assert reused <= 8, runs
    assert min(runs['default']['faults'][1:]) > reused, runs
    # One arena: a block freed on one thread serves the next step's allocation on another (with an
    # arena per thread, that thread faults a block of its own in and the process holds both).
    assert runs['keep']['thread_faults'] <= 100, runs
    assert runs['default']['thread_faults'] > 4096, runs
    # A user's own malloc tunables win, and nothing is set.
    assert not xla_cpu.keep_freed_memory({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'})


SCHEDULER_SCRIPT = textwrap.dedent('''
    import sys
    import jax, numpy as np
    sys.path.insert(0, 'tests')
    from train_helpers import tiny_experiment
    from vpn_jax.data import input_pipeline
    from vpn_jax.training import train
    config = tiny_experiment('moving_mnist', size=8)
    module = train.build_module(config)
    mesh = train.make_mesh(jax.devices()[:1])
    state = train.replicate(train.create_train_state(config, module, jax.random.key(0)), mesh)
    batch = train.shard_batch(
        input_pipeline.train_batch(config, input_pipeline.train_source(config), 0), mesh)
    step = train.make_train_step(config, module, mesh).lower(state, batch).compile()
    for _ in range(2):
        state, _ = step(state, batch)
    leaves = jax.tree_util.tree_leaves(jax.device_get(state.params))
    np.savez(sys.argv[1], *leaves)
    # The scheduled program, to show that the flag reached XLA.
    open(sys.argv[1] + '.hlo', 'w').write(step.as_text())
''')


@pytest.mark.host
def test_xla_cpu_scheduler_changes_order_not_results(tmp_path):
    """Two train steps give the same parameters, bit for bit, with XLA:CPU's scheduler on or off.

    XLA reads XLA_FLAGS once per process, so each setting runs in its own process.
    """
    environ = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
    assert xla_cpu.configure_scheduler(environ=environ)
    assert environ['XLA_FLAGS'] == ('--xla_force_host_platform_device_count=2 '
                                    '--xla_cpu_enable_concurrency_optimized_scheduler=false')
    assert not xla_cpu.configure_scheduler(True, environ=environ)  # A setting already there wins.
    assert 'scheduler=false' in environ['XLA_FLAGS']

    leaves = {}
    for concurrent in (False, True):
        env = dict(os.environ, JAX_PLATFORMS='cpu')
        env.pop('XLA_FLAGS', None)
        xla_cpu.configure_scheduler(concurrent, environ=env)
        out = tmp_path / f'{concurrent}.npz'
        run_python(SCHEDULER_SCRIPT, str(out), env)
        with np.load(out) as f:
            leaves[concurrent] = [f[k] for k in sorted(f.files, key=lambda k: int(k[4:]))]
    # The flag did change the program XLA runs (the order of its operations) ...
    assert (tmp_path / 'False.npz.hlo').read_text() != (tmp_path / 'True.npz.hlo').read_text()
    # ... and not what it computes.
    assert len(leaves[False]) == len(leaves[True]) > 0
    for a, b in zip(leaves[False], leaves[True]):
        np.testing.assert_array_equal(a, b)
