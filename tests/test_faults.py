"""Training runs that survive faults (WORKSPACE.md, "What survives what").

A NaN update is never saved; a failing validation loses no training; a broken newest checkpoint
(truncated, missing item, flipped bits, bad JSON) is reported and the newest intact one is used;
one run per workdir; partial and non-finite evaluations never replace a result; resumed runs log
each step once; and the messages of the misleading cases. Tiny configs (tests/conftest.py).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import vpn_jax
from train_helpers import ROOT, compilation_cache, tiny_experiment  # pylint: disable=unused-import
from vpn_jax.training import checkpoint as ckpt
from vpn_jax.data import input_pipeline
from vpn_jax.training import metrics as metrics_lib
from vpn_jax.training import results
from vpn_jax.training import run_lock
from vpn_jax.data import tfrecord
from vpn_jax.training import state as state_lib
from vpn_jax.training import train


def _env():
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    env['PYTHONPATH'] = os.pathsep.join([ROOT, env.get('PYTHONPATH', '')])
    return env


def _params(workdir):
    return jax.device_get(ckpt.load_checkpoint(str(workdir))[1]['params'])


def _assert_trees_equal(a, b):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def _state(config, seed):
    return train.create_train_state(config, train.build_module(config), jax.random.key(seed))


def _save_raw(workdir, step, state, config):
    """A checkpoint as the code before checksums wrote it: no checksum item, no finiteness
    check."""
    mngr = ckpt.manager(str(workdir))
    mngr.save(step,
              args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      config=ocp.args.JsonSave(ckpt.config_to_json(config)),
                                      data=ocp.args.JsonSave({
                                          'seed': 0,
                                          'step': step
                                      })))
    mngr.close()


# ------------------------------------------------------------------------------------------------
# 1. Non-finite states.


def _nan_updates_from(count):
    """An optax transformation that turns every update into NaN from its `count`-th call on."""

    def init(params):
        del params
        return {'count': jax.numpy.zeros((), jax.numpy.int32)}

    def update(updates, state, params=None):
        del params
        poison = jax.numpy.where(state['count'] >= count, jax.numpy.nan, 1.0)
        return jax.tree_util.tree_map(lambda u: u * poison, updates), {'count': state['count'] + 1}

    return optax.GradientTransformation(init, update)


def test_nonfinite_update_is_never_saved(tmp_path, monkeypatch):
    # The third update is NaN: the loss of step 3 (computed before it) is finite, its parameters
    # are not. The old check (the loss only) saved step 3 and named it the last good one.
    real = state_lib.make_optimizer

    def poisoned(config):
        tx, plateau = real(config)
        return optax.chain(tx, _nan_updates_from(2)), plateau

    monkeypatch.setattr(state_lib, 'make_optimizer', poisoned)  # Training and loading use it.
    config = tiny_experiment('push_sim', steps=5, size=8)
    config.train.checkpoint_every_steps = 1
    config.train.keep_checkpoints = 10
    with pytest.raises(train.NonFiniteLossError) as e:
        train.train_and_evaluate(config, str(tmp_path))
    message = str(e.value)
    assert 'updated parameters are not finite' in message and 'at step 3' in message, message
    assert 'newest checkpoint, step 2' in message, message
    assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(_params(tmp_path)))


def test_save_refuses_nonfinite_params(tmp_path):
    config = tiny_experiment('push_sim', size=8)
    state = _state(config, 0)
    leaves, treedef = jax.tree_util.tree_flatten(state.params)
    leaves[0] = leaves[0] * np.nan
    state = state.replace(params=jax.tree_util.tree_unflatten(treedef, leaves))
    mngr = ckpt.manager(str(tmp_path))
    with pytest.raises(ckpt.NonFiniteStateError, match='Not saving step 3: non-finite'):
        ckpt.save(mngr, 3, state, config, {'seed': 0, 'step': 3})
    assert mngr.all_steps() == []
    mngr.close()


EVALUATE = [sys.executable, '-m', 'vpn_jax.evaluate', '--split=test', '--nokeep_freed_memory']


def _evaluate(*flags):
    """Runs the evaluate command on the test split; the CompletedProcess."""
    return subprocess.run(EVALUATE + list(flags),
                          cwd=ROOT,
                          env=_env(),
                          capture_output=True,
                          text=True,
                          timeout=600,
                          check=False)


def test_evaluate_cli_partial_and_nonfinite_results(tmp_path):
    config = tiny_experiment('push_sim', size=8)
    config.data.sim_sizes = (16, 8, 5)  # 5 test sequences: 2 batches of 4.
    # A partial evaluation (--max_batches) never replaces the training run's full result.
    good = tmp_path / 'good'
    _save_raw(good, 2, _state(config, 0), config)
    (good / 'eval_test.json').write_text('{"nll": 1.0}')
    proc = _evaluate(f'--checkpoint={good}', '--max_batches=1')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((good / 'eval_test.json').read_text()) == {'nll': 1.0}
    partial = json.loads((good / 'eval_test_partial.json').read_text())
    assert partial['partial'] is True and partial['num_sequences'] == 4
    # NaN parameters (as the code before the finiteness check could save): a non-zero exit and
    # nothing written, instead of "nll": NaN with exit code 0.
    bad = tmp_path / 'bad'
    state = _state(config, 0)
    state = state.replace(params=jax.tree_util.tree_map(lambda p: p * np.nan, state.params))
    _save_raw(bad, 2, state, config)
    proc = _evaluate(f'--checkpoint={bad}')
    assert proc.returncode != 0
    assert 'FloatingPointError' in proc.stderr and 'is nan' in proc.stderr, proc.stderr[-3000:]
    assert not [f for f in os.listdir(bad) if f.startswith('eval_')]


def test_write_result_never_writes_a_bare_nan(tmp_path):
    config = tiny_experiment('push_sim', size=8)
    result = {'nll': float('nan'), 'units': 'nats/dim', 'num_sequences': 4, 'seconds': 1.0}
    path = results.write_result(str(tmp_path), config, result, step=3)

    def refuse(token):
        raise ValueError(f'bare {token} in the JSON')

    record = json.loads(open(path, encoding='utf-8').read(), parse_constant=refuse)
    assert record['nll'] is None and record['step'] == 3


# ------------------------------------------------------------------------------------------------
# 2. Validation after the save; evaluation settings before compute.


def test_failing_validation_loses_no_training(tmp_path, monkeypatch):
    config = tiny_experiment('push_sim', steps=4, size=8)
    config.train.eval_every_steps = 2
    config.train.checkpoint_every_steps = 2
    config.eval.validation_batches = 1
    real = train.evaluate_source
    calls = []

    def failing(*args, **kwargs):
        calls.append(kwargs.get('desc'))
        if len(calls) == 2:
            raise RuntimeError('validation crashed')
        return real(*args, **kwargs)

    monkeypatch.setattr(train, 'evaluate_source', failing)
    with pytest.raises(RuntimeError, match='validation crashed'):
        train.train_and_evaluate(config, str(tmp_path))
    # The checkpoint of step 4 was saved before its validation (the old order lost it).
    assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4']
    mngr = ckpt.manager(str(tmp_path), create=False)
    assert ckpt.read_data_position(mngr, 4) == {'seed': 0, 'step': 4, 'validated': 0}
    assert ckpt.read_data_position(mngr, 2)['validated'] == 0  # Validated after the save too.
    mngr.close()
    monkeypatch.setattr(train, 'evaluate_source', real)
    # Resumed, the run does the pending validation of step 4 and nothing else.
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert summary['start_step'] == summary['step'] == 4 and 'validation' in summary
    rows = metrics_lib.read_jsonl(str(tmp_path))
    assert [r['step'] for r in rows if 'validation/nll' in r] == [2, 4]
    assert [r['step'] for r in rows if 'train/loss' in r] == [1, 2, 3, 4]


def test_eval_settings_and_frame_size_checked_before_compute(tmp_path, monkeypatch):
    monkeypatch.setattr(train, 'create_train_state', None)  # Must not be reached.
    # image_size larger than the frames (PushSim at downsample 4: 16x16).
    config = tiny_experiment('push_sim', size=32)
    config.data.sim_downsample = 4
    with pytest.raises(ValueError, match=r'data.image_size=32 exceeds the 16x16 frames'):
        train.train_and_evaluate(config, str(tmp_path / 'w1'))
    assert not os.path.exists(tmp_path / 'w1')
    # eval_num_frames longer than the evaluation sequences (a video array of 6 frames).
    videos = np.random.default_rng(0).integers(0, 256, (12, 6, 16, 16, 1), dtype=np.uint8)
    vpn_jax.data.video_array.save(str(tmp_path / 'videos.npy'), videos)
    config = tiny_experiment('moving_mnist')
    config.data.name = 'video_array'
    config.data.path = str(tmp_path / 'videos.npy')
    config.data.validation_fraction = 0.25
    config.data.test_fraction = 0.25
    config.data.eval_num_frames = 6
    config.data.image_size = 16
    config.train.evaluate_test = True
    config.data.image_size = 20
    with pytest.raises(ValueError, match=r'data.image_size=20 exceeds the 16x16 frames'):
        train.train_and_evaluate(config, str(tmp_path / 'w2'))
    assert not os.path.exists(tmp_path / 'w2')
    # Evaluation sequences shorter than eval_num_frames (e.g. a prepared dataset of 20 frames).
    config = tiny_experiment('moving_mnist')
    config.data.eval_num_frames = 30
    short = [{'video': np.zeros((20, 64, 64, 1), np.uint8)}]
    with pytest.raises(ValueError,
                       match='data.eval_num_frames=30 exceeds the 20 frames of the '
                       'validation sequences'):
        input_pipeline.check_sources(config, None, {'validation': short})


def test_check_config_names_the_field():
    cases = [
        (('train', 'batch_size', 0), 'train.batch_size must be >= 1; got 0'),
        (('eval', 'batch_size', -4), 'eval.batch_size must be >= 1; got -4'),
        (('train', 'learning_rate', -3e-4), 'train.learning_rate must be > 0'),
        (('train', 'learning_rate', 0.0), 'train.learning_rate must be > 0'),
        (('eval', 'validation_batches', -1), 'eval.validation_batches must be >= 0'),
    ]
    for (section, field, value), message in cases:
        config = tiny_experiment('moving_mnist')
        config[section][field] = value
        with pytest.raises(ValueError, match=message):
            train.check_config(config, num_devices=1)
    config = tiny_experiment('moving_mnist', frames=4, context=2)
    config.data.eval_num_frames = 2
    with pytest.raises(ValueError, match='data.num_context must be in'):
        train.check_config(config, num_devices=1)


# ------------------------------------------------------------------------------------------------
# 3. A broken newest checkpoint.


def _largest_file(directory):
    files = [os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs]
    return max(files, key=os.path.getsize)


def _truncate(step_dir):
    path = _largest_file(os.path.join(step_dir, 'state'))
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size // 2)


def _delete_item(step_dir):
    shutil.rmtree(os.path.join(step_dir, 'state'))


def _largest_data_file(directory):
    """The largest array-data file (OCDBT keeps them in folders named `d`): flipping bits there
    corrupts parameter values while every JSON metadata file still parses."""
    files = [
        os.path.join(r, f) for r, _, fs in os.walk(directory) if os.path.basename(r) == 'd'
        for f in fs
    ]
    return max(files, key=os.path.getsize)


def _flip_bits(step_dir):
    path = _largest_data_file(os.path.join(step_dir, 'state'))
    with open(path, 'r+b') as f:
        data = bytearray(f.read())
        for i in range(len(data) // 2, len(data) // 2 + 8):
            data[i] ^= 0x10
        f.seek(0)
        f.write(data)


def _bad_json(step_dir):
    with open(os.path.join(step_dir, 'config', 'metadata'), 'w', encoding='utf-8') as f:
        f.write('{"model": {"chan')


@pytest.mark.parametrize('damage', [_truncate, _delete_item, _flip_bits, _bad_json])
def test_broken_newest_checkpoint_falls_back_to_intact_one(damage, tmp_path, capsys):
    config = tiny_experiment('push_sim', size=8)
    older, newer = _state(config, 0), _state(config, 1)
    mngr = ckpt.manager(str(tmp_path))
    ckpt.save(mngr, 2, older, config, {'seed': 0, 'step': 2})
    ckpt.save(mngr, 4, newer, config, {'seed': 0, 'step': 4})
    mngr.close()
    _assert_trees_equal(_params(tmp_path), jax.device_get(newer.params))
    damage(str(tmp_path / 'checkpoints' / '4'))

    _, variables, _ = vpn_jax.load_checkpoint(str(tmp_path))
    _assert_trees_equal(jax.device_get(variables['params']), jax.device_get(older.params))
    out = capsys.readouterr().out
    assert 'checkpoint at step 4' in out and 'is broken' in out, out
    assert 'Falling back to the checkpoint at step 2' in out, out
    # The same for a training run's restore, which also reads the data position.
    mngr = ckpt.manager(str(tmp_path), create=False)
    step, state, extra, broken = ckpt.restore_newest_intact(
        mngr,
        older,
        read=lambda s: {
            'config': ckpt.read_config(mngr, s),
            'position': ckpt.read_data_position(mngr, s)
        })
    mngr.close()
    assert step == 2 and [s for s, _ in broken] == [4]
    assert extra['position'] == {'seed': 0, 'step': 2, 'validated': 1}
    _assert_trees_equal(jax.device_get(state.params), jax.device_get(older.params))
    # An explicitly requested broken step is an error naming it.
    if damage is _flip_bits:
        with pytest.raises(ckpt.CorruptCheckpointError, match='step 4 .* is corrupt'):
            vpn_jax.load_checkpoint(str(tmp_path), 4)


def test_checkpoint_without_checksum_still_loads(tmp_path):
    config = tiny_experiment('push_sim', size=8)
    state = _state(config, 0)
    _save_raw(tmp_path, 3, state, config)
    _assert_trees_equal(_params(tmp_path), jax.device_get(state.params))


def test_training_resumes_from_intact_checkpoint_and_logs_each_step_once(tmp_path, capsys):
    config = tiny_experiment('push_sim', steps=4, size=8)
    config.train.checkpoint_every_steps = 2
    train.train_and_evaluate(config, str(tmp_path))
    final = _params(tmp_path)
    # A run killed after logging steps 3 and 4 but before saving step 4.
    shutil.rmtree(tmp_path / 'checkpoints' / '4')
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert summary['start_step'] == 2 and summary['step'] == 4
    assert [r['step'] for r in metrics_lib.read_jsonl(str(tmp_path))] == [1, 2, 3, 4]
    _assert_trees_equal(_params(tmp_path), final)
    # Flipped bits in the newest checkpoint: reported, moved aside, the same training redone.
    _flip_bits(str(tmp_path / 'checkpoints' / '4'))
    capsys.readouterr()
    summary = train.train_and_evaluate(config, str(tmp_path))
    out = capsys.readouterr().out
    assert 'checkpoint at step 4' in out and 'Falling back to the checkpoint at step 2' in out
    assert summary['start_step'] == 2 and summary['step'] == 4
    assert len(os.listdir(tmp_path / ckpt.BROKEN_DIR)) == 1
    assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4']
    _assert_trees_equal(_params(tmp_path), final)
    assert [r['step'] for r in metrics_lib.read_jsonl(str(tmp_path))] == [1, 2, 3, 4]
    # A finished workdir, and a num_steps below the checkpoint's step, say so.
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert train.describe(summary) == (f'{tmp_path} was already trained to 4 steps '
                                       '(train.num_steps=4): nothing to train.')
    config.train.num_steps = 2
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert summary['step'] == 4
    assert 'is at step 4, beyond train.num_steps=2: nothing was trained' in train.describe(summary)


# ------------------------------------------------------------------------------------------------
# 4. One run per workdir.


def test_second_run_on_a_live_workdir_is_refused(tmp_path):
    config = tiny_experiment('push_sim', size=8)
    with run_lock.WorkdirLock(str(tmp_path)):
        with pytest.raises(run_lock.WorkdirLockedError, match=f'workdir {tmp_path}'):
            train.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / 'checkpoints')


HOLD_LOCK = textwrap.dedent('''
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location('run_lock', sys.argv[1])
    run_lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_lock)
    lock = run_lock.WorkdirLock(sys.argv[2])
    print('locked', flush=True)
    time.sleep(600)
''')


def test_lock_of_a_killed_run_is_released(tmp_path):
    proc = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, run_lock.__file__,
                             str(tmp_path)],
                            stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == 'locked'
        with pytest.raises(run_lock.WorkdirLockedError, match=f'pid {proc.pid}'):
            run_lock.WorkdirLock(str(tmp_path))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_lock.WorkdirLock(str(tmp_path)).release()  # The kernel dropped the dead run's lock.


# ------------------------------------------------------------------------------------------------
# 5. Metrics of a resumed run; sample_main's --out.


def _purge_steps(logdir):
    from tensorboardX.proto import event_pb2
    steps = []
    for name in sorted(os.listdir(logdir)):
        for _, data in tfrecord.read_records(os.path.join(logdir, name)):
            event = event_pb2.Event.FromString(data)
            if event.HasField('session_log') and event.session_log.status == 1:  # START
                steps.append(event.step)
    return steps


def test_metric_writer_drops_rows_after_the_resumed_step(tmp_path):
    writer = metrics_lib.MetricWriter(str(tmp_path), resume_step=0)
    for step in (1, 2, 3, 4):
        writer.write(step, {'train/loss': float(step)})
    writer.write(2, {'validation/nll': float('nan')})
    writer.close()
    with open(tmp_path / metrics_lib.JSONL, 'a', encoding='utf-8') as f:
        f.write('{"step": 5, "tra')  # Killed while writing.
    writer = metrics_lib.MetricWriter(str(tmp_path),
                                      resume_step=2,
                                      drop_at_resume_step=('validation/', ))
    writer.write(3, {'train/loss': 30.0})
    writer.close()
    rows = metrics_lib.read_jsonl(str(tmp_path))
    assert [(r['step'], r['train/loss']) for r in rows] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    # TensorBoard hides the old events from step 3 on (purge_step).
    assert 3 in _purge_steps(tmp_path / 'tensorboard')


def test_sample_main_refuses_a_file_as_out_before_loading(tmp_path):
    (tmp_path / 'file').write_text('x')
    for out, message in ((tmp_path / 'file', 'is a file'), (tmp_path / 'file' / 'sub',
                                                            'cannot be created')):
        proc = subprocess.run([
            sys.executable, '-m', 'vpn_jax.sample_main', f'--workdir={tmp_path / "nothing"}',
            f'--out={out}'
        ],
                              cwd=ROOT,
                              env=_env(),
                              capture_output=True,
                              text=True,
                              timeout=300,
                              check=False)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
        assert 'No checkpoints' not in proc.stderr


# ------------------------------------------------------------------------------------------------
# 6. Messages.


def test_corrupt_record_error_mentions_skip_corrupt(tmp_path):
    path = str(tmp_path / 'data.tfrecord')
    tfrecord.write_records(path, [b'hello world' * 10])
    with open(path, 'r+b') as f:
        f.seek(20)
        f.write(b'X')
    with pytest.raises(tfrecord.CorruptRecordError, match='record 0.*skip_corrupt'):
        list(tfrecord.read_records(path))


def test_not_prepared_pushing_hint_mentions_manual_dir(tmp_path):
    from vpn_jax import tfds_datasets
    with pytest.raises(FileNotFoundError, match='not prepared.*--manual_dir='):
        tfds_datasets.data_source('robotic_pushing', split='train', data_dir=str(tmp_path))


def test_log_likelihood_refuses_a_non_int_num_context():
    video = np.zeros((1, 4, 8, 8, 1), np.uint8)
    with pytest.raises(ValueError, match='num_context must be an int.*1.5'):
        vpn_jax.log_likelihood(None, None, video, num_context=1.5)


def test_describe_finished_and_shorter_runs():
    base = {'workdir': '/w', 'units': 'nats/frame', 'train_loss': float('nan')}
    assert train.describe(dict(base, start_step=8, step=8, num_steps=8)) == \
        '/w was already trained to 8 steps (train.num_steps=8): nothing to train.'
    assert 'nothing was trained' in train.describe(dict(base, start_step=8, step=8, num_steps=4))
    assert train.describe(dict(base, start_step=2, step=8, num_steps=8,
                               train_loss=1.5)) == ('trained 8 steps in /w (6 in this run); final '
                                                    'train loss 1.5000 nats/frame')
