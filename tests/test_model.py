"""Shapes, dtypes, causality, normalisation and input checks of the VPN and its baseline."""

import os

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vpn_jax
from vpn_jax.model.conv_lstm import ConvLSTM
from vpn_jax.model.decoder import Decoder
from vpn_jax.model.encoder import Encoder
from vpn_jax.model.masked_conv import causal_mask, channel_groups
from vpn_jax.model.multiplicative_unit import MultiplicativeUnit, ResidualMultiplicativeBlock
from vpn_jax.model.residual_block import ReluResidualBlock

from conftest import make_tiny_config
from vpn_jax.configs import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_video(key, shape):
    return jax.random.randint(key, shape, 0, 256).astype(jnp.uint8)


# ------------------------------------------------------------------------------- masks


def test_channel_groups_are_contiguous_and_balanced():
    np.testing.assert_array_equal(channel_groups(3, 3), [0, 1, 2])
    np.testing.assert_array_equal(channel_groups(7, 3), [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(channel_groups(768, 3), np.repeat([0, 1, 2], 256))
    np.testing.assert_array_equal(channel_groups(5, 1), np.zeros(5))
    with pytest.raises(ValueError, match='at least 3'):
        channel_groups(2, 3)


@pytest.mark.parametrize('mask_type', ['A', 'B'])
def test_causal_mask_matches_raster_and_colour_order(mask_type):
    groups = np.array([0, 1, 2])
    mask = causal_mask(5, groups, groups, mask_type)
    for di in range(5):
        for dj in range(5):
            for gin in range(3):
                for gout in range(3):
                    earlier_position = (di, dj) < (2, 2)
                    if (di, dj) == (2, 2):
                        visible = gin < gout if mask_type == 'A' else gin <= gout
                    else:
                        visible = earlier_position
                    assert mask[di, dj, gin, gout] == visible, (di, dj, gin, gout)


# ------------------------------------------------------------------------------- shapes


def test_building_block_shapes():
    key = jax.random.key(0)
    h, w = 5, 7
    x = jax.random.normal(key, (2, h, w, 6))
    cond = jnp.ones((2, 3))
    for module, inputs, expected in [
        (MultiplicativeUnit(mask_type='B', num_colors=3), (x, cond), (2, h, w, 6)),
        (ResidualMultiplicativeBlock(channels=3, dilation=2), (x, None), (2, h, w, 6)),
        (ReluResidualBlock(channels=3, mask_type='B', num_colors=3), (x, cond), (2, h, w, 6)),
        (Encoder(ResidualMultiplicativeBlock, channels=4, num_blocks=2,
                 dilations=(1, 2)), (x[..., :3], cond), (2, h, w, 8)),
        (Decoder(ReluResidualBlock, channels=3, num_blocks=1, top_channels=6,
                 num_colors=3), (x[..., :3], x, cond), (2, h, w, 3, 256)),
        (Decoder(ResidualMultiplicativeBlock,
                 channels=3,
                 num_blocks=1,
                 top_channels=6,
                 num_colors=1,
                 output='sigmoid',
                 masked=False), (None, x, None), (2, h, w, 1)),
    ]:
        out, _ = jax.jit(module.init_with_output)(key, *inputs)
        chex.assert_shape(out, expected)
        chex.assert_type(out, jnp.float32)
        chex.assert_tree_all_finite(out)

    lstm = ConvLSTM(5)
    xs = jax.random.normal(key, (2, 3, h, w, 4))
    variables = jax.jit(lstm.init)(key, xs)
    final, out = jax.jit(lstm.apply)(variables, xs)
    chex.assert_shape(out, (2, 3, h, w, 5))
    # The scan equals stepping the cell by hand from the zero state, and continuing from a
    # returned carry (as the sampler does) equals one longer scan.
    zeros = jnp.zeros((2, h, w, 5))
    carry = (zeros, zeros)
    for t in range(3):
        carry, ht = lstm.apply(variables, carry, xs[:, t], method=ConvLSTM.step)
        np.testing.assert_allclose(ht, out[:, t], atol=1e-5)
    np.testing.assert_allclose(final[0], carry[0], atol=1e-5)
    first, out_first = lstm.apply(variables, xs[:, :2])
    _, out_rest = lstm.apply(variables, xs[:, 2:], first)
    np.testing.assert_allclose(out_rest, out[:, 2:], atol=1e-5)
    carry = (zeros, zeros)
    # The cell is flax's ConvLSTMCell (same parameter tree, same outputs), on our convolution.
    cell_params = {'params': variables['params']['cell']}
    flax_cell = flax.linen.ConvLSTMCell(5, kernel_size=(3, 3))
    assert (jax.tree_util.tree_structure(cell_params) == jax.tree_util.tree_structure(
        flax_cell.init(key, carry, xs[:, 0])))
    (flax_c, flax_h), _ = flax_cell.apply(cell_params, carry, xs[:, 0])
    (our_c, our_h), _ = lstm.apply(variables, carry, xs[:, 0], method=ConvLSTM.step)
    np.testing.assert_allclose(our_c, flax_c, atol=1e-5)
    np.testing.assert_allclose(our_h, flax_h, atol=1e-5)


@pytest.mark.parametrize('decoder,block,output,colors,cond,shape', [
    ('pixelcnn', 'rmb', 'softmax', 3, True, (2, 3, 4, 4)),
    ('pixelcnn', 'relu', 'sigmoid', 1, False, (1, 2, 6, 5)),
    ('baseline', 'rmb', 'softmax', 1, True, (2, 2, 3, 4)),
])
def test_vpn_shapes_and_dtypes(decoder, block, output, colors, cond, shape):
    config = make_tiny_config(decoder=decoder,
                              block=block,
                              output=output,
                              num_colors=colors,
                              action_dim=2 if cond else 0,
                              state_dim=3 if cond else 0)
    model = vpn_jax.build_model(config)
    b, t, h, w = shape
    video = random_video(jax.random.key(1), (b, t, h, w, colors))
    actions = jnp.ones((b, t, 2)) if cond else None
    states = jnp.ones((b, 1, 3)) if cond else None
    variables = jax.jit(model.init)(jax.random.key(0), video, actions, states)
    logits = jax.jit(model.apply)(variables, video, actions, states)
    expected = (b, t - 1, h, w, colors) + ((256, ) if output == 'softmax' else ())
    chex.assert_shape(logits, expected)
    chex.assert_type(logits, jnp.float32)
    ll = vpn_jax.log_likelihood(model,
                                variables,
                                video,
                                num_context=1,
                                actions=actions,
                                states=states)
    chex.assert_shape(ll, (b, ))
    chex.assert_type(ll, jnp.float32)
    assert np.all(np.asarray(ll) < 0)


# ------------------------------------------------------------------------------- causality


def perturbed_logits(model, variables, video, actions=None, states=None):
    """Logits of `video` and of one copy per sub-pixel with that sub-pixel changed.

    Returns (order, changed): order[k] = (t, i, j, c) of perturbation k; changed[k] a bool array
    [T-1, H, W, C]: whether the logits of that output sub-pixel moved.
    """
    _, t, h, w, c = video.shape
    order = [(ti, i, j, ci) for ti in range(t) for i in range(h) for j in range(w)
             for ci in range(c)]
    batch = np.repeat(np.asarray(video), len(order) + 1, axis=0)
    for k, (ti, i, j, ci) in enumerate(order):
        batch[k + 1, ti, i, j, ci] = (int(batch[k + 1, ti, i, j, ci]) + 128) % 256
    rep = lambda x: None if x is None else jnp.repeat(x, len(order) + 1, axis=0)
    logits = jax.jit(model.apply)(variables, jnp.asarray(batch), rep(actions), rep(states))
    logits = np.asarray(logits)
    diff = np.abs(logits[1:] - logits[:1])
    if diff.ndim == 6:
        diff = diff.max(-1)
    return order, diff > 1e-5


@pytest.mark.parametrize('colors,output,cond', [(3, 'softmax', False), (1, 'sigmoid', True)])
def test_vpn_is_causal_in_time_space_and_colour(colors, output, cond):
    """Changing sub-pixel (t, i, j, c) changes nothing at or before it in (t, i, j, c) order,
    and does change the sub-pixels that must see it."""
    # Wide enough that every structural dependency shows numerically at a random init.
    config = make_tiny_config(num_colors=colors,
                              output=output,
                              channels=12,
                              top_channels=24,
                              action_dim=2 if cond else 0,
                              state_dim=2 if cond else 0)
    model = vpn_jax.build_model(config)
    t, h, w = 3, 4, 4
    video = random_video(jax.random.key(2), (1, t, h, w, colors))
    actions = jax.random.normal(jax.random.key(3), (1, t, 2)) if cond else None
    states = jax.random.normal(jax.random.key(4), (1, 2, 2)) if cond else None
    variables = model.init(jax.random.key(0), video, actions, states)
    order, changed = perturbed_logits(model, variables, video, actions, states)
    for k, (tp, i, j, c) in enumerate(order):
        for to in range(1, t):
            for io in range(h):
                for jo in range(w):
                    for co in range(colors):
                        if (to, io, jo, co) <= (tp, i, j, c):
                            assert not changed[k, to - 1, io, jo, co], (
                                f'output {(to, io, jo, co)} depends on input {(tp, i, j, c)}')
        if tp == 0:
            assert changed[k, 0].any(), 'frame 1 must see frame 0'
            continue
        if c + 1 < colors:
            assert changed[k, tp - 1, i, j, c + 1], 'next colour must see this one'
        if j + 1 < w:
            assert changed[k, tp - 1, i, j + 1, 0], 'next pixel must see this one'
        if i + 1 < h:
            assert changed[k, tp - 1, i + 1, j, 0], 'pixel below must see this one'
        if tp + 1 < t:
            assert changed[k, tp, i, j].all(), 'the same pixel of frame t+1 must see frame t'


def test_baseline_does_not_see_the_frame_it_predicts():
    config = make_tiny_config(decoder='baseline', num_colors=3)
    model = vpn_jax.build_model(config)
    video = random_video(jax.random.key(5), (1, 3, 3, 3, 3))
    variables = model.init(jax.random.key(0), video)
    order, changed = perturbed_logits(model, variables, video)
    for k, (tp, *_) in enumerate(order):
        assert not changed[k, :tp].any(), f'frames <= {tp} depend on frame {tp}'
        if tp + 1 < 3:
            assert changed[k, tp].all(), 'frame t+1 must see frame t'


def test_conditioning_reaches_frame_t_and_nothing_earlier():
    config = make_tiny_config(num_colors=1, action_dim=2, state_dim=2)
    model = vpn_jax.build_model(config)
    video = random_video(jax.random.key(6), (1, 4, 3, 3, 1))
    actions = jax.random.normal(jax.random.key(7), (1, 4, 2))
    states = jax.random.normal(jax.random.key(8), (1, 2, 2))
    variables = model.init(jax.random.key(0), video, actions, states)
    apply = jax.jit(model.apply)
    base = apply(variables, video, actions, states)
    for t in range(1, 4):
        moved = apply(variables, video, actions.at[:, t].add(1.0), states)
        delta = np.abs(np.asarray(moved - base)).reshape(3, -1).max(-1)
        assert np.all(delta[:t - 1] == 0) and np.all(delta[t - 1:] > 1e-5), (t, delta)
    moved = apply(variables, video, actions, states.at[:, 1].add(1.0))
    delta = np.abs(np.asarray(moved - base)).reshape(3, -1).max(-1)
    assert np.all(delta > 1e-5), delta  # s_1 conditions frame 1's decoder and later frames.


def test_retired_config_fields_are_accepted_and_ignored():
    """Configs saved before a compute-only field was retired (e.g. `image_chunk`) still build."""
    old = make_tiny_config(image_chunk=3)
    assert vpn_jax.build_model(old) == vpn_jax.build_model(make_tiny_config())
    with pytest.raises(ValueError, match='Unknown model config fields'):
        vpn_jax.build_model(make_tiny_config(no_such_field=1))


# ------------------------------------------------------------------------------- remat


def _saved_bytes(fn, *args):
    """Bytes autodiff keeps from fn's forward pass for its backward pass (traced, not run):
    the arrays held by the VJP function."""
    vjp_fn = jax.eval_shape(lambda *a: jax.vjp(fn, *a)[1], *args)
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(vjp_fn))


@pytest.mark.parametrize('block', ['rmb', 'relu'])
def test_remat_policies_give_equal_gradients_and_keep_less(block):
    """Every policy computes the same gradients; 'convs' keeps less than 'none', 'blocks' less
    still (so each policy does rematerialise)."""
    video = random_video(jax.random.key(12), (2, 3, 6, 6, 3))
    actions = jax.random.normal(jax.random.key(13), (2, 3, 2))
    config = lambda remat: make_tiny_config(block=block, action_dim=2, remat=remat)
    variables = vpn_jax.build_model(config('none')).init(jax.random.key(0), video, actions)
    grads, saved = {}, {}
    for remat in vpn_jax.model.encoder.REMAT_POLICIES:
        model = vpn_jax.build_model(config(remat))
        loss = lambda p: -vpn_jax.log_likelihood(
            model, {
                'params': p
            }, video, num_context=1, actions=actions).mean()
        grads[remat] = jax.jit(jax.grad(loss))(variables['params'])
        saved[remat] = _saved_bytes(loss, variables['params'])
    for remat in ('blocks', 'convs'):
        chex.assert_trees_all_close(grads[remat], grads['none'], rtol=1e-5, atol=1e-7)
    assert saved['none'] > saved['convs'] > saved['blocks'], saved


def test_remat_accepts_old_bools_and_refuses_unknown_names():
    """Configs saved when `remat` was a bool still build: True is 'blocks', False 'none'."""
    assert vpn_jax.build_model(make_tiny_config(remat=True)).remat == 'blocks'
    assert vpn_jax.build_model(make_tiny_config(remat=False)).remat == 'none'
    assert vpn_jax.build_model(make_tiny_config()).remat == 'none'
    with pytest.raises(ValueError, match=r"remat must be one of \['none', 'blocks', 'convs'\]"):
        vpn_jax.build_model(make_tiny_config(remat='everything'))


# ------------------------------------------------------------------------------- normalisation


def test_softmax_probabilities_of_all_continuations_sum_to_one():
    """A 1x2 grayscale frame has 256^2 continuations; their probabilities sum to 1."""
    config = make_tiny_config(num_colors=1, channels=4, lstm_channels=4, top_channels=4)
    model = vpn_jax.build_model(config)
    first = random_video(jax.random.key(9), (1, 1, 1, 2, 1))
    values = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing='ij'), -1)
    second = jnp.asarray(values.reshape(-1, 1, 1, 2, 1), jnp.uint8)
    video = jnp.concatenate([jnp.repeat(first, second.shape[0], 0), second], axis=1)
    variables = model.init(jax.random.key(0), video[:1])
    ll = jax.jit(lambda v: vpn_jax.log_likelihood(model, variables, v, num_context=1))(video)
    total = jax.scipy.special.logsumexp(ll)
    np.testing.assert_allclose(total, 0.0, atol=1e-4)
    assert float(ll.max() - ll.min()) > 0.1  # and the distribution is not uniform.


def test_sigmoid_probabilities_of_all_binary_continuations_sum_to_one():
    config = make_tiny_config(num_colors=1,
                              output='sigmoid',
                              channels=4,
                              lstm_channels=4,
                              top_channels=4)
    model = vpn_jax.build_model(config)
    bits = (np.arange(16)[:, None] >> np.arange(4)) & 1
    second = jnp.asarray(255 * bits.reshape(16, 1, 2, 2, 1), jnp.uint8)
    first = random_video(jax.random.key(10), (1, 1, 2, 2, 1))
    video = jnp.concatenate([jnp.repeat(first, 16, 0), second], axis=1)
    variables = model.init(jax.random.key(0), video[:1])
    ll = vpn_jax.log_likelihood(model, variables, video, num_context=1)
    np.testing.assert_allclose(jax.scipy.special.logsumexp(ll), 0.0, atol=1e-5)


def test_log_likelihood_counts_only_predicted_frames():
    config = make_tiny_config(num_colors=1)
    model = vpn_jax.build_model(config)
    video = random_video(jax.random.key(11), (2, 4, 3, 3, 1))
    variables = model.init(jax.random.key(0), video)
    logits = jax.jit(model.apply)(variables, video)
    per_frame = vpn_jax.frame_log_likelihoods(logits, video[:, 1:], 'softmax')
    by_hand = jax.nn.log_softmax(logits)
    by_hand = jnp.take_along_axis(by_hand, video[:, 1:, ..., None].astype(jnp.int32), -1)
    np.testing.assert_allclose(per_frame, by_hand.reshape(2, 3, -1).sum(-1), rtol=1e-5)
    for context in (1, 2, 3):
        ll = vpn_jax.log_likelihood(model, variables, video, num_context=context)
        np.testing.assert_allclose(ll, per_frame[:, context - 1:].sum(1), rtol=1e-5)
    with pytest.raises(ValueError, match='num_context'):
        vpn_jax.log_likelihood(model, variables, video, num_context=4)


# ------------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_value_errors_that_say_what_to_pass():
    model = vpn_jax.build_model(make_tiny_config(num_colors=3, action_dim=2, state_dim=2))
    video = jnp.zeros((1, 3, 4, 4, 3), jnp.uint8)
    actions, states = jnp.zeros((1, 3, 2)), jnp.zeros((1, 2, 2))
    variables = model.init(jax.random.key(0), video, actions, states)
    cases = [
        ((video.astype(jnp.float32), actions, states), 'dtype uint8'),
        ((video[0], actions, states), r'uint8\[B, T, H, W, C\]'),
        ((video[..., :1], actions, states), 'num_colors=3'),
        ((video[:, :1], actions[:, :1], states[:, :1]), 'at least 2 frames'),
        ((video, None, states), r'actions must be float\[1, 3, 2\]'),
        ((video, actions[..., :1], states), r'actions must be float\[1, 3, 2\]'),
        ((video, actions, jnp.zeros((1, 4, 2))), 'states must be'),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            model.apply(variables, *args)
    plain = vpn_jax.build_model(make_tiny_config())
    with pytest.raises(ValueError, match='action_dim=0'):
        plain.init(jax.random.key(0), video, actions)


@pytest.mark.parametrize('field,value,message', [
    ('decoder', 'unet', 'pixelcnn'),
    ('block', 'gated', 'rmb'),
    ('num_colors', 2, 'num_colors'),
    ('output', 'logistic', 'softmax'),
    ('encoder_dilations', (1, 2, 4), 'one positive rate per encoder block'),
])
def test_bad_configs_raise(field, value, message):
    with pytest.raises(ValueError, match=message):
        vpn_jax.build_model(make_tiny_config(**{field: value}))
    with pytest.raises(ValueError, match='sigmoid'):
        vpn_jax.build_model(make_tiny_config(output='sigmoid', num_colors=3))


# ------------------------------------------------------------------------------- paper configs

# Parameter counts at 64x64 (masked-out kernel entries included), as reported in WORKSPACE.md.
PAPER_PARAMS = {
    ('moving_mnist', 'vpn_rmb_dilation'): 29_931_777,
    ('moving_mnist', 'vpn_relu'): 13_540_097,
    ('moving_mnist', 'baseline'): 29_918_977,
    ('robotic_pushing', 'vpn_rmb'): 31_670_784,
    ('robotic_pushing', 'vpn_relu_dilation'): 15_194_624,
}


@pytest.mark.parametrize('experiment', ['moving_mnist', 'robotic_pushing'])
def test_every_variant_builds_at_paper_size(experiment):
    path = os.path.join(REPO, 'experiments', f'{experiment}.py')
    for variant in ('vpn_rmb_dilation', 'vpn_rmb', 'vpn_relu_dilation', 'vpn_relu', 'baseline',
                    'cpu'):
        config = load_config(f'{path}:{variant}')
        model = vpn_jax.build_model(config.model)
        shapes = jax.eval_shape(
            lambda: vpn_jax.init_variables(model, jax.random.key(0), height=64, width=64))
        count = vpn_jax.count_params(shapes)
        if (experiment, variant) in PAPER_PARAMS:
            assert count == PAPER_PARAMS[(experiment, variant)], (variant, count)
        if variant != 'cpu':
            assert config.model.channels == 128 and config.model.lstm_channels == 256
            assert config.model.top_channels == (768 if experiment == 'moving_mnist' else 1536)
            relu = config.model.block == 'relu'
            assert config.model.encoder_blocks == (16 if relu else 8)
            assert config.model.decoder_blocks == (24 if relu else 12)
    with pytest.raises(ValueError, match='Unknown variant'):
        load_config(f'{path}:vpn_huge')
