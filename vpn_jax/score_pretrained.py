r"""Scores a shipped model on the test split and records the figures in its model.json.

    python -m vpn_jax.score_pretrained --name=moving_mnist_cpu              # whole test split
    python -m vpn_jax.score_pretrained --name=moving_mnist_cpu --test_sequences=64 --norecord
    python -m vpn_jax.score_pretrained --name=moving_mnist_cpu --viewer_only   # minutes

Figures (Moving MNIST, the 'generated' test split of `moving_mnist_vpn` unless the config says
otherwise):

* `test_nll`: nats/frame over the first `--test_sequences` sequences (0: all 10,000), frames
  10..19 given 0..9, as in the paper's Table 1;
* `first64`: on the first 64 sequences, the NLL and the intersection-over-union of the lit pixels
  (> 127) of temperature-0 continuations with the truth, for the first predicted frame and
  pooled over the first three (`continuation_iou`), and the same IoU of frame 10's per-sub-pixel
  mode under teacher forcing (`teacher_forced_iou`: what the model knows given the true pixels);
* `viewer`: what a viewer sees (`vpn_jax.video_metrics.viewer_metrics`) on the first
  `--viewer_sequences` (64) sequences: the context gain (sequence i's frames 10..19 after
  sequence i+1's frames 0..9), and for `--viewer_samples` (4) samples per sequence at
  temperature 1 (seed 0), per generated frame the lit-pixel mass ratio, the best-of-4 and mean
  IoU of lit pixels, and the best-of-4 SSIM and PSNR;
* `first4`: the NLL and first-frame IoU of the first 4 sequences: what
  `tests/test_pretrained.py` checks the shipped weights still reproduce.
"""

import time
from typing import Any, Dict, Optional

import jax
import ml_collections
import numpy as np

from vpn_jax.video_metrics import lit_iou, viewer_metrics


def continuation_iou(module,
                     variables,
                     video: np.ndarray,
                     *,
                     num_context: int,
                     num_frames: int,
                     seed: int = 0) -> np.ndarray:
    """IoU of the lit pixels of temperature-0 continuations with the truth, per predicted frame.

    video: uint8[B, T, H, W, C] with T >= num_context + num_frames. Returns float64[num_frames]:
    entry k pools frame num_context + k over the B videos.
    """
    from vpn_jax.sampling import sample
    video = np.asarray(video)
    samples = np.asarray(
        sample(module,
               variables,
               video[:, :num_context],
               num_frames=num_frames,
               rng=jax.random.key(seed),
               temperature=0.0))
    return np.array([
        lit_iou(samples[:, num_context + k], video[:, num_context + k]) for k in range(num_frames)
    ])


def teacher_forced_iou(module, variables, video: np.ndarray, *, num_context: int) -> float:
    """IoU with the truth of the lit pixels of frame `num_context`'s per-sub-pixel mode given the
    true frames before it and the true sub-pixels before each one (teacher forcing).

    Set beside `continuation_iou`, it separates what the model knows from what greedy decoding
    makes of it. video: uint8[B, T, H, W, C] with T > num_context.
    """
    video = np.asarray(video)[:, :num_context + 1]
    logits = jax.jit(module.apply)(variables, video)[:, num_context - 1]
    if module.output == 'sigmoid':
        mode = np.where(np.asarray(logits) > 0, 255, 0)
    else:
        mode = np.argmax(np.asarray(logits), axis=-1)
    return lit_iou(mode, video[:, num_context])


def test_nll(module,
             variables,
             config: ml_collections.ConfigDict,
             num_sequences: int,
             *,
             progress: bool = True) -> Dict[str, Any]:
    """Mean NLL (paper's units) of the first `num_sequences` test sequences (0: all)."""
    from vpn_jax.data import input_pipeline
    from vpn_jax.training import train
    config = ml_collections.ConfigDict(config.to_dict())
    if num_sequences and num_sequences < config.eval.batch_size:
        config.eval.batch_size = num_sequences
    max_batches = -(-num_sequences // config.eval.batch_size) if num_sequences else 0
    mesh = train.make_mesh()
    source = input_pipeline.eval_source(config, 'test')
    result = train.evaluate_source(config,
                                   module,
                                   train.replicate(variables['params'], mesh),
                                   source,
                                   mesh,
                                   max_batches=max_batches,
                                   desc='test',
                                   progress=progress)
    if num_sequences and result['num_sequences'] != num_sequences:
        raise ValueError(f'Asked for {num_sequences} sequences, scored {result["num_sequences"]}; '
                         f'use a multiple of eval.batch_size={config.eval.batch_size}.')
    return result


def first_sequences(config: ml_collections.ConfigDict, count: int) -> np.ndarray:
    """uint8[count, T, H, W, C]: the first `count` test sequences."""
    from vpn_jax.data.input_pipeline import evaluation_sequences
    return evaluation_sequences(config, 'test', count)['video']


def score(name: str,
          *,
          weights_dir: Optional[str] = None,
          test_sequences: int = 0,
          iou_frames: int = 3,
          viewer_sequences: int = 64,
          viewer_samples: int = 4) -> Dict[str, Any]:
    """All figures of the module docstring for shipped model `name`."""
    from vpn_jax.pretrained import load_pretrained
    module, variables, config = load_pretrained(name, weights_dir=weights_dir)
    nc = int(config.data.num_context)
    results: Dict[str, Any] = {
        'test_split': '/'.join((config.data.test_dataset, config.data.test_split))
    }
    start = time.time()
    full = test_nll(module, variables, config, test_sequences)
    results['test_nll'] = full['nll']
    results['test_sequences'] = full['num_sequences']
    results['test_seconds'] = round(time.time() - start, 1)
    for key, count in (('first64', 64), ('first4', 4)):
        video = first_sequences(config, count)
        nll = test_nll(module, variables, config, count, progress=False)['nll']
        iou = continuation_iou(module,
                               variables,
                               video,
                               num_context=nc,
                               num_frames=iou_frames if key == 'first64' else 1)
        results[key] = {'nll': nll, 'iou_frame1': float(iou[0])}
        if key == 'first64':
            results[key]['teacher_forced_iou_frame1'] = teacher_forced_iou(module,
                                                                           variables,
                                                                           video,
                                                                           num_context=nc)
            results[key]['iou_per_frame'] = [float(x) for x in iou]
            results[key]['iou_frames1to3'] = float(np.mean(iou[:3]))
    if viewer_sequences:
        results['viewer'] = viewer_figures(module, variables, config, viewer_sequences,
                                           viewer_samples)
    results['units'] = full['units']
    return results


def viewer_figures(module, variables, config: ml_collections.ConfigDict, sequences: int,
                   samples: int) -> Dict[str, Any]:
    """`viewer_metrics` of the first `sequences` test sequences, `samples` each at temperature 1
    with seed 0: `score`'s 'viewer' entry."""
    return viewer_metrics(module,
                          variables,
                          first_sequences(config, sequences),
                          num_context=int(config.data.num_context),
                          num_samples=samples,
                          rng=jax.random.key(0))


def main(argv):
    del argv
    from absl import flags
    from vpn_jax import console, pretrained
    fv = flags.FLAGS
    console.quiet_unless_asked()
    if fv.viewer_only:
        model = pretrained.load_pretrained(fv.name, weights_dir=fv.weights_dir)
        results = {'viewer': viewer_figures(*model, fv.viewer_sequences, fv.viewer_samples)}
    else:
        results = score(fv.name,
                        weights_dir=fv.weights_dir,
                        test_sequences=fv.test_sequences,
                        viewer_sequences=fv.viewer_sequences,
                        viewer_samples=fv.viewer_samples)
    for key, value in results.items():
        print(f'{key}: {value}')
    if fv.record:
        record = pretrained.info(fv.name, weights_dir=fv.weights_dir)
        record['results'] = dict(record.get('results', {}), **results) if fv.viewer_only \
            else results
        directory = pretrained.model_dir(fv.name, fv.weights_dir)
        pretrained.write_info(directory, record)
        print(f'recorded in {directory}/{pretrained.INFO_FILE}')


if __name__ == '__main__':
    from absl import app, flags
    flags.DEFINE_string('name', None, 'Shipped model, e.g. moving_mnist_cpu.')
    flags.DEFINE_string('weights_dir', None, 'Folder of exported models (default: the package).')
    flags.DEFINE_integer('test_sequences', 0, 'Test sequences for test_nll (0: the whole split).')
    flags.DEFINE_integer('viewer_sequences', 64, 'Test sequences for the viewer figures (0: none).')
    flags.DEFINE_integer('viewer_samples', 4, 'Samples per sequence for the viewer figures.')
    flags.DEFINE_bool('viewer_only', False, 'Only the viewer figures (added to model.json).')
    flags.DEFINE_bool('record', True, 'Write the figures into the model\'s model.json.')
    flags.mark_flags_as_required(['name'])
    app.run(main)
