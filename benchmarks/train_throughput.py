r"""Train-step throughput: sequences/s, XLA's FLOPs per sequence, achieved FLOP/s vs a matmul.

    python benchmarks/train_throughput.py --cases=moving_mnist:cpu:4
    python benchmarks/train_throughput.py --cases=moving_mnist:vpn_rmb_dilation:1 --frames=4 \
        [--remat] [--dtype=bfloat16] [--steps=2]

Each case is EXPERIMENT:VARIANT:BATCH. For each it compiles the data-parallel train step of
vpn_jax.train (all local devices), counts its FLOPs with XLA's cost analysis, times `--steps`
steps after one warm-up step, and reports sequences/s and FLOP/s, the latter as a fraction of a
2048x2048 float32 matmul's FLOP/s measured in the same process just before and after the case.
Best against best: the fastest step against the faster of the two matmul measurements (each the
best of 5), since other processes on a shared machine only ever slow a measurement down; a mean
over a slowed matmul sample once turned 62% into 73%. `--frames` shortens the
sequences (num_context becomes frames // 2) so that the paper-size model fits a 10-minute run on
a 2-core CPU: the fraction of matmul FLOP/s hardly depends on it, FLOPs per sequence do.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from vpn_jax import configs
from vpn_jax import train

_CASES = flags.DEFINE_list('cases', ['moving_mnist:cpu:4'], 'EXPERIMENT:VARIANT:BATCH, ...')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed steps per case (after one warm-up step).')
_FRAMES = flags.DEFINE_integer('frames', 0, 'Frames per sequence (0: the config\'s).')
_REMAT = flags.DEFINE_bool('remat', False, 'Rematerialise residual blocks.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')


def load_config(experiment: str, variant: str):
    """`experiments/<experiment>.py:<variant>`, found from the repository root."""
    return configs.load_config(f'experiments/{experiment}.py:{variant}')


def matmul_flops_per_second(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` FLOP/s of an n x n float32 matmul."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def synthetic_batch(config) -> dict:
    """A training batch of the config's shapes (the values do not change the FLOPs)."""
    rng = np.random.default_rng(0)
    b, t, s = config.train.batch_size, config.data.num_frames, config.data.image_size
    c = config.model.num_colors
    batch = {'video': rng.integers(0, 256, (b, t, s, s, c), dtype=np.uint8)}
    if config.model.action_dim:
        batch['actions'] = rng.standard_normal((b, t, config.model.action_dim)).astype(np.float32)
    if config.model.state_dim:
        batch['states'] = rng.standard_normal(
            (b, config.data.num_context, config.model.state_dim)).astype(np.float32)
    return batch


def run_case(case: str) -> dict:
    experiment, variant, batch_size = case.split(':')
    config = load_config(experiment, variant)
    config.train.batch_size = int(batch_size)
    if _FRAMES.value:
        config.data.num_frames = _FRAMES.value
        config.data.num_context = max(1, _FRAMES.value // 2)
    config.model.remat = _REMAT.value
    config.model.dtype = _DTYPE.value
    mesh = train.make_mesh()
    module = train.build_module(config)
    state = train.replicate(train.create_train_state(config, module, jax.random.key(0)), mesh)
    batch = train.shard_batch(synthetic_batch(config), mesh)
    step = train.make_train_step(config, module, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost['flops'])
    mm_before = matmul_flops_per_second()
    state, metrics = compiled(state, batch)  # Warm-up.
    jax.block_until_ready(metrics)
    step_times = []
    for _ in range(_STEPS.value):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        step_times.append(time.perf_counter() - start)
    # Best against best: other processes on a shared machine only ever slow a measurement down.
    step_s = min(step_times)
    mm_after = matmul_flops_per_second()
    matmul = max(mm_before, mm_after)
    return dict(case=case,
                frames=config.data.num_frames,
                params=sum(x.size for x in jax.tree_util.tree_leaves(state.params)),
                compile_s=compile_s,
                step_s=step_s,
                mean_step_s=float(np.mean(step_times)),
                sequences_per_s=config.train.batch_size / step_s,
                flops_per_sequence=flops / config.train.batch_size,
                flops_per_s=flops / step_s,
                matmul_flops_per_s=matmul,
                matmul_before_after=(mm_before, mm_after),
                fraction=flops / step_s / matmul)


def main(argv):
    del argv
    print(f'{jax.device_count()} {jax.devices()[0].platform} device(s); dtype {_DTYPE.value}, '
          f'remat {_REMAT.value}')
    for case in _CASES.value:
        r = run_case(case)
        print(
            f'{r["case"]} ({r["frames"]} frames, {r["params"]:,} params): compile '
            f'{r["compile_s"]:.1f} s, step {r["step_s"]:.2f} s (best; mean {r["mean_step_s"]:.2f}), '
            f'{r["sequences_per_s"]:.3f} '
            f'seq/s, {r["flops_per_sequence"] / 1e9:.1f} GFLOP/seq (XLA), '
            f'{r["flops_per_s"] / 1e9:.1f} GFLOP/s = {100 * r["fraction"]:.0f}% of the '
            f'2048^2 fp32 matmul ({r["matmul_flops_per_s"] / 1e9:.0f} GFLOP/s; before/after '
            f'{r["matmul_before_after"][0] / 1e9:.0f}/{r["matmul_before_after"][1] / 1e9:.0f})',
            flush=True)


if __name__ == '__main__':
    app.run(main)
