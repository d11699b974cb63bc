"""`vpn_jax.conv.conv2d`: lax's convolution, with a hand-written gradient that must equal lax's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpn_jax import conv
from vpn_jax.conv import conv2d, xla_conv2d as lax_conv
from vpn_jax.masked_conv import causal_mask, channel_groups


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


def test_cpu_kernel_gradient_is_matmuls_not_a_convolution():
    """On the CPU the backward pass has one convolution (the input gradient), not two."""
    x = jnp.ones((1, 8, 8, 4))
    kernel = jnp.ones((3, 3, 4, 4))
    grad = jax.jit(jax.grad(lambda a, b: conv2d(a, b, 1).sum(), (0, 1)))
    hlo = grad.lower(x, kernel).compile().as_text()
    assert jax.default_backend() == 'cpu'
    assert hlo.count('convolution(') == 1, hlo


def test_even_kernel_is_rejected():
    with pytest.raises(ValueError, match='odd size'):
        conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((2, 2, 1, 1)), 1)
