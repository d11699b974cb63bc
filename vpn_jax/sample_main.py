r"""Samples continuations of a few evaluation sequences from a trained run; writes a grid and GIF.

    python -m vpn_jax.sample_main --workdir=/tmp/mm --num_samples=3 --out=/tmp/mm_samples
    python -m vpn_jax.sample_main --pretrained=moving_mnist_cpu --out=/tmp/vpn_samples

Loads the newest checkpoint of `--workdir` (model and config from the checkpoint itself), or a
shipped model (`--pretrained`, see `vpn_jax.pretrained`), takes
the first `--num_videos` sequences of the evaluation split, gives the model the first
`data.num_context` frames (and, for pushing, all actions and the context states) and samples
`--num_samples` continuations of each. Writes to `--out`:

* `grid.png`: per video, `num_samples` rows of samples then the ground truth (Figures 4-7);
* `samples.gif`: the same, animated (one column per video);
* `samples.npz`: `samples` uint8[V * S, T, H, W, C], `ground_truth` uint8[V, T, H, W, C],
  `num_context`.

At paper size a 64x64 frame takes seconds per batch on a CPU (see benchmarks/sample_speed.py):
20 frames of 4 videos x 3 samples take a few minutes; `--num_frames` generates fewer.
"""

import os
import time

from absl import app
from absl import flags
import jax
import numpy as np

from vpn_jax import console
from vpn_jax.data import input_pipeline
from vpn_jax import sampling
from vpn_jax import visualize

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags; defined only when it runs, so that `vpn_jax.main` can import the
    module (both define --workdir)."""
    flags.DEFINE_string('workdir', None, 'Training run directory (holds checkpoints/).')
    flags.DEFINE_string(
        'pretrained', None, 'A shipped model instead of --workdir, e.g. '
        'moving_mnist_cpu (vpn_jax.pretrained.names()).')
    flags.DEFINE_string('out', None, 'Directory for grid.png, samples.gif, samples.npz.')
    flags.DEFINE_integer('num_samples', 3, 'Continuations per sequence.')
    flags.DEFINE_integer('num_videos', 4, 'Evaluation sequences to continue.')
    flags.DEFINE_enum('split', 'test', ['validation', 'test'], 'Evaluation split.')
    flags.DEFINE_integer('num_frames', 0,
                         'Frames to generate; 0: the rest of each evaluation sequence.')
    flags.DEFINE_float('temperature', 1.0, '>= 0; 0 takes the argmax.')
    flags.DEFINE_integer('seed', 0, 'Sampling seed.')
    flags.DEFINE_integer('step', None, 'Checkpoint step; default the newest.')
    flags.DEFINE_integer('scale', 2, 'Nearest-neighbour upscaling of frames in the images.')
    flags.DEFINE_float('fps', 4.0, 'GIF frames per second.')
    flags.mark_flags_as_required(['out'])


def write_outputs(out: str, samples: np.ndarray, ground_truth: np.ndarray, *, num_context: int,
                  num_samples: int, scale: int, fps: float) -> None:
    """grid.png, samples.gif and samples.npz in `out` (see the module docstring)."""
    os.makedirs(out, exist_ok=True)
    kwargs = dict(num_context=num_context, num_samples=num_samples, scale=scale, border=2)
    visualize.save_png(os.path.join(out, 'grid.png'),
                       visualize.make_grid(samples, ground_truth, **kwargs))
    visualize.save_gif(os.path.join(out, 'samples.gif'),
                       visualize.make_animation(samples, ground_truth, **kwargs),
                       fps=fps)
    np.savez_compressed(os.path.join(out, 'samples.npz'),
                        samples=samples,
                        ground_truth=ground_truth,
                        num_context=num_context)


def write_continuations(module,
                        variables,
                        config,
                        out: str,
                        *,
                        split: str = 'test',
                        num_videos: int = 4,
                        num_samples: int = 3,
                        num_frames: int = 0,
                        temperature: float = 1.0,
                        seed: int = 0,
                        scale: int = 2,
                        fps: float = 4.0) -> str:
    """Samples continuations of the first `num_videos` sequences of `split` and writes
    grid.png, samples.gif and samples.npz into `out`; returns the grid's path.

    num_frames: frames to generate after the context; 0 means all the sequence has.
    """
    check_out_dir(out)  # Before minutes of sampling.
    data = input_pipeline.evaluation_sequences(config, split, num_videos)
    video = data['video']
    num_context = int(config.data.num_context)
    num_frames = num_frames or video.shape[1] - num_context
    total = num_context + num_frames
    if total > video.shape[1]:
        raise ValueError(f'num_frames={num_frames} exceeds the {video.shape[1] - num_context} '
                         'frames after the context in the evaluation sequences.')
    video = video[:, :total]
    actions = data.get('actions')
    states = data.get('states')
    if states is not None:
        states = states[:, :num_context]
    print(
        f'Sampling {len(video)} x {num_samples} continuations of {num_frames} frames of '
        f'{video.shape[2:]} on {jax.devices()[0].device_kind}...',
        flush=True)
    start = time.perf_counter()
    samples = sampling.sample(module,
                              variables,
                              video[:, :num_context],
                              num_frames=num_frames,
                              rng=jax.random.key(seed),
                              actions=None if actions is None else actions[:, :total],
                              states=states,
                              temperature=temperature,
                              num_samples=num_samples)
    samples = np.asarray(jax.device_get(samples))
    print(f'Sampled in {time.perf_counter() - start:.1f} s.', flush=True)
    write_outputs(out,
                  samples,
                  video,
                  num_context=num_context,
                  num_samples=num_samples,
                  scale=scale,
                  fps=fps)
    return os.path.join(out, 'grid.png')


def check_out_dir(out: str) -> None:
    """Raises ValueError unless `out` is a directory or can be created as one (checked before
    sampling, which takes minutes): neither `out` nor its nearest existing ancestor may be a
    file, and that ancestor must be writable."""
    path = os.path.abspath(os.path.expanduser(out))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f'--out={out} is a file; give a directory.')
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f'--out={out} cannot be created: {parent} is a file.')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f'--out={out} cannot be written: {parent} is not writable.')


def main(argv):
    # XLA:CPU's default (concurrency-optimised) scheduler stays on here: unlike the train step,
    # the sampler is faster with it (vpn_jax/xla_cpu/__init__.py).
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    console.quiet_unless_asked()  # Orbax logs dozens of INFO lines per restore.
    if (FLAGS.workdir is None) == (FLAGS.pretrained is None):
        raise app.UsageError('Give exactly one of --workdir (a training run) and --pretrained '
                             '(a shipped model).')
    try:
        check_out_dir(FLAGS.out)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    if FLAGS.pretrained:
        from vpn_jax.pretrained import load_pretrained
        try:
            module, variables, config = load_pretrained(FLAGS.pretrained)
        except ValueError as e:
            raise app.UsageError(str(e)) from e
    else:
        from vpn_jax.training.checkpoint import load_checkpoint
        module, variables, config = load_checkpoint(FLAGS.workdir, FLAGS.step)
    try:
        grid = write_continuations(module,
                                   variables,
                                   config,
                                   FLAGS.out,
                                   split=FLAGS.split,
                                   num_videos=FLAGS.num_videos,
                                   num_samples=FLAGS.num_samples,
                                   num_frames=FLAGS.num_frames,
                                   temperature=FLAGS.temperature,
                                   seed=FLAGS.seed,
                                   scale=FLAGS.scale,
                                   fps=FLAGS.fps)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    print(f'Wrote {grid} and samples.gif, samples.npz.')


if __name__ == '__main__':
    define_flags()
    app.run(main)
