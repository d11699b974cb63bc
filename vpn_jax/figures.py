r"""The README's figures: learning curves and samples of the shipped Moving MNIST models.

    python -m vpn_jax.figures curves --runs=docs/runs --out=docs/learning_curves.png
    python -m vpn_jax.figures samples --out=docs/moving_mnist_samples

`curves` reads every `<name>.metrics.jsonl` in --runs (a training run's own metrics.jsonl) and
plots validation nats/frame against the step and against core-hours of training (the summed
step times, evaluation excluded, times the cores the run used: `--cores`), and, for runs that
logged them, the context gain, lit-pixel mass ratio and best-of-K IoU of the validation's
samples (`vpn_jax.video_metrics`) against the step.

`samples` continues the first test sequences like the paper's Figure 5: per video the rows are
two VPN samples, one baseline sample and the truth (10 context frames, then 10 generated). It
writes `OUT.png` (the grid) and `OUT.gif` (the same rows, animated). `--models` puts other
models (shipped names, workdirs, WORKDIR@STEP) in the rows, e.g. probes side by side:

    python -m vpn_jax.figures samples --models=W1@900:1,W2@900:1 --split=validation --out=OUT

`chain` writes one metrics.jsonl for a model trained in stages (`train.init_from`), for `curves`:
each stage's rows up to its last step, the steps counted on from the stages before it
(`vpn_jax.training.metrics.chain_stages`):

    python -m vpn_jax.figures chain --stages=W1/metrics.jsonl:6900,W2/metrics.jsonl:300 --out=OUT
"""

import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from vpn_jax.training.metrics import read_metrics, training_seconds

# What the curves panels show beyond the NLL: (metrics key, y label), from the validation's
# `vpn_jax.video_metrics.summarize`.
VIEWER_PANELS = (
    ('context_gain', 'context gain (nats/frame)'),
    ('mass_ratio_last', 'lit-pixel mass ratio, last frame'),
    ('iou_best_first', 'best-of-K lit IoU, first frame'),
    ('iou_best_mean', 'best-of-K lit IoU, mean'),
)


def validation_curve(rows: Sequence[Dict], cores: int = 1) -> Dict[str, np.ndarray]:
    """{'step', 'core_hours', 'nll', and each VIEWER_PANELS key (NaN where a validation did not
    log it)} of the validation evaluations in `rows`; core_hours is `training_seconds` at that
    step times `cores`."""
    seconds = training_seconds(rows)
    val = [r for r in rows if 'validation/nll' in r]
    curve = {
        'step': np.array([r['step'] for r in val]),
        'core_hours': np.array([seconds[r['step']] * cores / 3600 for r in val]),
        'nll': np.array([r['validation/nll'] for r in val]),
    }
    for key, _ in VIEWER_PANELS:
        curve[key] = np.array([r.get('validation/' + key, np.nan) for r in val], np.float64)
    return curve


def plot_curves(runs: Dict[str, str],
                out: str,
                *,
                cores: int = 1,
                reference: Dict[str, float] = None) -> None:
    """Validation NLL against step and against core-hours, one line per run (`reference` adds
    horizontal lines {label: nats/frame}); below them, when any run logged them, what a viewer
    sees against step (VIEWER_PANELS)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    curves = {name: validation_curve(read_metrics(path), cores) for name, path in runs.items()}
    viewer = any(np.isfinite(c[k]).any() for c in curves.values() for k, _ in VIEWER_PANELS)
    rows = 3 if viewer else 1
    fig, grid = plt.subplots(rows, 2, figsize=(11, 4 * rows), squeeze=False)
    axes = grid[0]
    axes[1].sharey(axes[0])
    for name, curve in sorted(curves.items()):
        axes[0].plot(curve['step'], curve['nll'], label=name)
        axes[1].plot(curve['core_hours'], curve['nll'], label=name)
        for ax, (key, _) in zip(grid[1:].ravel(), VIEWER_PANELS):
            ok = np.isfinite(curve[key])
            ax.plot(curve['step'][ok], curve[key][ok], label=name)
    for label, value in (reference or {}).items():
        for ax in axes:
            ax.axhline(value, color='grey', linestyle=':', linewidth=1)
        axes[1].annotate(label, (1.0, value),
                         xycoords=('axes fraction', 'data'),
                         ha='right',
                         va='bottom',
                         fontsize=8,
                         color='grey')
    axes[0].set_xlabel('training step')
    axes[1].set_xlabel('core-hours (2-core laptop CPU, one core per run)')
    axes[0].set_ylabel('validation NLL (nats/frame)')
    for ax, (key, label) in zip(grid[1:].ravel(), VIEWER_PANELS):
        ax.set_xlabel('training step')
        ax.set_ylabel(label)
        if key.startswith('mass_ratio'):
            ax.axhline(1.0, color='grey', linestyle=':', linewidth=1)
            ax.set_yscale('log')
    for ax in grid.ravel():
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle('Moving MNIST validation: frames 10-19 given 0-9')
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def parse_models(spec: str) -> List[Tuple[str, int]]:
    """'MODEL:K,MODEL:K' -> [(MODEL, K)]: K samples per video of each MODEL (a shipped name, a
    workdir or WORKDIR@STEP; `vpn_jax.pretrained.load_model`)."""
    models = []
    for item in spec.split(','):
        name, _, k = item.rpartition(':')
        if not name or not k.isdigit() or int(k) < 1:
            raise ValueError(f'--models takes MODEL:SAMPLES entries, e.g. moving_mnist_cpu:2; '
                             f'got {item!r}.')
        models.append((name, int(k)))
    return models


def sample_rows(models: Sequence[Tuple[str, int]] = (('moving_mnist_cpu', 2),
                                                     ('moving_mnist_cpu_baseline', 1)),
                *,
                split: str = 'test',
                num_videos: int = 3,
                seed: int = 0,
                temperature: float = 1.0):
    """(rows uint8[num_videos * S, 20, 64, 64, 1], truth uint8[num_videos, 20, 64, 64, 1],
    num_context): per video, K samples of each (model, K) in `models` in that order (S = the
    sum of the K), all continuing the first `num_videos` sequences of `split` with the same
    noise (`seed`); the first model's config chooses the data."""
    import jax
    from vpn_jax.data.input_pipeline import evaluation_sequences
    from vpn_jax.pretrained import load_model
    from vpn_jax.sampling import sample
    loaded = [(load_model(name), k) for name, k in models]
    config = loaded[0][0][2]
    nc = int(config.data.num_context)
    video = evaluation_sequences(config, split, num_videos)['video']
    context, num_frames = video[:, :nc], video.shape[1] - nc
    key = jax.random.key(seed)
    per_model = []
    for (module, variables, _), k in loaded:
        rows = np.asarray(
            sample(module,
                   variables,
                   context,
                   num_frames=num_frames,
                   rng=key,
                   num_samples=k,
                   temperature=temperature))
        per_model.append(rows.reshape((num_videos, k) + rows.shape[1:]))
    rows = np.concatenate(per_model, axis=1)
    return rows.reshape((-1, ) + rows.shape[2:]), video, nc


def _main(argv):
    from absl import flags
    from vpn_jax import visualize
    fv = flags.FLAGS
    if len(argv) != 2 or argv[1] not in ('curves', 'samples', 'chain'):
        raise SystemExit('usage: python -m vpn_jax.figures {curves,samples,chain} [flags]')
    os.makedirs(os.path.dirname(os.path.abspath(fv.out)), exist_ok=True)
    if argv[1] == 'chain':
        from vpn_jax.training.metrics import chain_stages
        if not fv.stages or not all(s.rpartition(':')[2].isdigit() for s in fv.stages):
            raise SystemExit('chain takes --stages=METRICS_JSONL:LAST_STEP,... e.g. '
                             'W1/metrics.jsonl:6900,W2/metrics.jsonl:300')
        paths, upto = zip(*(spec.rsplit(':', 1) for spec in fv.stages))
        rows = chain_stages([read_metrics(path) for path in paths], [int(s) for s in upto])
        with open(fv.out, 'w', encoding='utf-8') as f:
            f.writelines(json.dumps(row) + '\n' for row in rows)
        print(f'wrote {fv.out}: {len(rows)} rows, {sum(int(s) for s in upto):,} steps')
        return
    if argv[1] == 'curves':
        runs = {
            f[:-len('.metrics.jsonl')]: os.path.join(fv.runs, f)
            for f in os.listdir(fv.runs) if f.endswith('.metrics.jsonl')
        }
        plot_curves(runs,
                    fv.out,
                    cores=fv.cores,
                    reference={
                        'lower bound of our test split 87.96 (paper VPN 87.6)': 87.96,
                        'paper baseline 110.1': 110.1
                    })
        print(f'wrote {fv.out}')
        return
    models = parse_models(fv.models)
    rows, truth, nc = sample_rows(models,
                                  split=fv.split,
                                  num_videos=fv.num_videos,
                                  seed=fv.seed,
                                  temperature=fv.temperature)
    kwargs = dict(num_context=nc, num_samples=sum(k for _, k in models), scale=2, border=2)
    visualize.save_png(fv.out + '.png', visualize.make_grid(rows, truth, **kwargs))
    visualize.save_gif(fv.out + '.gif', visualize.make_animation(rows, truth, **kwargs), fps=4)
    print(f'wrote {fv.out}.png and {fv.out}.gif')


if __name__ == '__main__':
    from absl import app, flags
    flags.DEFINE_string('out', None, 'Output file (curves) or path prefix (samples).')
    flags.DEFINE_string('runs', 'docs/runs', 'curves: folder of <name>.metrics.jsonl files.')
    flags.DEFINE_integer('cores', 1, 'curves: CPU cores each run trained on.')
    flags.DEFINE_string(
        'models', 'moving_mnist_cpu:2,moving_mnist_cpu_baseline:1',
        'samples: MODEL:SAMPLES, ... rows per video, in order; MODEL is a shipped model, a '
        'training workdir or WORKDIR@STEP.')
    flags.DEFINE_enum('split', 'test', ['test', 'validation'], 'samples: evaluation split.')
    flags.DEFINE_integer('num_videos', 3, 'samples: sequences to continue.')
    flags.DEFINE_integer('seed', 0, 'samples: sampling seed.')
    flags.DEFINE_float('temperature', 1.0, 'samples: sampling temperature.')
    flags.DEFINE_list(
        'stages', [], 'chain: METRICS_JSONL:LAST_STEP, ... the training stages of one model '
        '(a warm-started run after the run it started from), oldest first.')
    flags.mark_flags_as_required(['out'])
    app.run(_main)
