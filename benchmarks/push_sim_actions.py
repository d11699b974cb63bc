r"""Does the action-conditioned VPN use its actions? PushSim, true vs shuffled actions.

    python benchmarks/push_sim_actions.py [--steps=80] [--workdir=/tmp/push_sim_actions]

Trains the `cpu_sim` model of experiments/robotic_pushing.py twice with the same seed, steps and
batches: once with the true actions, once with each sequence's actions replaced by those of
another sequence of its batch (`data.shuffle_actions`, in training and evaluation). Context
states are true in both. Then evaluates both on the same PushSim test sequences, in nats/dim
over the predicted frames. A model that uses its actions reaches a clearly lower NLL with the
true ones. Prints both numbers and their difference with a standard error over test batches.

Shorter sequences than the paper's 12 (--frames, default 6: 2 context + 4 predicted), the
central 32x32 crop (--image_size; the gripper is in it part of the time) and a larger learning
rate keep the two runs within about 10 minutes on 2 CPU cores.
"""

import json
import os
import time

from absl import app
from absl import flags
import jax
import numpy as np

from vpn_jax import configs
from vpn_jax import input_pipeline
from vpn_jax import train

_STEPS = flags.DEFINE_integer('steps', 80, 'Training steps per run.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Training batch.')
_FRAMES = flags.DEFINE_integer('frames', 6, 'Frames per training and test sequence.')
_LR = flags.DEFINE_float('learning_rate', 2e-3, 'RMSProp learning rate.')
_TEST = flags.DEFINE_integer('test_sequences', 64, 'PushSim test sequences.')
_SIZE = flags.DEFINE_integer('image_size', 32, 'Central crop of the 64x64 frames.')
_WORKDIR = flags.DEFINE_string('workdir', '/tmp/push_sim_actions', 'Parent of the two workdirs.')


def load_config():
    return configs.load_config('experiments/robotic_pushing.py:cpu_sim')


def run(shuffle: bool) -> dict:
    config = load_config()
    config.data.shuffle_actions = shuffle
    config.data.num_frames = _FRAMES.value
    config.data.eval_num_frames = _FRAMES.value
    config.data.sim_sizes = (4096, 16, _TEST.value)
    config.data.image_size = _SIZE.value
    config.train.batch_size = _BATCH.value
    config.train.num_steps = _STEPS.value
    config.train.learning_rate = _LR.value
    config.train.log_every_steps = 10
    config.train.eval_every_steps = 10**9
    config.train.checkpoint_every_steps = _STEPS.value
    config.train.evaluate_test = False
    config.eval.batch_size = 16
    workdir = os.path.join(_WORKDIR.value, 'shuffled' if shuffle else 'true')
    start = time.time()
    summary = train.train_and_evaluate(config, workdir)
    seconds = time.time() - start
    # Test NLL per batch (for a standard error), with the run's own action treatment.
    module = train.build_module(config)
    from vpn_jax import checkpoint as ckpt
    _, variables, _ = ckpt.load_checkpoint(workdir)
    mesh = train.make_mesh()
    params = train.replicate(variables['params'], mesh)
    eval_step = train.make_eval_step(config, module, mesh)
    per_batch = []
    for batch in input_pipeline.eval_batches(config, input_pipeline.eval_source(config, 'test')):
        total, count = eval_step(params, train.shard_batch(batch, mesh))
        per_batch.append(float(total) / float(count))
    return {
        'actions': 'shuffled' if shuffle else 'true',
        'train_loss': summary['train_loss'],
        'test_nll': float(np.mean(per_batch)),
        'per_batch': per_batch,
        'train_seconds': seconds,
    }


def main(argv):
    del argv
    # The two runs compile the same step (only the data differ): compile it once.
    jax.config.update('jax_compilation_cache_dir', os.path.join(_WORKDIR.value, 'xla_cache'))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    results = [run(False), run(True)]
    true, shuffled = results
    diff = np.asarray(shuffled['per_batch']) - np.asarray(true['per_batch'])
    sem = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float('nan')
    print(f'PushSim, cpu_sim model, {_STEPS.value} steps x batch {_BATCH.value}, '
          f'{_FRAMES.value}-frame {_SIZE.value}x{_SIZE.value} sequences (2 context), '
          f'{_TEST.value} test sequences; '
          f'{jax.device_count()} {jax.devices()[0].platform} device(s)')
    for r in results:
        print(f'  {r["actions"]:>8} actions: test {r["test_nll"]:.4f} nats/dim '
              f'(final train loss {r["train_loss"]:.4f}; {r["train_seconds"]:.0f} s)')
    print(f'  shuffled - true: {diff.mean():.4f} +- {sem:.4f} nats/dim (paired over test '
          f'batches)')
    with open(os.path.join(_WORKDIR.value, 'result.json'), 'w', encoding='utf-8') as f:
        json.dump({'results': results, 'difference': float(diff.mean()), 'sem': sem}, f, indent=2)


if __name__ == '__main__':
    app.run(main)
