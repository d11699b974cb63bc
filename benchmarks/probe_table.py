r"""Markdown table of recipe probes against the shipped VPN's curve, at equal steps and equal time.

    python benchmarks/probe_table.py --reference=docs/runs/moving_mnist_cpu.metrics.jsonl \
        --reference_run=CALIB --probes=context:W1,c32:W2,c32_lstm64:W3 --steps=600,2400,1800

Each probe is a workdir of `python -m vpn_jax.main --config=experiments/moving_mnist.py:cpu_vpn`
with one model change. `--reference_run` is a short `cpu_vpn` run (e.g. 100 steps) timed on the
same host under the same load as the probes: its median seconds per step turns a probe's step
into the reference step at equal CPU time (probe step x probe s/step / reference s/step).
Validation NLLs are means of the validations at steps s - 150, s and s + 150 (64 sequences each,
noisy alone); the reference at equal time is the mean of its three validations nearest that step.
`--steps` gives one step per probe (the row's "s").
"""

import os

from absl import app
from absl import flags
import numpy as np

from vpn_jax.training.metrics import read_metrics

_REFERENCE = flags.DEFINE_string('reference', 'docs/runs/moving_mnist_cpu.metrics.jsonl',
                                 'metrics.jsonl of the shipped run.')
_REFERENCE_RUN = flags.DEFINE_string('reference_run', None,
                                     'Workdir of a short cpu_vpn run timed beside the probes.')
_PROBES = flags.DEFINE_list('probes', None, 'NAME:WORKDIR, ...')
_STEPS = flags.DEFINE_list('steps', None, 'One step s per probe.')


def validations(rows) -> dict:
    return {r['step']: r['validation/nll'] for r in rows if 'validation/nll' in r}


def seconds_per_step(rows) -> float:
    """Median over the logged intervals after the first (which includes compilation)."""
    speeds = [r['train/steps_per_second'] for r in rows if 'train/steps_per_second' in r][1:]
    return float(np.median([1.0 / s for s in speeds]))


def mean_around(nll: dict, step: int, spacing: int = 150) -> float:
    return float(np.mean([nll[s] for s in (step - spacing, step, step + spacing) if s in nll]))


def nearest_mean(nll: dict, step: float) -> float:
    steps = np.array(sorted(nll))
    return float(np.mean([nll[s] for s in steps[np.argsort(np.abs(steps - step))[:3]]]))


def main(argv):
    del argv
    reference = validations(read_metrics(_REFERENCE.value))
    base = seconds_per_step(read_metrics(os.path.join(_REFERENCE_RUN.value, 'metrics.jsonl')))
    print(f'reference s/step {base:.2f}')
    print('| probe | step time | steps | NLL at step s: probe / shipped '
          '| NLL at equal CPU time: probe / shipped |')
    print('| --- | ---: | ---: | --- | --- |')
    for spec, step in zip(_PROBES.value, _STEPS.value):
        name, workdir = spec.split(':', 1)
        rows = read_metrics(os.path.join(workdir, 'metrics.jsonl'))
        nll, ratio, step = validations(rows), seconds_per_step(rows) / base, int(step)
        probe = mean_around(nll, step)
        print(f'| {name} | {ratio:.1f}x | {rows[-1]["step"]:,} | s = {step:,}: {probe:.1f} / '
              f'{mean_around(reference, step):.1f} | {probe:.1f} / '
              f'{nearest_mean(reference, step * ratio):.1f} |')


if __name__ == '__main__':
    flags.mark_flags_as_required(['reference_run', 'probes', 'steps'])
    app.run(main)
