"""The train step's figures that the benchmarks share: FLOPs, abstract inputs, matmul rates.

`benchmarks/train_throughput.py` (throughput against a matmul), `benchmarks/memory_plan.py`
(XLA's memory estimate) and `benchmarks/gpu_check.py` (the device script) import these; the
module defines no flags, so that each script keeps its own.
"""

import functools
import time
from typing import Any, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from vpn_jax import configs
from vpn_jax.training import train


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
    compiled count leaves out the convolutions and matmuls it hands to cuDNN and cuBLAS (almost
    all of the step's work), and its count before optimisation is not available, so on other
    platforms the same step is lowered for the host CPU and XLA:CPU's count before optimisation
    is used (slightly below the compiled count: fusion rewrites). That count has the CPU's masked kernel gradients, which skip the dead taps; cuDNN
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
             matmul_size: int = 2048,
             config=None) -> dict:
    """Compiles, counts and times one case on all local devices.

    case: EXPERIMENT:VARIANT:BATCH (BATCH global); `config`, when given, replaces the
    experiment's config (BATCH and the levers still apply, `frames` does not). Returns the step
    time (best and mean of `steps` after a warm-up), sequences/s, XLA's FLOPs (`xla_flops`) and
    FLOP/s, and their fraction of an n x n matmul in `dtype` (n = matmul_size): 'fraction'
    against the fastest single matmul, 'matched_fraction' against back-to-back matmuls run for
    as long as each step (median).
    """
    if config is None:
        config = case_config(case,
                             frames=frames,
                             remat=remat,
                             dtype=dtype,
                             microbatches=microbatches)
    else:
        config = config.copy_and_resolve_references()
        config.train.batch_size = int(case.split(':')[2])
        config.model.update(remat=remat, dtype=dtype)
        config.train.microbatches = microbatches
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


# ------------------------------------------------------------------------ memory plan

GB = 1e9
GIB = 2**30


def smoke_config():
    """A model small enough that each combination compiles in a few seconds on a CPU."""
    config = configs.load_config('experiments/moving_mnist.py:cpu')
    m = config.model
    m.channels, m.lstm_channels, m.top_channels = 4, 4, 4
    m.encoder_blocks, m.decoder_blocks, m.encoder_dilations = 1, 1, (1, )
    config.data.image_size = 8
    config.data.num_frames, config.data.num_context = 3, 1
    return config


def with_levers(config, *, batch: int, dtype: str, remat: str, microbatches: int):
    """A copy of `config` at per-device batch `batch` with the given levers."""
    config = config.copy_and_resolve_references()
    config.train.batch_size = batch
    config.model.dtype = dtype
    config.model.remat = remat
    config.train.microbatches = microbatches
    return config


def residual_bytes(config, module, batch: int) -> int:
    """Bytes that autodiff keeps from the loss's forward pass for its backward pass, for
    `batch` sequences: the arrays held by `jax.vjp`'s function, as traced (`jax.eval_shape`;
    nothing is compiled or allocated).

    The activation memory of one micro-batch as JAX's remat policy leaves it, before XLA fuses
    anything: XLA may recompute cheap element-wise residuals inside its fusions instead of
    storing them, so a GPU can need less; XLA:CPU's buffer assignment keeps more.
    """
    num_context = train.train_num_context(config)
    params = jax.eval_shape(
        lambda: train.create_train_state(config, module, jax.random.key(0))).params
    shapes = {k: v.shape[1:] for k, v in synthetic_batch(config).items()}
    dtypes = {'video': jnp.uint8, 'actions': jnp.float32, 'states': jnp.float32}
    inputs = [
        jax.ShapeDtypeStruct((batch, ) + shapes[k], dtypes[k]) if k in shapes else None
        for k in ('video', 'actions', 'states')
    ]

    def vjp_fn(p, v, a, s):
        loss = lambda q: train.sequence_nll(module, q, v, a, s, num_context).mean()
        return jax.vjp(loss, p)[1]

    vjp = jax.eval_shape(vjp_fn, params, *inputs)
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(vjp)))


def plan_row(config,
             *,
             batch: int,
             dtype: str,
             remat: str,
             microbatches: int,
             device: Optional[Any] = None,
             flops: bool = True,
             compile_step: bool = True) -> Dict[str, Any]:
    """XLA's memory figures (bytes), JAX's residuals and the FLOPs of one combination.

    Returns {'batch', 'dtype', 'remat', 'microbatches', 'residual_bytes' (`residual_bytes` of
    one micro-batch), 'argument_bytes', 'output_bytes', 'alias_bytes', 'temp_bytes',
    'peak_bytes' (arguments + outputs - aliased + temporaries), 'xla_peak_bytes',
    'flops_per_sequence' (None without `flops`), 'compile_s', 'platform'}, the step compiled
    for `device` (without `compile_step`: the levers and 'residual_bytes' only); an error gives
    {'error': message} with the levers.
    """
    row = dict(batch=batch, dtype=dtype, remat=remat, microbatches=microbatches)
    config = with_levers(config, batch=batch, dtype=dtype, remat=remat, microbatches=microbatches)
    device = device or jax.devices()[0]
    try:
        mesh = train.make_mesh([device])
        module = train.build_module(config)
        if batch % microbatches:
            raise ValueError(f'batch {batch} does not split into {microbatches} micro-batches')
        row['residual_bytes'] = residual_bytes(config, module, batch // microbatches)
        if not compile_step:
            return row
        state, batch_spec = abstract_inputs(config, module, mesh)
        start = time.perf_counter()
        compiled = train.make_train_step(config, module, mesh).lower(state, batch_spec).compile()
        row['compile_s'] = time.perf_counter() - start
        m = compiled.memory_analysis()
        row.update(argument_bytes=int(m.argument_size_in_bytes),
                   output_bytes=int(m.output_size_in_bytes),
                   alias_bytes=int(m.alias_size_in_bytes),
                   temp_bytes=int(m.temp_size_in_bytes),
                   platform=device.platform)
        row['peak_bytes'] = (row['argument_bytes'] + row['output_bytes'] - row['alias_bytes'] +
                             row['temp_bytes'])
        row['xla_peak_bytes'] = int(getattr(m, 'peak_memory_in_bytes', 0))
        row['flops_per_sequence'] = (xla_flops(config, module, compiled) / batch if flops else None)
    except Exception as e:  # pylint: disable=broad-except
        row['error'] = f'{type(e).__name__}: {str(e)[:300]}'
    return row


def state_and_residuals(row: Dict[str, Any]) -> int:
    """JAX's estimate of the step's memory: the arguments (train state and batch, updated in
    place) plus one micro-batch's residuals."""
    return row['argument_bytes'] + row['residual_bytes']


def fits(row: Dict[str, Any], budget_gb: float) -> str:
    """'XLA / JAX': whether XLA's peak, and `state_and_residuals`, fit `budget_gb` GB."""
    if 'error' in row or 'peak_bytes' not in row:
        return ''
    yes = lambda x: 'yes' if x <= budget_gb * GB else 'no'
    return f'{yes(row["peak_bytes"])} / {yes(state_and_residuals(row))}'


def format_table(rows: Sequence[Dict[str, Any]], budgets_gb: Sequence[float]) -> str:
    """The rows as one markdown table (GiB, GFLOP per sequence, fits per budget)."""
    head = [
        'per-device batch', 'dtype', 'remat', 'micro-batches', 'arguments', 'temporaries',
        'peak (XLA)', 'residuals (JAX)', 'arguments + residuals', 'GFLOP/seq'
    ] + [f'fits {b:g} GB (XLA / JAX)' for b in budgets_gb]
    lines = [
        '| ' + ' | '.join(head) + ' |',
        '| ' + ' | '.join(['---'] * 4 + ['---:'] * (len(head) - 4)) + ' |'
    ]
    gib = lambda x: f'{x / GIB:.2f} GiB' if x >= GIB / 10 else f'{x / 2**20:.2f} MiB'
    for r in rows:
        cells = [str(r['batch']), r['dtype'], r['remat'], str(r['microbatches'])]
        if 'error' in r:
            cells += [r['error'].replace('|', '/')] + [''] * (len(head) - 5)
        else:
            flops = r.get('flops_per_sequence')
            cells += [
                gib(r[k]) for k in ('argument_bytes', 'temp_bytes', 'peak_bytes', 'residual_bytes')
            ]
            gflop = '' if not flops else (
                f'{flops / 1e9:,.0f}' if flops >= 1e11 else f'{flops / 1e9:.3g}')
            cells += [gib(state_and_residuals(r)), gflop]
            cells += [fits(r, b) for b in budgets_gb]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
