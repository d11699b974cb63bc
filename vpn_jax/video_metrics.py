"""What a viewer sees: whether a model uses the video's past, and how its samples compare.

The exact likelihood (`vpn_jax.log_likelihood`) says how well a model compresses video; it barely
says whether it predicts motion, because a strong PixelCNN decoder can score well from the pixels
above and to the left alone. These figures say what the samples look like:

* `context_gain`: the NLL of the predicted frames given **another** sequence's context frames,
  minus their NLL given their own (nats/frame or nats/dim). Near 0: the model ignores the past.
* `sample_metrics`, for K samples per context: per generated frame, the lit-pixel mass ratio
  (sample / truth: below 1 the digits fade, above 1 they smear), the best-of-K and mean
  intersection-over-union of lit pixels with the truth, and the best-of-K SSIM and PSNR
  (`dm_pix`), as stochastic video prediction papers report them (SVG, SAVP: best of 100).

A pixel is lit when its uint8 value exceeds `LIT` (127). `viewer_metrics` runs both on a batch of
evaluation sequences; `summarize` reduces its per-frame figures to the scalars that training logs.
"""

import functools
from typing import Any, Dict, Mapping, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

LIT = 127


def lit_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """|lit(p) & lit(t)| / |lit(p) | lit(t)| pooled over all pixels; 1.0 when both are dark.

    predicted, truth: uint8 arrays of the same shape.
    """
    p, t = np.asarray(predicted) > LIT, np.asarray(truth) > LIT
    if p.shape != t.shape:
        raise ValueError(f'predicted {p.shape} and truth {t.shape} must have the same shape.')
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def swap_contexts(video: np.ndarray, num_context: int, shift: int = 1) -> np.ndarray:
    """Sequence i's predicted frames after sequence (i + shift) mod B's context frames.

    video: uint8[B, T, H, W, C] with B >= 2. The fixed pairing makes the figure reproducible.
    """
    video = np.asarray(video)
    if video.ndim != 5 or video.shape[0] < 2:
        raise ValueError(f'context_gain needs video uint8[B, T, H, W, C] with B >= 2 sequences to '
                         f'pair; got shape {video.shape}.')
    if shift % video.shape[0] == 0:
        raise ValueError(f'shift={shift} pairs each sequence with itself in a batch of '
                         f'{video.shape[0]}; use a shift that is not a multiple of the batch.')
    context = np.roll(video[:, :num_context], -shift, axis=0)
    return np.concatenate([context, video[:, num_context:]], axis=1)


def context_gain(module,
                 variables,
                 video: np.ndarray,
                 *,
                 num_context: int,
                 shift: int = 1,
                 actions: Optional[np.ndarray] = None,
                 states: Optional[np.ndarray] = None) -> Dict[str, float]:
    """How much the model's prediction of frames num_context.. depends on the frames before.

    video: uint8[B, T, H, W, C], B >= 2; sequence i's predicted frames are scored after its own
    context frames and after those of sequence (i + shift) mod B (`swap_contexts`). Actions and
    states, when the model takes them, stay the sequence's own.
    Returns {'own': mean NLL, 'swapped': mean NLL, 'gain': swapped - own} in the paper's units
    (nats/frame for 'sigmoid' models, nats/dim for 'softmax' ones).
    """
    video = np.asarray(video)
    _, t, h, w, c = video.shape
    per = (t - num_context) * (1 if module.output == 'sigmoid' else h * w * c)
    score = lambda v: float(
        jnp.mean(_sequence_nll(module, variables, v, num_context, actions, states))) / per
    own, swapped = score(video), score(swap_contexts(video, num_context, shift))
    return {'own': own, 'swapped': swapped, 'gain': swapped - own}


@functools.partial(jax.jit, static_argnames=('module', 'num_context'))
def _sequence_nll(module, variables, video, num_context, actions, states) -> jax.Array:
    """-log_likelihood, float32[B]; jitted once per (module, shapes), as a validation repeats it."""
    from vpn_jax.model.likelihood import log_likelihood
    return -log_likelihood(
        module, variables, video, num_context=num_context, actions=actions, states=states)


def sample_metrics(samples: np.ndarray, truth: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-frame figures of K samples against the true frames.

    samples: uint8[B, K, F, H, W, C], K samples of each of B sequences' F generated frames;
    truth: uint8[B, F, H, W, C]. Returns float64[F] arrays:
      'mass_ratio': lit pixels of all samples / (K x lit pixels of the truth);
      'iou_best', 'iou_mean': IoU of each sample's lit pixels with the truth's (1 where both are
        dark), best and mean over the K samples, then averaged over the B sequences;
      'ssim_best', 'psnr_best': the best over K of `dm_pix.ssim` and `dm_pix.psnr` on [0, 1]
        intensities, averaged over B (PSNR capped at 100 dB where a sample is exact).
    """
    samples, truth = np.asarray(samples), np.asarray(truth)
    chex.assert_rank(samples, 6)
    if samples.shape[:1] + samples.shape[2:] != truth.shape:
        raise ValueError(f'samples uint8[B, K, F, H, W, C] {samples.shape} and truth '
                         f'uint8[B, F, H, W, C] {truth.shape} disagree: pass the truth of the '
                         'same sequences and frames.')
    for name, x in (('samples', samples), ('truth', truth)):
        if x.dtype != np.uint8:
            raise ValueError(f'{name} must be uint8 pixels; got {x.dtype}.')
    import dm_pix
    lit_s, lit_t = samples > LIT, (truth > LIT)[:, None]
    axes = (3, 4, 5)
    inter = np.logical_and(lit_s, lit_t).sum(axes)
    union = np.logical_or(lit_s, lit_t).sum(axes)
    iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))  # [B, K, F]
    truth_mass = lit_t.sum((0, 1) + axes) * samples.shape[1]
    mass_ratio = lit_s.sum((0, 1) + axes) / np.maximum(truth_mass, 1)
    # dm_pix takes batches of images [N, H, W, C].
    frames = (-1, ) + samples.shape[3:]
    s = jnp.asarray(samples, jnp.float32).reshape(frames) / 255.0
    t = jnp.broadcast_to(jnp.asarray(truth, jnp.float32)[:, None] / 255.0,
                         samples.shape).reshape(frames)
    ssim = np.asarray(dm_pix.ssim(s, t, max_val=1.0)).reshape(iou.shape)  # [B, K, F]
    psnr = np.minimum(np.asarray(dm_pix.psnr(s, t)), 100.0).reshape(iou.shape)
    return {
        'mass_ratio': mass_ratio.astype(np.float64),
        'iou_best': iou.max(1).mean(0),
        'iou_mean': iou.mean((0, 1)),
        'ssim_best': ssim.max(1).mean(0).astype(np.float64),
        'psnr_best': psnr.max(1).mean(0).astype(np.float64),
    }


def viewer_metrics(module,
                   variables,
                   video: np.ndarray,
                   *,
                   num_context: int,
                   num_samples: int,
                   rng: jax.Array,
                   temperature: float = 1.0,
                   actions: Optional[np.ndarray] = None,
                   states: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """`context_gain` and the `sample_metrics` of `num_samples` continuations per sequence.

    video: uint8[B, T, H, W, C] (B >= 2); frames num_context..T-1 are generated from frames
    0..num_context-1 at `temperature` and compared with the truth. Returns {'context_gain',
    'nll', 'nll_swapped' (floats), 'num_sequences', 'num_samples', 'temperature', and the
    per-frame lists of `sample_metrics`}.
    """
    from vpn_jax.sampling import sample
    video = np.asarray(video)
    b, t = video.shape[:2]
    gain = context_gain(module,
                        variables,
                        video,
                        num_context=num_context,
                        actions=actions,
                        states=states)
    generated = np.asarray(
        sample(module,
               variables,
               video[:, :num_context],
               num_frames=t - num_context,
               rng=rng,
               temperature=temperature,
               num_samples=num_samples,
               actions=actions,
               states=None if states is None else states[:, :num_context]))
    generated = generated.reshape((b, num_samples) + generated.shape[1:])[:, :, num_context:]
    per_frame = sample_metrics(generated, video[:, num_context:])
    result: Dict[str, Any] = {
        'context_gain': gain['gain'],
        'nll': gain['own'],
        'nll_swapped': gain['swapped'],
        'num_sequences': int(b),
        'num_samples': int(num_samples),
        'temperature': float(temperature),
    }
    result.update({k: [float(x) for x in v] for k, v in per_frame.items()})
    return result


def summarize(metrics: Mapping[str, Any], prefix: str = '') -> Dict[str, float]:
    """The scalars a learning curve shows, from `viewer_metrics`' result.

    'context_gain'; 'mass_ratio_first' and 'mass_ratio_last' (first and last generated frame);
    'mass_ratio_worst' (the frame furthest from 1 in log ratio); 'iou_best_first' and
    'iou_best_mean' (over the generated frames); 'ssim_best_mean', 'psnr_best_mean'.
    """
    mass = np.asarray(metrics['mass_ratio'])
    worst = mass[np.argmax(np.abs(np.log(np.maximum(mass, 1e-6))))]
    out = {
        'context_gain': metrics['context_gain'],
        'mass_ratio_first': mass[0],
        'mass_ratio_last': mass[-1],
        'mass_ratio_worst': worst,
        'iou_best_first': metrics['iou_best'][0],
        'iou_best_mean': float(np.mean(metrics['iou_best'])),
        'ssim_best_mean': float(np.mean(metrics['ssim_best'])),
        'psnr_best_mean': float(np.mean(metrics['psnr_best'])),
    }
    return {prefix + k: float(v) for k, v in out.items()}
