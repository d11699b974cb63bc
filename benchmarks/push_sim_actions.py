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
with a standard error over the (paired) test batches. Each NLL is also split into the part from
the pixels that differ from the previous frame (where the gripper and the blocks it pushes
moved: only there can the actions help) and the part from the static pixels.

Training resumes from each run's checkpoint (`WORKDIR/true`, `WORKDIR/shuffled`), so a larger
--steps continues a finished run. To fit 2 CPU cores: 16x16 frames (the 64x64 PushSim frames
area-downsampled by 4, so the whole scene stays in view), 6-frame sequences (2 context + 4
predicted), a small batch and a larger learning rate than the paper's. PushSim's commands are
redrawn every step (--turn_probability=1), so the gripper's motion cannot be guessed from the
context frames: only the actions tell where it goes. All sequences share one grey floor
(--norandom_floor is the default here; PushSim's own default draws a floor colour per sequence):
with a random floor a CPU-sized model spends thousands of steps learning to copy each sequence's
exact floor values, and that static part, not the motion, decides which model is ahead
(WORKSPACE.md, "PushSim: does the action-conditioned VPN use its actions?"). Repeat with
--seed=1, 2, ... (and another --workdir) for the spread over seeds.
"""

import json
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vpn_jax.training import checkpoint as ckpt
from vpn_jax import configs
from vpn_jax.data import input_pipeline
from vpn_jax import xla_cpu
from vpn_jax.training import train

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
_RANDOM_FLOOR = flags.DEFINE_bool(
    'random_floor', False, 'A random floor colour per sequence (PushSim\'s default) instead of '
    'one grey floor; a fixed floor leaves less NLL in the static pixels.')
_SEED = flags.DEFINE_integer('seed', 0, 'Training seed (parameters and batches).')
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
    config.data.sim_random_floor = _RANDOM_FLOOR.value
    config.train.seed = _SEED.value
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


def test_nll_per_batch(run: str, shuffle_test_actions: bool) -> dict:
    """Test NLL of the newest checkpoint of `run`, per test batch, in nats/dim.

    Returns {'all': [...], 'changed': [...], 'static': [...]}: the mean over all predicted
    sub-pixels, and its two parts, the summed NLL of the sub-pixels of pixels that differ from
    the previous frame (what the gripper moved), and of the others, each divided by the number of
    all predicted sub-pixels (so 'changed' + 'static' == 'all').
    """
    config = make_config(shuffle_test_actions)
    module = train.build_module(config)
    _, variables, _ = ckpt.load_checkpoint(workdir(run))
    num_context = config.data.num_context

    @jax.jit
    def split_nll(params, video, actions, states):
        logits = module.apply({'params': params}, video, actions, states)
        target = video[:, 1:].astype(jnp.int32)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, target)[:, num_context - 1:]
        frames = video[:, num_context - 1:]
        changed = jnp.any(frames[:, 1:] != frames[:, :-1], axis=-1, keepdims=True)
        changed = jnp.broadcast_to(changed, nll.shape)
        return (jnp.sum(nll) / nll.size, jnp.sum(jnp.where(changed, nll, 0.0)) / nll.size,
                jnp.sum(jnp.where(changed, 0.0, nll)) / nll.size)

    per_batch = {'all': [], 'changed': [], 'static': []}
    for batch in input_pipeline.eval_batches(config, input_pipeline.eval_source(config, 'test')):
        if not np.all(batch['mask']):
            raise ValueError('Use a number of test sequences divisible by the eval batch size.')
        parts = split_nll(variables['params'], *input_pipeline.model_args(batch))
        for name, value in zip(('all', 'changed', 'static'), parts):
            per_batch[name].append(float(value))
    return per_batch


def main(argv):
    del argv
    xla_cpu.configure()
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
    base = {k: np.asarray(v) for k, v in rows['true model, true test actions'].items()}
    print(f'PushSim, cpu_sim model, {_STEPS.value} steps x batch {_BATCH.value}, '
          f'{_FRAMES.value}-frame {_SIZE.value}x{_SIZE.value} sequences (2 context), '
          f'{_TEST.value} test sequences, turn probability {_TURN.value}, '
          f'{"random" if _RANDOM_FLOOR.value else "fixed"} floor, seed {_SEED.value}; '
          f'{jax.device_count()} {jax.devices()[0].platform} device(s)')
    print('  nats/dim over the predicted frames: all = changed pixels + static pixels '
          '(difference to the first row +- standard error over paired test batches)')
    result = {'steps': _STEPS.value, 'seed': _SEED.value, 'rows': {}}
    for name, parts in rows.items():
        line = f'  {name:<34}'
        result['rows'][name] = {}
        for part, per_batch in parts.items():
            diff = np.asarray(per_batch) - base[part]
            sem = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float('nan')
            line += f' {part} {np.mean(per_batch):.4f}'
            if name != 'true model, true test actions':
                line += f' ({diff.mean():+.4f} +- {sem:.4f})'
            result['rows'][name][part] = {
                'nll': float(np.mean(per_batch)),
                'per_batch': per_batch,
                'minus_true': float(diff.mean()),
                'sem': sem
            }
        print(line)
    with open(os.path.join(_WORKDIR.value, 'result.json'), 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=2)


if __name__ == '__main__':
    app.run(main)
