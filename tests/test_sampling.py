"""The samplers: fast == naive, argmax at temperature 0, keys, context, num_samples, bad input.

Tiny models on 4x4 frames; each (model, method, shape) compiles once and the results are shared
between the tests through `cached_samples`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vpn_jax
from vpn_jax import sampling

from conftest import make_tiny_config

T_CONTEXT, NUM_FRAMES, SIZE, NUM_SAMPLES = 2, 2, 4, 2

MODELS = {
    # RGB, 256-way softmax, RMBs (the MU's gates are the one layer whose output channels the fast
    # decoder permutes), actions and states.
    'rgb': dict(action_dim=2, state_dim=1),
    # Grayscale Moving MNIST-like: sigmoid outputs, the ReLU residual blocks, actions and states.
    'gray': dict(num_colors=1, output='sigmoid', block='relu', action_dim=2, state_dim=3),
    # The baseline: unmasked decoder, frames sampled in one shot; unconditioned.
    'baseline': dict(decoder='baseline'),
}


@functools.lru_cache(maxsize=None)
def setup(name):
    """(module, variables, context uint8[2, T_c, 4, 4, C], actions, states) for a tiny model."""
    model = vpn_jax.build_model(make_tiny_config(**MODELS[name]))
    variables = vpn_jax.init_variables(model, jax.random.key(0), height=SIZE, width=SIZE)
    # Random init gives nearly flat distributions; scale the output layer so that samples have
    # structure and argmax ties are impossible.
    params = jax.tree_util.tree_map(lambda x: x, variables['params'])
    logits = params['frame_decoder']['logits']
    params['frame_decoder']['logits'] = dict(logits, kernel=4.0 * logits['kernel'])
    variables = {'params': params}
    colors = model.num_colors
    context = np.random.default_rng(1).integers(0, 256, (2, T_CONTEXT, SIZE, SIZE, colors))
    if model.output == 'sigmoid':
        context = 255 * (context > 127)
    total = T_CONTEXT + NUM_FRAMES
    actions = (np.random.default_rng(2).normal(
        size=(2, total + 1, model.action_dim)).astype(np.float32) if model.action_dim else None
               )  # One action too many: ignored.
    states = (np.random.default_rng(3).normal(
        size=(2, T_CONTEXT, model.state_dim)).astype(np.float32) if model.state_dim else None)
    return model, variables, np.asarray(context, np.uint8), actions, states


@functools.lru_cache(maxsize=None)
def cached_samples(name, method='fast', seed=0, temperature=1.0):
    model, variables, context, actions, states = setup(name)
    return np.asarray(
        vpn_jax.sample(model,
                       variables,
                       context,
                       num_frames=NUM_FRAMES,
                       rng=jax.random.key(seed),
                       actions=actions,
                       states=states,
                       temperature=temperature,
                       num_samples=NUM_SAMPLES,
                       method=method))


@pytest.mark.parametrize('name', ['rgb', 'gray'])
def test_fast_sampler_equals_naive_sampler(name):
    fast = cached_samples(name, 'fast')
    naive = cached_samples(name, 'naive')
    assert fast.dtype == np.uint8
    np.testing.assert_array_equal(fast, naive)


@pytest.mark.parametrize('name', ['rgb', 'gray', 'baseline'])
def test_temperature_zero_is_the_argmax_of_the_teacher_forced_logits(name):
    model, variables, _, actions, states = setup(name)
    video = cached_samples(name, 'fast', temperature=0.0)
    rep = lambda x: None if x is None else np.repeat(x, NUM_SAMPLES, axis=0)
    total = T_CONTEXT + NUM_FRAMES
    logits = model.apply(variables, jnp.asarray(video),
                         None if actions is None else rep(actions)[:, :total], rep(states))
    if model.output == 'softmax':
        best = np.asarray(jnp.argmax(logits, axis=-1))
    else:
        best = 255 * (np.asarray(logits) > 0)
    generated = video[:, T_CONTEXT:]
    np.testing.assert_array_equal(generated, best[:, T_CONTEXT - 1:])
    # The argmax does not depend on the key.
    np.testing.assert_array_equal(video, cached_samples(name, 'fast', seed=1, temperature=0.0))


@pytest.mark.parametrize('name', ['rgb', 'gray', 'baseline'])
def test_keys_samples_and_context(name):
    model, _, context, _, _ = setup(name)
    video = cached_samples(name, 'fast', seed=0)
    assert video.shape == (2 * NUM_SAMPLES, T_CONTEXT + NUM_FRAMES, SIZE, SIZE, model.num_colors)
    # Row b * num_samples + s starts with video b's context, unchanged.
    np.testing.assert_array_equal(video[:, :T_CONTEXT], np.repeat(context, NUM_SAMPLES, axis=0))
    # The same key gives the same video; another key another continuation; the samples of one
    # video differ from each other.
    np.testing.assert_array_equal(video, cached_samples(name, 'fast', seed=0, temperature=1.0))
    other = cached_samples(name, 'fast', seed=1)
    assert (video[:, T_CONTEXT:] != other[:, T_CONTEXT:]).mean() > 0.1
    assert (video[0, T_CONTEXT:] != video[1, T_CONTEXT:]).mean() > 0.1
    if model.output == 'sigmoid':
        assert set(np.unique(video[:, T_CONTEXT:])) <= {0, 255}


def test_draw_samples_the_tempered_distribution():
    n = 20000
    logits = jnp.full((256, ), -1e9).at[jnp.array([3, 7, 200])].set(jnp.log(jnp.array([.2, .3,
                                                                                       .5])))
    noise = sampling.frame_noise(jax.random.key(0), (n, 1, 1, 1), 'softmax')[:, 0, 0, 0]
    for temperature in (1.0, 0.5):
        values = np.asarray(
            jax.vmap(lambda z: sampling.draw(logits, z, temperature, 'softmax'))(noise))
        expected = np.asarray(jax.nn.softmax(logits / temperature))[[3, 7, 200]]
        observed = [(values == v).mean() for v in (3, 7, 200)]
        np.testing.assert_allclose(observed, expected, atol=0.015)
    assert int(sampling.draw(logits, noise[0], 0.0, 'softmax')) == 200
    logistic = sampling.frame_noise(jax.random.key(1), (n, 1, 1, 1), 'sigmoid')[:, 0, 0, 0]
    for logit, temperature in ((0.7, 1.0), (0.7, 2.0), (-1.5, 1.0)):
        values = np.asarray(sampling.draw(jnp.float32(logit), logistic, temperature, 'sigmoid'))
        assert set(np.unique(values)) <= {0, 255}
        np.testing.assert_allclose((values == 255).mean(),
                                   jax.nn.sigmoid(logit / temperature),
                                   atol=0.015)
    assert int(sampling.draw(jnp.float32(0.1), logistic[0], 0.0, 'sigmoid')) == 255
    assert int(sampling.draw(jnp.float32(-0.1), logistic[0], 0.0, 'sigmoid')) == 0


def test_bad_inputs_raise_value_errors():
    model, variables, context, actions, states = setup('gray')
    call = lambda **kw: vpn_jax.sample(
        model, variables, **{
            'context': context,
            'num_frames': NUM_FRAMES,
            'rng': jax.random.key(0),
            'actions': actions,
            'states': states,
            **kw
        })
    total = T_CONTEXT + NUM_FRAMES
    cases = [
        (dict(context=context.astype(np.float32)), 'dtype uint8'),
        (dict(context=context[0]), r'uint8\[B, T_context, H, W, C\]'),
        (dict(context=context[:, :0]), 'at least one'),
        (dict(context=np.repeat(context, 3, axis=-1)), 'num_colors=1'),
        (dict(actions=actions[:, :total - 1]), r'actions must be float\[2, >= 4, 2\]'),
        (dict(actions=None), 'actions must be'),
        (dict(states=np.zeros((2, total + 1, 3), np.float32)), 'states must be'),
        (dict(temperature=-0.5), 'temperature'),
        (dict(temperature=float('nan')), 'temperature'),
        (dict(num_frames=0), 'num_frames'),
        (dict(num_samples=0), 'num_samples'),
        (dict(method='slow'), 'method'),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            call(**kwargs)
    plain, plain_variables, plain_context, _, _ = setup('baseline')
    with pytest.raises(ValueError, match='action_dim=0'):
        vpn_jax.sample(plain,
                       plain_variables,
                       plain_context,
                       num_frames=1,
                       rng=jax.random.key(0),
                       actions=np.zeros((2, 3, 2), np.float32))
