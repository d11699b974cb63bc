"""Training: data parallelism, loss decrease, exact resume, NaN stop, errors before compute.

Tiny models (tests/conftest.py), 16x16 crops and 4-frame sequences keep every compilation to a
few seconds. The multi-device test runs in a subprocess with 4 forced host devices, so that the
other tests (and the other xdist worker) keep one device.
"""

import json
import os
import textwrap

import jax
import numpy as np
import pytest

from train_helpers import (
    compilation_cache,  # pylint: disable=unused-import
    experiment_config,
    run_python,
    tiny_experiment)
from vpn_jax.training import checkpoint as ckpt
from vpn_jax.data import input_pipeline
from vpn_jax.training import metrics as metrics_lib
from vpn_jax.training import train

DATA_PARALLEL_SCRIPT = textwrap.dedent('''
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, 'tests')
    from train_helpers import tiny_experiment
    from vpn_jax.data import input_pipeline
    from vpn_jax.training import train
    assert jax.device_count() == 4, jax.devices()
    out = {}
    for experiment in ('moving_mnist',):
        config = tiny_experiment(experiment, size=8)
        module = train.build_module(config)
        host_state = train.create_train_state(config, module, jax.random.key(0))
        batch = input_pipeline.train_batch(config, input_pipeline.train_source(config), 0)
        params = {}
        for n in (1, 2, 4):
            mesh = train.make_mesh(jax.devices()[:n])
            # A fresh copy: the step donates its input state.
            state = train.replicate(train.create_train_state(config, module, jax.random.key(0)),
                                    mesh)
            step = train.make_train_step(config, module, mesh)
            state, metrics = step(state, train.shard_batch(batch, mesh))
            state, metrics = step(state, train.shard_batch(batch, mesh))
            params[n] = jax.device_get(state.params)
            out[f'{experiment}/loss/{n}'] = float(metrics['loss'])
        for n in (2, 4):
            diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), params[1],
                                           params[n])
            out[f'{experiment}/max_diff/{n}'] = max(jax.tree_util.tree_leaves(diffs))
        moved = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), params[1],
                                       jax.device_get(host_state.params))
        out[f'{experiment}/moved'] = max(jax.tree_util.tree_leaves(moved))
    # Batches that do not split over 4 devices are refused before anything is compiled.
    config = tiny_experiment('moving_mnist')
    config.train.batch_size = 6
    try:
        train.train_and_evaluate(config, sys.argv[1])
        out['indivisible'] = 'no error'
    except ValueError as e:
        out['indivisible'] = str(e)
    print('RESULT ' + json.dumps(out))
''')


def test_data_parallel_step_equals_single_device(tmp_path):
    env = dict(os.environ,
               XLA_FLAGS='--xla_force_host_platform_device_count=4',
               JAX_PLATFORMS='cpu')
    proc = run_python(DATA_PARALLEL_SCRIPT, str(tmp_path / 'w'), env)
    line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')][-1]
    out = json.loads(line[len('RESULT '):])
    for experiment in ('moving_mnist', ):
        assert out[f'{experiment}/moved'] > 1e-4  # The step did change the parameters.
        for n in (2, 4):
            assert out[f'{experiment}/max_diff/{n}'] < 1e-5, out
            assert out[f'{experiment}/loss/{n}'] == pytest.approx(out[f'{experiment}/loss/1'],
                                                                  rel=1e-5)
    assert 'not divisible by the 4 devices' in out['indivisible']
    assert not os.path.exists(tmp_path / 'w' / 'checkpoints' / '0')


MICROBATCH_SCRIPT = textwrap.dedent('''
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, 'tests')
    from train_helpers import tiny_experiment
    from vpn_jax.data import input_pipeline
    from vpn_jax.training import train
    assert jax.device_count() == 2, jax.devices()
    config = tiny_experiment('moving_mnist', size=8)
    config.train.batch_size = 8
    module = train.build_module(config)
    batch = input_pipeline.train_batch(config, input_pipeline.train_source(config), 0)
    params, out = {}, {}
    for n in (1, 2):
        mesh = train.make_mesh(jax.devices()[:n])
        for m in (1, 4):
            config.train.microbatches = m
            state = train.replicate(train.create_train_state(config, module, jax.random.key(0)),
                                    mesh)
            step = train.make_train_step(config, module, mesh)
            for _ in range(2):
                state, metrics = step(state, train.shard_batch(batch, mesh))
            params[f'{n}/{m}'] = jax.device_get(state.params)
            out[f'{n}/{m}'] = {k: float(v) for k, v in metrics.items()}
    for key, p in params.items():
        try:
            jax.tree_util.tree_map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p,
                params['1/1'])
            out[key]['equal'] = True
        except AssertionError as e:
            out[key]['equal'] = str(e)[:500]
    # 8 sequences over 2 devices do not split into 3 micro-batches: refused before compute.
    config.train.microbatches = 3
    try:
        train.check_config(config, num_devices=2)
        out['indivisible'] = 'no error'
    except ValueError as e:
        out['indivisible'] = str(e)
    print('RESULT ' + json.dumps(out))
''')


def test_microbatches_give_the_one_batch_update_on_1_and_2_devices(tmp_path):
    """Batch 8, two steps: 4 micro-batches per device, on 1 device and on 2, give the parameters
    and metrics of one batch on one device, within rtol 1e-5."""
    env = dict(os.environ,
               XLA_FLAGS='--xla_force_host_platform_device_count=2',
               JAX_PLATFORMS='cpu')
    proc = run_python(MICROBATCH_SCRIPT, str(tmp_path), env)
    line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')][-1]
    out = json.loads(line[len('RESULT '):])
    for key in ('1/4', '2/1', '2/4'):
        assert out[key]['equal'] is True, (key, out[key]['equal'])
        for metric in ('loss', 'grad_norm', 'param_norm'):
            assert out[key][metric] == pytest.approx(out['1/1'][metric], rel=1e-5), (key, out)
    assert 'train.microbatches=3' in out['indivisible'], out['indivisible']
    assert 'train.microbatches in [1, 2, 4]' in out['indivisible'], out['indivisible']


def _params(workdir):
    _, variables, _ = ckpt.load_checkpoint(str(workdir))
    return jax.device_get(variables['params'])


def _assert_trees_equal(a, b):
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_array_equal(x, y), a, b)


def test_training_reduces_loss_resumes_exactly_and_checks_model(tmp_path):
    n = 4
    full = tiny_experiment('moving_mnist', steps=2 * n)
    full.train.checkpoint_every_steps = n
    full.train.keep_checkpoints = 1
    summary = train.train_and_evaluate(full, str(tmp_path / 'full'))
    assert summary['step'] == 2 * n
    losses = [r['train/loss'] for r in metrics_lib.read_jsonl(str(tmp_path / 'full'))]
    assert len(losses) == 2 * n and losses[-1] < losses[0], losses
    assert os.listdir(tmp_path / 'full' / 'checkpoints') == [str(2 * n)]  # Keeps the newest.
    assert os.listdir(tmp_path / 'full' / 'tensorboard')

    # N steps, stop; the same command with num_steps=2N continues to the same parameters.
    half = tiny_experiment('moving_mnist', steps=n)
    train.train_and_evaluate(half, str(tmp_path / 'resumed'))
    again = tiny_experiment('moving_mnist', steps=2 * n)
    resumed = train.train_and_evaluate(again, str(tmp_path / 'resumed'))
    assert resumed['start_step'] == n and resumed['step'] == 2 * n
    _assert_trees_equal(_params(tmp_path / 'full'), _params(tmp_path / 'resumed'))
    mngr = ckpt.manager(str(tmp_path / 'resumed'), create=False)
    assert ckpt.read_data_position(mngr, 2 * n) == {'seed': 0, 'step': 2 * n, 'validated': 1}

    # A different model in the same workdir is refused before anything runs.
    other = tiny_experiment('moving_mnist', steps=3 * n)
    other.model.channels = 9
    with pytest.raises(ValueError, match='different model config.*channels'):
        train.train_and_evaluate(other, str(tmp_path / 'resumed'))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    config = tiny_experiment('push_sim', steps=2, size=8)
    train.train_and_evaluate(config, str(tmp_path))
    good = _params(tmp_path)
    # NaN actions from step 2 on: the same compiled step, a NaN loss at step 3.
    real = input_pipeline.train_batch

    def poisoned(config, source, step, **kwargs):
        batch = real(config, source, step, **kwargs)
        return dict(batch, actions=batch['actions'] * np.nan) if step >= 2 else batch

    monkeypatch.setattr(input_pipeline, 'train_batch', poisoned)
    config = tiny_experiment('push_sim', steps=6, size=8)
    config.train.checkpoint_every_steps = 1
    with pytest.raises(train.NonFiniteLossError, match='nan at step 3'):
        train.train_and_evaluate(config, str(tmp_path))
    assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2']
    _assert_trees_equal(good, _params(tmp_path))


def test_errors_before_compute(tmp_path):
    with pytest.raises(ValueError, match='Unknown variant'):
        experiment_config('moving_mnist', 'vpn_gigantic')
    config = tiny_experiment('moving_mnist')
    config.data.tfds_data_dir = str(tmp_path / 'missing')
    with pytest.raises(FileNotFoundError, match='tfds_data_dir'):
        train.train_and_evaluate(config, str(tmp_path / 'w1'))
    config = tiny_experiment('moving_mnist')
    config.train.batch_size = 6
    with pytest.raises(ValueError, match='not divisible by the 4 devices'):
        train.check_config(config, num_devices=4)
    # A data dir without the dataset, and a prepared dataset without the split.
    config = tiny_experiment('moving_mnist')
    config.train.evaluate_test = True
    config.data.prepare_if_missing = False
    config.data.tfds_data_dir = str(tmp_path)
    with pytest.raises(FileNotFoundError, match='not prepared'):
        train.train_and_evaluate(config, str(tmp_path / 'w2'))
    _prepare_tiny_moving_mnist(tmp_path)
    config.data.test_dataset = 'moving_mnist_vpn/tiny'
    config.data.test_split = 'validation'
    with pytest.raises(ValueError, match="no split 'validation'"):
        train.train_and_evaluate(config, str(tmp_path / 'w3'))
    for w in ('w1', 'w2', 'w3'):
        assert not os.path.exists(tmp_path / w / 'metrics.jsonl')


def _prepare_tiny_moving_mnist(data_dir):
    """`moving_mnist_vpn/tiny`: 2 test sequences and no validation split."""
    from vpn_jax_datasets.moving_mnist_vpn import moving_mnist_vpn_dataset_builder as mmb
    builder = mmb.Builder(config=mmb.MovingMnistVpnConfig(name='tiny', num_test=2,
                                                          num_validation=0),
                          data_dir=str(data_dir),
                          file_format='array_record')
    builder.download_and_prepare()
