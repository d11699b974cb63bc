"""Tiny experiment configs for the training and evaluation tests (seconds to compile)."""

import os
import subprocess
import sys

import jax
import pytest

from conftest import make_tiny_config
from vpn_jax.configs import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment_config(experiment: str, variant: str):
    """`experiments/<experiment>.py:<variant>` as the config flag would load it."""
    return load_config(os.path.join(ROOT, 'experiments', f'{experiment}.py:{variant}'))


def tiny_experiment(experiment: str = 'moving_mnist',
                    *,
                    steps: int = 4,
                    size: int = 16,
                    frames: int = 4,
                    context: int = 2):
    """A complete experiment config with a toy model, `size`x`size` crops and short sequences.

    Moving MNIST: 'cpu' variant data; pushing: PushSim ('cpu_sim'). No evaluation during
    training and no test evaluation unless a test turns them on.
    """
    if experiment == 'moving_mnist':
        config = experiment_config('moving_mnist', 'cpu')
        model = make_tiny_config(output='sigmoid', num_colors=1)
    else:
        config = experiment_config('robotic_pushing', 'cpu_sim')
        model = make_tiny_config(output='softmax', num_colors=3, action_dim=2, state_dim=2)
        config.data.sim_sizes = (16, 8, 5)
    config.model = model
    config.data.image_size = size
    config.data.num_frames = frames
    config.data.eval_num_frames = frames
    config.data.num_context = context
    t = config.train
    t.batch_size = 4
    t.num_steps = steps
    t.learning_rate = 3e-3
    t.log_every_steps = 1
    t.eval_every_steps = 10_000
    t.checkpoint_every_steps = 10_000
    t.evaluate_test = False
    config.eval.batch_size = 4
    config.eval.viewer_sequences = 0  # The sampler's compilation, only where a test asks.
    return config


@pytest.fixture(autouse=True, scope='module')
def compilation_cache(tmp_path_factory):
    """A persistent XLA cache for one test module (import it into the module to use it).

    Several tests compile the same step more than once (a resumed run, a reloaded model); the
    cache turns the repeats into cache hits. The previous settings are restored afterwards.
    """
    old = (jax.config.jax_compilation_cache_dir,
           jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update('jax_compilation_cache_dir', str(tmp_path_factory.mktemp('xla_cache')))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    yield
    jax.config.update('jax_compilation_cache_dir', old[0])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', old[1])


def run_python(script: str, arg: str, env) -> subprocess.CompletedProcess:
    """Runs `python -c script arg` in the repository root with `env`; asserts it succeeds."""
    proc = subprocess.run([sys.executable, '-c', script, arg],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
