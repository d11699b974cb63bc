r"""Train-step throughput: sequences/s, XLA's FLOPs per sequence, achieved FLOP/s vs a matmul.

    python benchmarks/train_throughput.py --cases=moving_mnist:cpu:4
    python benchmarks/train_throughput.py --cases=moving_mnist:vpn_rmb_dilation:1 --frames=4 \
        [--remat=blocks] [--microbatches=4] [--dtype=bfloat16] [--steps=2]
    python benchmarks/train_throughput.py --cases=moving_mnist:vpn_rmb_dilation:1 --frames=20 \
        --steps=2   # the paper's sequence length
    # On a GPU (H100 SXM: 989.4 TFLOP/s dense bf16):
    python benchmarks/train_throughput.py --cases=moving_mnist:vpn_rmb_dilation:16 \
        --dtype=bfloat16 --matmul_size=8192 --peak_tflops=989.4 --steps=5

Each case is EXPERIMENT:VARIANT:BATCH. For each it compiles the data-parallel train step of
vpn_jax.training.train (all local devices), counts its FLOPs with XLA's cost analysis (see `xla_flops`),
times `--steps` steps after one warm-up step, and reports sequences/s and FLOP/s, the latter as a
fraction of an n x n matmul's FLOP/s (n = `--matmul_size`, in the compute dtype) measured in the
same process, and, given `--peak_tflops`, as MFU. Two fractions, because a shared machine's speed
drifts by +-20% within minutes:

* matched: after each timed step, back-to-back matmuls for as long as that step took; the step's
  FLOP/s over that block's sustained FLOP/s, median over the steps. Both sides then run for the
  same time under the same conditions.
* burst: the fastest step against the fastest single matmul of 5 before and 5 after the case
  (each ~0.1 s on the CPU). A short matmul can catch a quiet moment that a 20-second step cannot,
  so this fraction is the conservative one; it moves by +-10 points with the matmul sample.

`--frames` shortens the sequences (num_context becomes frames // 2) so that the paper-size
model fits a few minutes on a 2-core CPU. Like vpn_jax.main the script makes the XLA:CPU settings
of `vpn_jax.xla_cpu.configure`. Current figures: WORKSPACE.md, "Measured figures".
With `--remat=blocks` the count includes the recomputed forward passes (hardware FLOPs, not model
FLOPs). `run_case` and `xla_flops` are also what benchmarks/gpu_check.py measures with.
"""

import functools
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from vpn_jax import configs
from vpn_jax.model.encoder import REMAT_POLICIES
from vpn_jax.training import train
from vpn_jax import xla_cpu

_CASES = flags.DEFINE_list('cases', ['moving_mnist:cpu:4'], 'EXPERIMENT:VARIANT:BATCH, ...')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed steps per case (after one warm-up step).')
_FRAMES = flags.DEFINE_integer('frames', 0, 'Frames per sequence (0: the config\'s).')
_REMAT = flags.DEFINE_enum('remat', 'none', list(REMAT_POLICIES),
                           'What each residual block keeps for the backward pass (model.remat).')
_MICROBATCHES = flags.DEFINE_integer('microbatches', 1,
                                     'Sequential micro-batches per device (train.microbatches).')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
_CONCURRENCY = flags.DEFINE_bool(
    'xla_cpu_concurrency_scheduler', False, 'XLA:CPU\'s concurrency-optimised scheduler (off '
    'in vpn_jax.main; see vpn_jax/xla_cpu/__init__.py). An XLA_FLAGS setting of it wins.')
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    'keep_freed_memory', True, 'glibc malloc keeps freed memory for the next step (as in '
    'vpn_jax.main; see vpn_jax/xla_cpu/__init__.py); --nokeep_freed_memory for glibc\'s default.')
_MATMUL_SIZE = flags.DEFINE_integer(
    'matmul_size', 2048, 'n of the n x n reference matmul (in the compute dtype); use 8192 on a '
    'GPU, where 2048 does not fill the chip.')
_PEAK_TFLOPS = flags.DEFINE_float(
    'peak_tflops', 0.0, 'The accelerator\'s datasheet peak in TFLOP/s (e.g. 989.4 for an H100 '
    'SXM\'s dense bf16); when set, also prints MFU = achieved FLOP/s / peak.')


def load_config(experiment: str, variant: str):
    """`experiments/<experiment>.py:<variant>`, found from the repository root."""
    return configs.load_config(f'experiments/{experiment}.py:{variant}')


@functools.lru_cache(maxsize=None)
def _matmul(n: int, dtype):
    """A jitted n x n matmul and its operand, compiled and run once (once per n and dtype)."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    return f, a


def matmul_flops_per_second(n: int = 2048, dtype=jnp.float32, repeats: int = 5) -> float:
    """Best-of-`repeats` FLOP/s of an n x n matmul in `dtype` (XLA's default precision)."""
    f, a = _matmul(n, dtype)
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def sustained_matmul_flops_per_second(seconds: float, n: int = 2048, dtype=jnp.float32) -> float:
    """FLOP/s of back-to-back n x n matmuls run for at least `seconds` (total FLOPs / time)."""
    f, a = _matmul(n, dtype)
    count = 0
    start = time.perf_counter()
    while True:
        f(a).block_until_ready()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * n**3 * count / elapsed


def xla_flops(config, module, compiled) -> float:
    """XLA's FLOP count of the train step.

    On the CPU, the compiled module's count (as in every CPU figure in WORKSPACE.md). XLA:GPU's
    compiled count leaves out the convolutions and matmuls it hands to cuDNN and cuBLAS (it
    reported 18.8 GFLOP/sequence for a step that does over 10 TFLOP), and its count before
    optimisation is not available, so on other platforms the same step is lowered for the host
    CPU and XLA:CPU's count before optimisation is used (~2% below the compiled count: fusion
    rewrites). That count has the CPU's masked kernel gradients, which skip the dead taps; cuDNN
    computes those taps too, so the GPU does slightly more work than it is credited with.

    With `train.microbatches` = m the step is a scan over m micro-batches, whose body XLA also
    counts once: the count is multiplied by m (the optimiser update outside the scan, ~10 FLOPs
    per parameter, is then counted m times: negligible).
    """
    if jax.devices()[0].platform == 'cpu':
        cost = compiled.cost_analysis()
    else:
        mesh = train.make_mesh(jax.devices('cpu')[:1])
        state, batch = abstract_inputs(config, module, mesh)
        cost = train.make_train_step(config, module, mesh).lower(state, batch).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost['flops']) * train.train_microbatches(config)
    return flops + uncounted_convlstm_flops(config, module)


def abstract_inputs(config, module, mesh):
    """(state, batch) of the train step as `jax.ShapeDtypeStruct`s placed on `mesh`.

    Enough to lower and compile the step (`make_train_step(...).lower(state, batch)`) without
    allocating the parameters or the batch.
    """
    replicated = NamedSharding(mesh, P())
    split = NamedSharding(mesh, P(train.AXIS))
    state = jax.eval_shape(lambda: train.create_train_state(config, module, jax.random.key(0)))
    state = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)
    batch = {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=split)
        for k, v in synthetic_batch(config).items()
    }
    return state, batch


def uncounted_convlstm_flops(config, module) -> float:
    """FLOPs of the ConvLSTM steps that XLA's count of the train step leaves out.

    The ConvLSTM is a scan, and XLA's cost analysis counts a loop body once: of the T-1 steps of
    the forward and of the backward pass it counts one each. This is the other T-2 steps'
    forward and backward, for the whole batch, from one step's count.
    """
    t, size = config.data.num_frames, config.data.image_size
    encoded = jnp.zeros((config.train.batch_size, 1, size, size, 2 * config.model.channels),
                        module.dtype)
    one_step = lambda p, x: module.apply({'params': p}, x, method=module.contexts)[1].sum()
    with jax.default_device(jax.devices('cpu')[0]):
        state = jax.eval_shape(lambda: train.create_train_state(config, module, jax.random.key(0)))
        cost = jax.jit(jax.grad(one_step, (0, 1))).lower(state.params, encoded).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return (t - 2) * float(cost['flops'])


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


def case_config(case: str,
                *,
                frames: int = 0,
                remat: str = 'none',
                dtype: str = 'float32',
                microbatches: int = 1):
    """The config of EXPERIMENT:VARIANT:BATCH with the given levers (frames 0: the config's)."""
    experiment, variant, batch_size = case.split(':')
    config = load_config(experiment, variant)
    config.train.batch_size = int(batch_size)
    if frames:
        config.data.num_frames = frames
        config.data.num_context = max(1, frames // 2)
    config.model.remat = remat
    config.model.dtype = dtype
    config.train.microbatches = microbatches
    return config


def run_case(case: str,
             *,
             frames: int = 0,
             remat: str = 'none',
             dtype: str = 'float32',
             microbatches: int = 1,
             steps: int = 3,
             matmul_size: int = 2048) -> dict:
    """Compiles, counts and times one case on all local devices (see the module docstring)."""
    config = case_config(case, frames=frames, remat=remat, dtype=dtype, microbatches=microbatches)
    mesh = train.make_mesh()
    module = train.build_module(config)
    state = train.replicate(train.create_train_state(config, module, jax.random.key(0)), mesh)
    batch = train.shard_batch(synthetic_batch(config), mesh)
    step = train.make_train_step(config, module, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    flops = xla_flops(config, module, compiled)
    mm_before = matmul_flops_per_second(matmul_size, dtype)
    state, metrics = compiled(state, batch)  # Warm-up.
    jax.block_until_ready(metrics)
    step_times, matched = [], []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        step_times.append(time.perf_counter() - start)
        sustained = sustained_matmul_flops_per_second(step_times[-1], matmul_size, dtype)
        matched.append(flops / step_times[-1] / sustained)
    step_s = min(step_times)
    mm_after = matmul_flops_per_second(matmul_size, dtype)
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
                fraction=flops / step_s / matmul,
                matched_fractions=matched,
                matched_fraction=float(np.median(matched)))


def main(argv):
    del argv
    kept = xla_cpu.configure(keep_freed=_KEEP_FREED_MEMORY.value,
                             concurrent_scheduler=_CONCURRENCY.value)['keep_freed_memory']
    device = jax.devices()[0]
    print(f'{jax.device_count()} {device.device_kind} ({device.platform}) device(s); '
          f'dtype {_DTYPE.value}, remat {_REMAT.value}, microbatches {_MICROBATCHES.value}; '
          f'XLA_FLAGS={os.environ.get("XLA_FLAGS")}; '
          f'malloc keeps freed memory: {kept}')
    for case in _CASES.value:
        r = run_case(case,
                     frames=_FRAMES.value,
                     remat=_REMAT.value,
                     dtype=_DTYPE.value,
                     microbatches=_MICROBATCHES.value,
                     steps=_STEPS.value,
                     matmul_size=_MATMUL_SIZE.value)
        mfu = ''
        if _PEAK_TFLOPS.value:
            mfu = (f'; MFU {100 * r["flops_per_s"] / (_PEAK_TFLOPS.value * 1e12):.1f}% of '
                   f'{_PEAK_TFLOPS.value:g} TFLOP/s')
        print(
            f'{r["case"]} ({r["frames"]} frames, {r["params"]:,} params): compile '
            f'{r["compile_s"]:.1f} s, step {r["step_s"]:.2f} s (best; mean {r["mean_step_s"]:.2f}), '
            f'{r["sequences_per_s"]:.3f} '
            f'seq/s, {r["flops_per_sequence"] / 1e9:.1f} GFLOP/seq (XLA), '
            f'{r["flops_per_s"] / 1e9:.1f} GFLOP/s; of the {_MATMUL_SIZE.value}^2 '
            f'{_DTYPE.value} matmul: matched {100 * r["matched_fraction"]:.0f}% (per step '
            f'{", ".join(f"{100 * m:.0f}" for m in r["matched_fractions"])}), burst '
            f'{100 * r["fraction"]:.0f}% ({r["matmul_flops_per_s"] / 1e9:.0f} GFLOP/s; before/after '
            f'{r["matmul_before_after"][0] / 1e9:.0f}/{r["matmul_before_after"][1] / 1e9:.0f})' +
            mfu,
            flush=True)


if __name__ == '__main__':
    app.run(main)
