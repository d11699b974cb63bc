"""What a viewer sees (vpn_jax.video_metrics): each figure on cases whose answer is known, the
context gain against the likelihood it is built from, and training's logged view of it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train_helpers import (
    compilation_cache,  # pylint: disable=unused-import
    tiny_experiment)
from vpn_jax import video_metrics as vm
from vpn_jax.model.likelihood import log_likelihood
from vpn_jax.training import metrics as metrics_lib
from vpn_jax.training import train


def test_lit_iou():
    a = np.zeros((2, 4, 4, 1), np.uint8)
    b = a.copy()
    assert vm.lit_iou(a, b) == 1.0  # Both dark.
    a[0, :2] = 255  # 8 lit pixels.
    b[0, 1:3] = 200  # 8 lit, 4 shared.
    assert vm.lit_iou(a, b) == pytest.approx(4 / 12)
    b[0, 1:3] = 127  # Not lit: > 127 counts.
    assert vm.lit_iou(a, b) == 0.0


def test_sample_metrics_on_known_cases():
    truth = np.zeros((2, 3, 8, 8, 1), np.uint8)  # [B, F, H, W, C]
    truth[:, :, 2:4, 2:4] = 255  # 4 lit pixels per frame.
    exact, dark, double = truth.copy(), np.zeros_like(truth), truth.copy()
    double[:, :, 5:7, 5:7] = 255  # 8 lit pixels, the true 4 among them.
    # K = 2 samples per sequence: the exact frames and dark frames.
    out = vm.sample_metrics(np.stack([exact, dark], axis=1), truth)
    np.testing.assert_allclose(out['mass_ratio'], 0.5)
    np.testing.assert_allclose(out['iou_best'], 1.0)
    np.testing.assert_allclose(out['iou_mean'], 0.5)
    np.testing.assert_allclose(out['ssim_best'], 1.0, atol=1e-5)
    np.testing.assert_allclose(out['psnr_best'], 100.0)  # Exact: capped.
    out = vm.sample_metrics(np.stack([double, dark], axis=1), truth)
    np.testing.assert_allclose(out['mass_ratio'], 1.0)  # (8 + 0) / (2 x 4).
    np.testing.assert_allclose(out['iou_best'], 0.5)
    assert np.all(out['ssim_best'] < 1) and np.all(out['psnr_best'] < 100)
    # Only frame 1 of sequence 0 is wrong: the figures are per frame.
    one = exact.copy()
    one[0, 1] = 0
    out = vm.sample_metrics(one[:, None], truth)
    np.testing.assert_allclose(out['iou_best'], [1.0, 0.5, 1.0])
    np.testing.assert_allclose(out['mass_ratio'], [1.0, 0.5, 1.0])
    s = vm.summarize(dict(out, context_gain=3.0), prefix='v/')
    assert s['v/iou_best_first'] == 1.0 and s['v/mass_ratio_worst'] == 0.5
    assert s['v/context_gain'] == 3.0
    with pytest.raises(ValueError, match='same sequences and frames'):
        vm.sample_metrics(np.stack([exact], axis=1), truth[:, :2])
    with pytest.raises(ValueError, match='uint8'):
        vm.sample_metrics(np.stack([exact], axis=1).astype(np.float32), truth)


def test_swap_contexts_pairs_each_sequence_with_the_next():
    video = np.arange(3, dtype=np.uint8)[:, None, None, None, None] * np.ones(
        (3, 4, 2, 2, 1), np.uint8)
    swapped = vm.swap_contexts(video, num_context=2)
    np.testing.assert_array_equal(swapped[:, :2, 0, 0, 0], [[1, 1], [2, 2], [0, 0]])
    np.testing.assert_array_equal(swapped[:, 2:], video[:, 2:])
    with pytest.raises(ValueError, match='B >= 2'):
        vm.swap_contexts(video[:1], num_context=2)
    with pytest.raises(ValueError, match='itself'):
        vm.swap_contexts(video, num_context=2, shift=3)


def test_context_gain_is_the_likelihood_difference_and_zero_without_context(sigmoid_model):
    module, variables, video = sigmoid_model
    gain = vm.context_gain(module, variables, video, num_context=2)
    ll = lambda v: np.asarray(log_likelihood(module, variables, v, num_context=2))
    own, swapped = -ll(video) / 2, -ll(vm.swap_contexts(video, 2)) / 2  # nats/frame.
    assert gain['own'] == pytest.approx(own.mean(), rel=1e-5)
    assert gain['gain'] == pytest.approx(swapped.mean() - own.mean(), rel=1e-4, abs=1e-4)
    assert abs(gain['gain']) > 1e-3  # The random model's contexts do matter.
    # The decoder's only view of the past is its 'context' convolution: zero it, and the past
    # cannot matter.
    blind = jax.tree_util.tree_map(lambda x: x, variables)
    ctx = blind['params']['frame_decoder']['context']
    blind['params']['frame_decoder']['context'] = jax.tree_util.tree_map(jnp.zeros_like, ctx)
    assert vm.context_gain(module, blind, video, num_context=2)['gain'] == pytest.approx(0,
                                                                                         abs=1e-4)


def test_training_logs_what_a_viewer_sees(tmp_path):
    config = tiny_experiment('moving_mnist', steps=2, size=8)
    config.train.eval_every_steps = 2
    config.eval.validation_batches = 1
    config.eval.viewer_sequences = 2
    config.eval.viewer_samples = 2
    summary = train.train_and_evaluate(config, str(tmp_path / 'a'))
    assert summary['step'] == 2
    rows = metrics_lib.read_jsonl(str(tmp_path / 'a'))
    val = [r for r in rows if 'validation/nll' in r]
    assert len(val) == 1
    for key in ('context_gain', 'mass_ratio_first', 'mass_ratio_last', 'iou_best_first',
                'iou_best_mean', 'ssim_best_mean', 'psnr_best_mean'):
        assert np.isfinite(val[0]['validation/' + key]), key
    config.eval.viewer_sequences = 1
    with pytest.raises(ValueError, match='viewer_sequences'):
        train.train_and_evaluate(config, str(tmp_path / 'b'))
    assert not (tmp_path / 'b').exists()
