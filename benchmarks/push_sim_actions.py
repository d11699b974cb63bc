r"""Does the action-conditioned VPN use its actions? PushSim, true vs shuffled actions.

    python benchmarks/push_sim_actions.py [--steps=3000] [--workdir=/tmp/push_sim_actions]
    # or the two trainings in parallel, one core each, then the comparison:
    taskset -c 0 python benchmarks/push_sim_actions.py --runs=true &
    taskset -c 1 python benchmarks/push_sim_actions.py --runs=shuffled; wait
    python benchmarks/push_sim_actions.py --runs=

Trains the `cpu_sim` model of experiments/robotic_pushing.py twice with the same seed, steps and
batches: once with the true actions ('true'), once with each sequence's actions replaced by those
of another sequence of its batch ('shuffled'; `data.shuffle_actions`). Context states are true
in both. Then evaluates on the same PushSim test sequences, in nats/dim over the predicted
frames:

* the true-action model given the true test actions,
* the same model given shuffled test actions (does this model use its actions?),
* the shuffled-action model (what a model learns without informative actions).

A model that uses its actions reaches a clearly lower NLL with the true ones. Differences come
with a standard error over the (paired) test batches.

Training resumes from each run's checkpoint (`WORKDIR/true`, `WORKDIR/shuffled`), so a larger
--steps continues a finished run. To fit 2 CPU cores: 16x16 frames (the 64x64 PushSim frames
area-downsampled by 4, so the whole scene stays in view), 6-frame sequences (2 context + 4
predicted), a small batch and a larger learning rate than the paper's. PushSim's commands are
redrawn every step (--turn_probability=1), so the gripper's motion cannot be guessed from the
context frames: only the actions tell where it goes.
"""

import json
import os
import time

from absl import app
from absl import flags
import jax
import numpy as np

from vpn_jax import checkpoint as ckpt
from vpn_jax import configs
from vpn_jax import input_pipeline
from vpn_jax import train

_RUNS = flags.DEFINE_list(
    'runs', ['true', 'shuffled'], 'Trainings to run first (true, shuffled); '
    'empty: only evaluate the existing checkpoints.')
_STEPS = flags.DEFINE_integer('steps', 3000, 'Training steps per run.')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'Training batch.')
_FRAMES = flags.DEFINE_integer('frames', 6, 'Frames per training and test sequence.')
_LR = flags.DEFINE_float('learning_rate', 2e-3, 'RMSProp learning rate.')
_TEST = flags.DEFINE_integer('test_sequences', 256, 'PushSim test sequences.')
_SIZE = flags.DEFINE_integer('image_size', 16, 'Frame size after downsampling (a central crop '
                             'if smaller).')
_DOWNSAMPLE = flags.DEFINE_integer('downsample', 4, 'Area downsampling of the 64x64 frames.')
_TURN = flags.DEFINE_float(
    'turn_probability', 1.0, 'Probability per step that PushSim redraws '
    'the commanded displacement.')
_WORKDIR = flags.DEFINE_string('workdir', '/tmp/push_sim_actions', 'Parent of the two workdirs.')


def make_config(shuffle: bool):
    config = configs.load_config('experiments/robotic_pushing.py:cpu_sim')
    config.data.shuffle_actions = shuffle
    config.data.num_frames = _FRAMES.value
    config.data.eval_num_frames = _FRAMES.value
    config.data.sim_sizes = (4096, 16, _TEST.value)
    config.data.image_size = _SIZE.value
    config.data.sim_downsample = _DOWNSAMPLE.value
    config.data.sim_turn_probability = _TURN.value
    config.train.batch_size = _BATCH.value
    config.train.num_steps = _STEPS.value
    config.train.learning_rate = _LR.value
    config.train.log_every_steps = 50
    config.train.eval_every_steps = 10**9
    config.train.checkpoint_every_steps = 500
    config.train.evaluate_test = False
    config.eval.batch_size = 16
    return config


def workdir(run: str) -> str:
    return os.path.join(_WORKDIR.value, run)


def test_nll_per_batch(run: str, shuffle_test_actions: bool) -> list:
    """Test NLL (nats/dim) per test batch of the newest checkpoint of `run`."""
    config = make_config(shuffle_test_actions)
    module = train.build_module(config)
    _, variables, _ = ckpt.load_checkpoint(workdir(run))
    mesh = train.make_mesh()
    params = train.replicate(variables['params'], mesh)
    eval_step = train.make_eval_step(config, module, mesh)
    per_batch = []
    for batch in input_pipeline.eval_batches(config, input_pipeline.eval_source(config, 'test')):
        total, count = eval_step(params, train.shard_batch(batch, mesh))
        per_batch.append(float(total) / float(count))
    return per_batch


def main(argv):
    del argv
    # Both runs compile the same step (only the data differ): compile it once.
    jax.config.update('jax_compilation_cache_dir', os.path.join(_WORKDIR.value, 'xla_cache'))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    for run in _RUNS.value:
        if run not in ('true', 'shuffled'):
            raise app.UsageError(f'--runs takes true and/or shuffled; got {run!r}.')
        start = time.time()
        summary = train.train_and_evaluate(make_config(run == 'shuffled'), workdir(run))
        print(
            f'{run}: step {summary["step"]}, final train loss {summary["train_loss"]:.4f} '
            f'nats/dim, {time.time() - start:.0f} s this call',
            flush=True)
    if len(_RUNS.value) == 1:
        return  # One of two parallel trainings; compare with --runs= afterwards.
    rows = {
        'true model, true test actions': test_nll_per_batch('true', False),
        'true model, shuffled test actions': test_nll_per_batch('true', True),
        'shuffled model': test_nll_per_batch('shuffled', True),
    }
    base = np.asarray(rows['true model, true test actions'])
    print(f'PushSim, cpu_sim model, {_STEPS.value} steps x batch {_BATCH.value}, '
          f'{_FRAMES.value}-frame {_SIZE.value}x{_SIZE.value} sequences (2 context), '
          f'{_TEST.value} test sequences, turn probability {_TURN.value}; '
          f'{jax.device_count()} {jax.devices()[0].platform} device(s)')
    result = {'steps': _STEPS.value, 'rows': {}}
    for name, per_batch in rows.items():
        diff = np.asarray(per_batch) - base
        sem = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float('nan')
        line = f'  {name:<36} {np.mean(per_batch):.4f} nats/dim'
        if name != 'true model, true test actions':
            line += f'  (+{diff.mean():.4f} +- {sem:.4f} over the true-action model)'
        print(line)
        result['rows'][name] = {
            'nll': float(np.mean(per_batch)),
            'per_batch': per_batch,
            'minus_true': float(diff.mean()),
            'sem': sem
        }
    with open(os.path.join(_WORKDIR.value, 'result.json'), 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=2)


if __name__ == '__main__':
    app.run(main)
