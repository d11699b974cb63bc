"""The device scripts run end to end on the CPU with tiny shapes (`--smoke`), so they cannot rot
before a device is lent: benchmarks/memory_plan.py and benchmarks/gpu_check.sh."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, env=None):
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHON=sys.executable, **(env or {}))
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_memory_plan_smoke_prints_xla_figures(tmp_path):
    path = tmp_path / 'plan.json'
    proc = _run([sys.executable, 'benchmarks/memory_plan.py', '--smoke', f'--json={path}'])
    rows = json.loads(path.read_text())
    assert [(r['remat'], r['microbatches']) for r in rows] == [('none', 1), ('convs', 2)]
    for r in rows:
        assert 'error' not in r, r
        assert r['peak_bytes'] == (r['argument_bytes'] + r['output_bytes'] - r['alias_bytes'] +
                                   r['temp_bytes'])
        assert r['temp_bytes'] > 0 and r['flops_per_sequence'] > 0
        assert r['alias_bytes'] > 0  # The donated state is updated in place.
    assert '| per-device batch | dtype | remat | micro-batches |' in proc.stdout
    assert 'fits 141 GB' in proc.stdout


def test_gpu_check_smoke_writes_every_stage(tmp_path):
    out = tmp_path / 'out'
    _run(['bash', 'benchmarks/gpu_check.sh', '--smoke', f'--out={out}'])
    results = json.loads((out / 'gpu_check.json').read_text())
    assert {
        k: v['status']
        for k, v in results['stages'].items()
    } == dict.fromkeys(['device', 'plan', 'throughput', 'profile', 'train'], 'ok'), results
    assert results['plan']['picked'] == {'2': {'remat': 'none', 'microbatches': 1}}
    (row, ) = results['throughput']['rows']
    assert row['step_s'] > 0 and row['flops_per_sequence'] > 0 and 'mfu' in row
    top = results['profile']['top']
    assert 1 <= len(top) <= 10 and all(t['us'] > 0 for t in top)
    assert any(t['part'] == 'convolution' for t in top), top
    assert results['train']['steps'] >= 2
    md = (out / 'gpu_check.md').read_text()
    for heading in ('Memory plan', 'Train step', 'Ten most expensive operations', 'Training'):
        assert heading in md, md
