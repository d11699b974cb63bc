"""Training-only options, off in the paper's variants: the decoder's view of a frame withheld,
binary input frames, and starting from another run's parameters (all or its context path). Each leaves the scored
likelihood the paper's and the train step a pure function of (state, batch)."""

import jax
import numpy as np
import pytest

from train_helpers import (
    compilation_cache,  # pylint: disable=unused-import
    tiny_experiment)
from vpn_jax.data import input_pipeline
from vpn_jax.model.likelihood import (frame_log_likelihoods, log_likelihood,
                                      predicted_log_likelihood, withheld_decoder_inputs)
from vpn_jax.training import train


def test_withheld_frames_are_decoded_blind_but_scored_on_the_truth(sigmoid_model):
    module, variables, video = sigmoid_model
    withheld = np.array([[False, True]] * 3)  # The last frame: no later frame encodes it.
    black = np.asarray(withheld_decoder_inputs(video[:, 2:], withheld))
    assert not black[:, 1].any() and np.array_equal(black[:, 0], video[:, 2])

    def ll(v, w):
        return np.asarray(
            module.apply(variables, v, None, None, 2, w, method=predicted_log_likelihood))

    none = np.zeros_like(withheld)
    np.testing.assert_allclose(ll(video, none),
                               log_likelihood(module, variables, video, num_context=2),
                               rtol=1e-6)
    # Changing a withheld frame's pixels changes only its score (targets), never its logits: the
    # likelihood moves exactly as the cross-entropy of fixed logits would.
    changed = video.copy()
    changed[:, 3] = 255 - changed[:, 3]
    logits = np.asarray(module.apply(variables, np.concatenate([video[:, :2], black], 1)))[:, 2:]
    delta = (frame_log_likelihoods(logits, changed[:, 3:], 'sigmoid') -
             frame_log_likelihoods(logits, video[:, 3:], 'sigmoid'))[:, 0]
    np.testing.assert_allclose(ll(changed, withheld) - ll(video, withheld),
                               delta,
                               rtol=1e-4,
                               atol=1e-3)
    assert not np.allclose(ll(video, withheld), ll(video, none))


def test_withholding_schedule_moves_linearly_then_stays():
    config = tiny_experiment('moving_mnist', steps=1, size=8)
    t = config.train
    assert train.withhold_schedule(config) is None  # The paper: no frame is withheld.
    t.withhold_frames_end = 0.1
    assert train.withhold_schedule(config) is None  # An end without decay steps is never reached.
    t.withhold_frames = 0.5
    probability = lambda step: float(train.withhold_schedule(config)(step))
    assert probability(10_000) == 0.5  # withhold_decay_steps = 0: constant.
    t.withhold_decay_steps = 100
    np.testing.assert_allclose([probability(s) for s in (0, 25, 100, 10_000)], [0.5, 0.4, 0.1, 0.1],
                               rtol=1e-6)
    t.withhold_frames = 0.0  # Upwards from the paper's 0.
    np.testing.assert_allclose(probability(50), 0.05, rtol=1e-6)


def test_binary_inputs_are_read_but_grey_frames_are_scored(sigmoid_model):
    module, variables, video = sigmoid_model
    binary = np.where(video > 100, 255, 0).astype(np.uint8)

    def ll(inputs):
        return np.asarray(
            module.apply(variables,
                         video,
                         None,
                         None,
                         2,
                         None,
                         inputs,
                         method=predicted_log_likelihood))

    np.testing.assert_allclose(ll(video),
                               log_likelihood(module, variables, video, num_context=2),
                               rtol=1e-6)
    logits = np.asarray(module.apply(variables, binary))[:, 1:]  # Frames 2, 3 read as binary.
    expected = frame_log_likelihoods(logits, video[:, 2:], 'sigmoid').sum(1)
    np.testing.assert_allclose(ll(binary), expected, rtol=1e-5)


def test_binarize_reads_chosen_frames_as_bernoulli_pixels_and_keeps_the_others():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (64, 8, 4, 4, 1)).astype(np.uint8)
    key = jax.random.key(3)
    every = np.asarray(train.binarize(key, video, 1.0))
    assert set(np.unique(every)) <= {0, 255}
    # P(255) = x / 255: over all pixels the binary mean matches the grey one.
    np.testing.assert_allclose(every.mean(), video.mean(), rtol=0.02)
    mixed = np.asarray(train.binarize(key, video, 0.5))
    binary = (mixed == every).all(axis=(2, 3, 4))
    grey = (mixed == video).all(axis=(2, 3, 4))
    assert (binary | grey).all()  # Whole frames: each is the binary draw or the grey original.
    assert 0.4 < binary.mean() < 0.6 and 0.4 < grey.mean() < 0.6
    np.testing.assert_array_equal(train.binarize(key, video, 0.0), video)


def test_train_step_options_are_reproducible_and_checked(tmp_path):
    config = tiny_experiment('moving_mnist', steps=1, size=8)
    module = train.build_module(config)
    mesh = train.make_mesh(jax.devices()[:1])
    batch = train.shard_batch(
        input_pipeline.train_batch(config, input_pipeline.train_source(config), 0), mesh)
    losses = {}
    for name, withhold, binarize in (('withhold', 0.5, False), ('again', 0.5, False),
                                     ('binarize', 0.0, True), ('both', 0.5, True), ('paper', 0.0,
                                                                                    False)):
        config.train.withhold_frames, config.train.binarize_frames = withhold, float(binarize)
        state = train.replicate(train.create_train_state(config, module, jax.random.key(0)), mesh)
        step = train.make_train_step(config, module, mesh)
        losses[name] = float(step(state, batch)[1]['loss'])
    # Drawn from (seed, step): the same step twice gives the same loss; each option changes it.
    assert losses['withhold'] == losses['again']
    assert len({losses[k] for k in ('withhold', 'binarize', 'both', 'paper')}) == 4, losses
    config.train.binarize_frames = 0.0
    config.train.withhold_frames = 1.0
    with pytest.raises(ValueError, match='withhold_frames'):
        train.train_and_evaluate(config, str(tmp_path / 'b'))
    config.train.withhold_frames, config.train.withhold_decay_steps = 0.5, -1
    with pytest.raises(ValueError, match='withhold_decay_steps'):
        train.train_and_evaluate(config, str(tmp_path / 'b'))
    config.train.withhold_decay_steps, config.train.binarize_frames = 0, 1.5
    with pytest.raises(ValueError, match='binarize_frames'):
        train.train_and_evaluate(config, str(tmp_path / 'b'))
    assert not (tmp_path / 'b').exists()


def test_init_from_and_init_context_from_start_at_a_runs_parameters_and_refuse_other_shapes(
        tmp_path):
    config = tiny_experiment('moving_mnist', steps=1, size=8)
    train.train_and_evaluate(config, str(tmp_path / 'first'))
    first = jax.device_get(train.ckpt.load_checkpoint(str(tmp_path / 'first'))[1]['params'])
    config.train.init_from = str(tmp_path / 'first') + '@1'  # WORKDIR@STEP, or WORKDIR: newest.
    config.train.learning_rate = 1e-12  # One step barely moves them.
    train.train_and_evaluate(config, str(tmp_path / 'second'))
    second = jax.device_get(train.ckpt.load_checkpoint(str(tmp_path / 'second'))[1]['params'])
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), first, second)
    # The export counts the warm start's training: 1 step of 'first', then 1 of 'second'.
    from vpn_jax import pretrained
    directory = pretrained.export(str(tmp_path / 'second'), 'tiny', weights_dir=str(tmp_path))
    training = pretrained.info('tiny', weights_dir=str(tmp_path))['training']
    assert [(s['run'], s['step']) for s in training['stages']] == [('first', 1), ('second', 1)]
    assert training['step'] == 2 and training['sequences_seen'] == 2 * config.train.batch_size
    assert training['stages'][1]['train']['learning_rate'] == 1e-12
    assert training['train_seconds'] == pytest.approx(sum(s['train_seconds']
                                                          for s in training['stages']),
                                                      abs=0.2)
    assert directory == str(tmp_path / 'tiny')
    fresh = jax.device_get(
        train.create_train_state(config, train.build_module(config), jax.random.key(0)).params)
    assert not np.allclose(fresh['frame_decoder']['context']['kernel'],
                           second['frame_decoder']['context']['kernel'])
    # init_context_from: the donor's encoder and ConvLSTM, the start's decoder (here a fresh one).
    config.train.init_from, config.train.init_context_from = '', str(tmp_path / 'first')
    train.train_and_evaluate(config, str(tmp_path / 'context'))
    staged = jax.device_get(train.ckpt.load_checkpoint(str(tmp_path / 'context'))[1]['params'])
    fresh = jax.device_get(
        train.create_train_state(config, train.build_module(config),
                                 jax.random.key(config.train.seed)).params)
    for name, source in (('encoder', first), ('lstm', first), ('frame_decoder', fresh)):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                               source[name], staged[name])
    # A baseline's context path has the VPN's shapes, so a trained baseline can give it.
    baseline = config.model.copy_and_resolve_references()
    baseline.decoder = 'baseline'
    shapes = lambda model: jax.tree_util.tree_map(
        lambda x: x.shape,
        jax.eval_shape(lambda: train.build_model(model).init(jax.random.key(
            0), np.zeros((1, 2, 8, 8, 1), np.uint8)))['params'])
    vpn_shapes, baseline_shapes = shapes(config.model), shapes(baseline)
    assert all(vpn_shapes[n] == baseline_shapes[n] for n in train.CONTEXT_PATH)
    config.model.lstm_channels += 1
    with pytest.raises(ValueError, match="no 'lstm' of the shapes"):
        train.train_and_evaluate(config, str(tmp_path / 'other_lstm'))
    config.model.lstm_channels -= 1
    config.train.init_context_from = ''
    config.train.init_from = str(tmp_path / 'first')
    config.model.channels = 9
    with pytest.raises(ValueError, match='other parameter shapes'):
        train.train_and_evaluate(config, str(tmp_path / 'third'))
    config.train.init_from = 'no_such_model'
    with pytest.raises(ValueError, match='neither a training workdir .* nor a shipped model'):
        train.train_and_evaluate(config, str(tmp_path / 'fourth'))
    config.train.init_from = str(tmp_path / 'first') + '@last'
    with pytest.raises(ValueError, match='WORKDIR@STEP needs .* a step number'):
        train.train_and_evaluate(config, str(tmp_path / 'fourth'))
    config.train.init_from, config.train.init_context_from = '', 'no_such_model'
    with pytest.raises(ValueError, match='init_context_from.*neither'):
        train.train_and_evaluate(config, str(tmp_path / 'fifth'))
    assert not (tmp_path / 'fourth').exists() and not (tmp_path / 'fifth').exists()
