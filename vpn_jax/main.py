r"""Trains a VPN, evaluates it on the test split and prints the result next to the paper's.

    python -m vpn_jax.main --config=experiments/moving_mnist.py:cpu --workdir=/tmp/vpn_cpu
    python -m vpn_jax.main --config=experiments/moving_mnist.py:vpn_rmb_dilation \
        --workdir=/tmp/mm --config.train.batch_size=16
    python -m vpn_jax.main --config=experiments/moving_mnist.py:cpu_vpn --show_config

Every field of the config can be overridden with --config.FIELD=VALUE; --show_config prints
them all (with the overrides applied, each with its value) and exits.

Restarting with the same --workdir resumes from the newest checkpoint. Multi-host (one process
per host, or several processes on one machine): give every process the same flags plus
--coordinator_address=HOST:PORT --num_processes=N --process_id=I (see WORKSPACE.md).
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from vpn_jax.training import checkpoint
from vpn_jax import console
from vpn_jax.training import results
from vpn_jax import sample_main
from vpn_jax.training import train
from vpn_jax import xla_cpu

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config',
                                None,
                                'Experiment config (path:variant).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and results.')
flags.DEFINE_string('coordinator_address', None, 'Multi-process: HOST:PORT of process 0.')
flags.DEFINE_integer('num_processes', None, 'Multi-process: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-process: this process (0 .. num_processes-1).')
flags.DEFINE_integer(
    'num_sample_videos', 2, 'After training: test sequences to continue (2 samples each) into '
    'WORKDIR/samples/{grid.png,samples.gif}; 0 to skip.')
flags.DEFINE_bool(
    'keep_freed_memory', True, 'glibc malloc keeps freed memory for the next step: faster steps '
    'on the CPU, at the cost of holding the peak (see vpn_jax/xla_cpu/__init__.py).')
flags.DEFINE_bool(
    'show_config', False, 'Print every field of --config (overrides applied) and exit: the '
    'fields that --config.FIELD=VALUE can set. Needs no --workdir.')
flags.mark_flags_as_required(['config'])


def main(argv):
    xla_cpu.configure(keep_freed=FLAGS.keep_freed_memory)  # Before any device is touched.
    console.quiet_unless_asked()  # Orbax's INFO lines would bury the progress bar and results.
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if FLAGS.show_config:
        print(FLAGS.config)
        return
    if not FLAGS.workdir:
        raise app.UsageError('--workdir is required: the directory for checkpoints, metrics and '
                             'results (or --show_config to print the config).')
    if FLAGS.coordinator_address or FLAGS.num_processes:
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                   num_processes=FLAGS.num_processes,
                                   process_id=FLAGS.process_id)
    logging.info('JAX process %d / %d, %d local / %d global devices.', jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())
    config = FLAGS.config
    summary = train.train_and_evaluate(config, FLAGS.workdir)
    if jax.process_index() == 0:
        print(train.describe(summary))
        if 'validation' in summary:
            print(f'validation: {summary["validation"]["nll"]:.4f} {summary["units"]} '
                  f'({summary["validation"]["num_sequences"]} sequences)')
        if 'test' in summary:
            result = dict(summary['test'], step=summary['step'])
            print(results.format_table(config, result, config.data.test_split))
        if FLAGS.num_sample_videos:
            # Continuations of test sequences from the final parameters (vpn_jax.sample).
            module, variables, saved_config = checkpoint.load_checkpoint(FLAGS.workdir)
            grid = sample_main.write_continuations(module,
                                                   variables,
                                                   saved_config,
                                                   os.path.join(FLAGS.workdir, 'samples'),
                                                   num_videos=FLAGS.num_sample_videos,
                                                   num_samples=2)
            print(f'continuations: {grid} and {os.path.dirname(grid)}/samples.gif')


if __name__ == '__main__':
    app.run(main)
