"""Multi-host training: two JAX processes (one CPU device each) train like one process.

Both processes run `train.train_and_evaluate` after `jax.distributed.initialize` (what
`python -m vpn_jax.main --coordinator_address=... --num_processes=2 --process_id=I` does), each
building its own half of every global batch. The checkpoint they write must hold the parameters a
single process reaches on the same global batches (process 0's half, then process 1's).
"""

import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np

from train_helpers import ROOT, tiny_experiment
from vpn_jax.training import checkpoint as ckpt
from vpn_jax.data import input_pipeline
from vpn_jax.training import train

STEPS = 2

WORKER = textwrap.dedent('''
    import sys
    import jax
    port, process_id, workdir, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    jax.distributed.initialize(f'localhost:{port}', num_processes=2, process_id=process_id)
    assert jax.process_count() == 2 and jax.device_count() == 2, jax.devices()
    sys.path.insert(0, 'tests')
    from train_helpers import tiny_experiment
    from vpn_jax.training import train
    summary = train.train_and_evaluate(tiny_experiment('moving_mnist', size=8, steps=steps),
                                       workdir)
    print('STEP', summary['step'], jax.process_index())
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    workdir = str(tmp_path / 'run')
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
    procs = [
        subprocess.Popen(
            [sys.executable, '-c', WORKER,
             str(port), str(i), workdir,
             str(STEPS)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True) for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:  # A crashed process would leave its partner waiting for it.
            p.kill()
    for i, (p, (out, err)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f'process {i}:\n{err[-3000:]}'
        assert f'STEP {STEPS} {i}' in out

    # The same global batches on one device (tests/test_train.py shows 1 device == 2 devices).
    config = tiny_experiment('moving_mnist', size=8, steps=STEPS)
    module = train.build_module(config)
    mesh = train.make_mesh(jax.devices()[:1])
    state = train.replicate(train.create_train_state(config, module, jax.random.key(0)), mesh)
    step = train.make_train_step(config, module, mesh)
    source = input_pipeline.train_source(config)
    for s in range(STEPS):
        halves = [
            input_pipeline.train_batch(config, source, s, process_index=p, process_count=2)
            for p in range(2)
        ]
        batch = {k: np.concatenate([h[k] for h in halves]) for k in halves[0]}
        state, _ = step(state, train.shard_batch(batch, mesh))
    want = jax.device_get(state.params)
    _, variables, _ = ckpt.load_checkpoint(workdir)
    got = jax.device_get(variables['params'])
    moved = jax.tree_util.tree_map(
        lambda a, b: float(np.max(np.abs(a - b))), want,
        jax.device_get(train.create_train_state(config, module, jax.random.key(0)).params))
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-4
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), got, want)
