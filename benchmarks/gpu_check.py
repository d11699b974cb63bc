r"""Everything a lent accelerator should measure, in one run: run it through gpu_check.sh.

    benchmarks/gpu_check.sh --out=/tmp/gpu_check          # on the device, at most 8 minutes
    benchmarks/gpu_check.sh --smoke --out=/tmp/gpu_smoke  # the same path on the CPU, tiny shapes

Stages, in order, each with a time budget (`STAGE_SECONDS`, scaled to --budget_s), each run by
gpu_check.sh in its own process (`--stages=NAME`) and each added to `<out>/gpu_check.json` as
soon as it ends, so that an error, a crash or a kill in one stage (a GPU out-of-memory at one
batch size, XLA's autotuner) loses nothing measured in the others; a stage that needs the plan's
choice and finds none uses `DEFAULT_PICKS`:

1. device: kind, platform, versions, the memory XLA may use (`memory_stats()['bytes_limit']`).
2. plan: `step_figures.plan_row` (memory_plan.py's row) on the device for the paper's model
   (bf16, 20 frames) at per-device batches 16, 32 and 64: for each batch the levers of `LEVERS`
   in order, stopping at the first whose peak (XLA's, on the device) fits 90% of the device's
   limit. That choice is "the lever the plan picked".
3. throughput: `step_figures.run_case` at each batch with its picked lever: step time,
   sequences/s, XLA's FLOPs, the fraction of an n x n matmul in the same dtype and process
   (n = 8192) and MFU against --peak_tflops.
4. profile: a `jax.profiler` trace of a few steps at the first batch that ran, reduced to the
   ten operations with the most device time (each with its count, share, and the model part its
   op metadata names: convolution, the MU's gates, transposes, the ConvLSTM...).
5. train: a mid-size Moving MNIST model (c = 64) trained for the rest of the budget on real
   batches: losses, steps/s, sequences/s.

Then `<out>/gpu_check.md`: the same figures as markdown tables. On the device the persistent
compilation cache (`<out>/xla_cache`) makes the throughput stage reuse the plan's compilations
(--smoke leaves it off: its compilations are seconds).
"""

import collections
import glob
import gzip
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, List

from absl import app
from absl import flags
import jax

from vpn_jax import configs
from vpn_jax.data import input_pipeline
from vpn_jax.training import train

import step_figures

STAGE_NAMES = ('device', 'plan', 'throughput', 'profile', 'train')

_OUT = flags.DEFINE_string('out', '/tmp/gpu_check', 'Folder for gpu_check.{json,md} and the trace.')
_SMOKE = flags.DEFINE_bool(
    'smoke', False, 'The tiny model on the CPU: the same stages and files, every stage run '
    'in full (the test suite runs it).')
_BUDGET = flags.DEFINE_float('budget_s', 480.0, 'Seconds for the whole run; the stages\' '
                             'budgets are scaled to it.')
_PEAK_TFLOPS = flags.DEFINE_float('peak_tflops', 989.4, 'Dense bf16 peak for MFU (H100 SXM and '
                                  'H200: 989.4 TFLOP/s).')
_BATCHES = flags.DEFINE_list('batches', ['16', '32', '64'], 'Per-device batches to measure.')
_STAGES = flags.DEFINE_list(
    'stages', list(STAGE_NAMES), 'Stages to run, in order; each adds '
    'its result to <out>/gpu_check.json (gpu_check.sh runs one per process).')

# Levers tried per batch, in order: (remat, micro-batches). Micro-batches first: at a micro-batch
# that fits, they cost no FLOPs (remat 'convs' adds ~0.2%, 'blocks' ~25%).
LEVERS = (('none', 1), ('none', 2), ('none', 4), ('convs', 4), ('blocks', 4), ('blocks', 8))
# Seconds per stage (--budget_s=480); each runs in its own process (gpu_check.sh), so that a
# crash in one (XLA's GPU autotuner has crashed on this step) loses none of the others.
STAGE_SECONDS = {'device': 10, 'plan': 120, 'throughput': 150, 'profile': 45, 'train': 90}
# The levers a stage uses when the plan stage did not pick any (it crashed or ran out of time):
# the micro-batch of 16 sequences that ran without remat on an H100 (WORKSPACE.md).
DEFAULT_PICKS = {
    '16': dict(remat='none', microbatches=1),
    '32': dict(remat='none', microbatches=2),
    '64': dict(remat='none', microbatches=4)
}


def paper_config(smoke: bool):
    """The paper's Moving MNIST model at 20 frames, bf16; --smoke: `step_figures.smoke_config`."""
    if smoke:
        config = step_figures.smoke_config()
        config.model.dtype = 'float32'  # XLA:CPU's bf16 is slow and says nothing here.
        return config
    config = configs.load_config('experiments/moving_mnist.py:vpn_rmb_dilation')
    config.data.num_frames = 20
    config.model.dtype = 'bfloat16'
    return config


def mid_config(smoke: bool):
    """A mid-size Moving MNIST model (c = 64, ConvLSTM 128, 4 + 6 RMBs, 64x64, batch 16, bf16)
    for the training stage; --smoke: the tiny model."""
    config = configs.load_config('experiments/moving_mnist.py:cpu_vpn')
    m = config.model
    if smoke:
        m.channels, m.lstm_channels, m.top_channels = 4, 4, 4
        m.encoder_blocks, m.decoder_blocks, m.encoder_dilations = 1, 1, (1, )
        config.data.image_size, config.data.num_frames = 16, 4
        config.train.batch_size = 2
        return config
    m.channels, m.lstm_channels, m.top_channels = 64, 128, 256
    m.encoder_blocks, m.decoder_blocks, m.encoder_dilations = 4, 6, (1, 2, 4, 8)
    m.dtype = 'bfloat16'
    config.data.image_size = 64
    config.train.batch_size = 16 * jax.device_count()
    return config


class Run:
    """The results so far, written to <out>/gpu_check.json after every stage."""

    def __init__(self, out: str, budget_s: float, smoke: bool = False):
        self.out, self.budget_s, self.start = out, budget_s, time.perf_counter()
        self.smoke = smoke
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, 'gpu_check.json')
        # The earlier stages' results (each stage is its own process).
        self.results: Dict[str, Any] = {'stages': {}}
        if os.path.exists(path):
            with open(path) as f:
                self.results = json.load(f)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def stage(self, name: str, fn: Callable[[float], Any]) -> None:
        """Runs fn(deadline) with this stage's budget; records its result or its error."""
        budget = STAGE_SECONDS[name] / sum(STAGE_SECONDS.values()) * self.budget_s
        start = time.perf_counter()
        deadline = start + budget
        if self.smoke:  # Every stage runs in full: the smoke run is there to exercise them all.
            deadline = float('inf')
        print(f'[{self.elapsed():6.1f} s] {name} (budget {budget:.0f} s)', flush=True)
        try:
            self.results[name] = fn(deadline)
            status = 'ok'
        except Exception as e:  # pylint: disable=broad-except
            traceback.print_exc()
            self.results[name] = {'error': f'{type(e).__name__}: {str(e)[:1000]}'}
            status = 'error'
        self.results['stages'][name] = {'status': status, 'seconds': time.perf_counter() - start}
        self.write()

    def write(self) -> None:
        with open(os.path.join(self.out, 'gpu_check.json'), 'w') as f:
            json.dump(self.results, f, indent=1, default=str)


def device_stage(deadline: float) -> Dict[str, Any]:
    del deadline
    d = jax.devices()[0]
    stats = d.memory_stats() if hasattr(d, 'memory_stats') else None
    return dict(kind=d.device_kind,
                platform=d.platform,
                count=jax.device_count(),
                jax=jax.__version__,
                bytes_limit=(stats or {}).get('bytes_limit'),
                xla_python_client_mem_fraction=os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION'),
                xla_flags=os.environ.get('XLA_FLAGS'))


def plan_stage(config, batches: List[int], limit_bytes: float, deadline: float) -> Dict[str, Any]:
    """For each batch, LEVERS in order until one fits 90% of the device; every row tried.

    A lever whose micro-batch is at least one that did not fit under the same remat policy is
    skipped without compiling (each compilation of the paper's step takes a while).
    """
    rows, picked, too_big = [], {}, {}
    for b in batches:
        for remat, m in LEVERS:
            if time.perf_counter() > deadline:
                return dict(rows=rows, picked=picked, stopped='budget')
            if b % m or b // m >= too_big.get(remat, float('inf')):
                continue
            # FLOPs come with the throughput stage (on a GPU they need a CPU lowering).
            row = step_figures.plan_row(config,
                                        batch=b,
                                        dtype=config.model.dtype,
                                        remat=remat,
                                        microbatches=m,
                                        flops=False)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if 'error' not in row and row['peak_bytes'] <= 0.9 * limit_bytes:
                picked[str(b)] = dict(remat=remat, microbatches=m)
                break
            too_big[remat] = min(too_big.get(remat, float('inf')), b // m)
    return dict(rows=rows, picked=picked, limit_bytes=limit_bytes)


def throughput_stage(picked: Dict[str, Dict[str, Any]], smoke: bool,
                     deadline: float) -> Dict[str, Any]:
    rows = []
    for b, lever in picked.items():
        if time.perf_counter() > deadline:
            rows.append({'batch': int(b), 'error': 'skipped: stage budget spent'})
            continue
        variant = 'cpu' if smoke else 'vpn_rmb_dilation'
        case = f'moving_mnist:{variant}:{int(b) * jax.device_count()}'
        try:
            r = step_figures.run_case(case,
                                      frames=3 if smoke else 20,
                                      dtype='float32' if smoke else 'bfloat16',
                                      steps=1 if smoke else 3,
                                      matmul_size=256 if smoke else 8192,
                                      config=paper_config(smoke) if smoke else None,
                                      **lever)
            r.update(batch=int(b), mfu=r['flops_per_s'] / (_PEAK_TFLOPS.value * 1e12), **lever)
        except Exception as e:  # pylint: disable=broad-except
            r = {'batch': int(b), 'error': f'{type(e).__name__}: {str(e)[:500]}', **lever}
        rows.append(r)
        print(json.dumps(r, default=str), flush=True)
    return {'rows': rows, 'peak_tflops': _PEAK_TFLOPS.value}


def top_operations(trace_dir: str, n: int = 10) -> Dict[str, Any]:
    """The n operations with the most time in the newest perfetto trace under trace_dir.

    Reads `*.trace.json.gz` (Chrome trace format, written by `jax.profiler.trace(...,
    create_perfetto_trace=True)`): complete events ('ph' == 'X') summed per name. On a GPU only
    the device's processes count (names with 'GPU' or 'gpu' or 'stream'); on the CPU, XLA's
    operations (not Python's frames, nor the runtime's events that wrap them). Each operation is labelled with the model part
    its op metadata names (see `model_part`).
    """
    files = sorted(glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True),
                   key=os.path.getmtime)
    if not files:
        raise FileNotFoundError(f'No *.trace.json.gz under {trace_dir}.')
    with gzip.open(files[-1], 'rt') as f:
        trace = json.load(f)
    events = trace['traceEvents'] if isinstance(trace, dict) else trace
    names = {}
    for e in events:
        if e.get('ph') == 'M' and e.get('name') == 'process_name':
            names[e['pid']] = str(e.get('args', {}).get('name', ''))
    device_pids = {
        p
        for p, name in names.items()
        if 'gpu' in name.lower() or 'stream' in name.lower() or 'tpu' in name.lower()
    }
    total, count, part = collections.Counter(), collections.Counter(), {}
    for e in events:
        if e.get('ph') != 'X' or 'dur' not in e:
            continue
        if device_pids and e.get('pid') not in device_pids:
            continue
        name = str(e.get('name', ''))
        if not device_pids and (name.startswith('$') or 'python' in name.lower() or '::' in name
                                or name.startswith('PjitFunction')):
            continue  # The host's Python frames and the runtime's wrappers around the ops.
        total[name] += float(e['dur'])
        count[name] += 1
        part.setdefault(name, model_part(name, e.get('args', {})))
    whole = sum(total.values()) or 1.0
    return dict(file=os.path.relpath(files[-1], trace_dir),
                device_processes=sorted(names[p] for p in device_pids),
                total_us=whole,
                top=[
                    dict(name=k, us=v, share=v / whole, count=count[k], part=part[k])
                    for k, v in total.most_common(n)
                ])


def model_part(name: str, args: Dict[str, Any]) -> str:
    """The model part an operation belongs to, from its name and op metadata (best effort)."""
    text = (name + ' ' + ' '.join(str(v) for v in args.values())).lower()
    for key, label in (('lstm', 'ConvLSTM'), ('gates', 'MU gates'), ('transpose', 'transpose'),
                       ('conv', 'convolution'), ('gemm', 'matmul'), ('dot', 'matmul'),
                       ('rmsprop', 'optimiser'), ('fusion', 'fusion (element-wise)')):
        if key in text:
            return label
    return ''


def profile_stage(picked: Dict[str, Dict[str, Any]], smoke: bool, out: str,
                  deadline: float) -> Dict[str, Any]:
    """A trace of 2 steps at the first picked batch, reduced by `top_operations`."""
    del deadline  # One compile (a cache hit) and three steps.
    if not picked:
        raise RuntimeError('No batch fitted in the plan stage: nothing to profile.')
    b, lever = next(iter(picked.items()))
    config = paper_config(smoke)
    config = step_figures.with_levers(config,
                                      batch=int(b) * jax.device_count(),
                                      dtype=config.model.dtype,
                                      **lever)
    mesh = train.make_mesh()
    module = train.build_module(config)
    state = train.replicate(train.create_train_state(config, module, jax.random.key(0)), mesh)
    batch = train.shard_batch(step_figures.synthetic_batch(config), mesh)
    step = train.make_train_step(config, module, mesh)
    state, metrics = step(state, batch)  # Compile and warm up outside the trace.
    jax.block_until_ready(metrics)
    trace_dir = os.path.join(out, 'trace')
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(2):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
    result = top_operations(trace_dir)
    result.update(batch=int(b), **lever)
    return result


def train_stage(smoke: bool, deadline: float) -> Dict[str, Any]:
    """Trains the mid-size model on real Moving MNIST batches until the deadline."""
    config = mid_config(smoke)
    mesh = train.make_mesh()
    module = train.build_module(config)  # No check_data: only training batches are read.
    state = train.replicate(train.create_train_state(config, module, jax.random.key(0)), mesh)
    step = train.make_train_step(config, module, mesh)
    source = input_pipeline.train_source(config)
    losses, start, n = [], time.perf_counter(), 0
    first_step_s = None
    while True:
        batch = input_pipeline.train_batch(config, source, n)
        state, metrics = step(state, train.shard_batch(batch, mesh))
        losses.append(float(metrics['loss']))  # Waits for the step.
        n += 1
        if first_step_s is None:
            first_step_s, start = time.perf_counter() - start, time.perf_counter()
        done = n >= 4 if smoke else n >= 2 and time.perf_counter() > deadline - 2
        if done:
            break
    seconds = time.perf_counter() - start
    steps = max(n - 1, 1)
    every = max(1, len(losses) // 20)
    return dict(model={
        k: config.model[k]
        for k in ('channels', 'lstm_channels', 'encoder_blocks', 'decoder_blocks', 'dtype')
    },
                batch_size=config.train.batch_size,
                frames=config.data.num_frames,
                steps=n,
                first_step_s=first_step_s,
                steps_per_s=steps / seconds,
                sequences_per_s=steps * config.train.batch_size / seconds,
                loss_first=losses[0],
                loss_last=losses[-1],
                losses=losses[::every],
                units=train.units(module))


def markdown(results: Dict[str, Any]) -> str:
    """The JSON's figures as markdown (device line, plan table, throughput, profile, training)."""
    lines = ['# gpu_check', '']
    d = results.get('device', {})
    lines.append(f"Device: {d.get('kind')} ({d.get('platform')}) x{d.get('count')}, jax "
                 f"{d.get('jax')}, bytes_limit {d.get('bytes_limit')}.")
    plan = results.get('plan', {})
    if plan.get('rows'):
        lines += [
            '', '## Memory plan (XLA, this device)', '',
            step_figures.format_table(plan['rows'], [plan['limit_bytes'] / 1e9])
        ]
    tp = results.get('throughput', {})
    if tp.get('rows'):
        lines += [
            '', '## Train step', '',
            '| batch | remat | micro-batches | step | seq/s | GFLOP/seq | TFLOP/s | of '
            'matmul | MFU |', '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
        ]
        for r in tp['rows']:
            if 'error' in r:
                lines.append(f"| {r['batch']} | {r.get('remat', '')} | {r.get('microbatches', '')}"
                             f" | {r['error'][:120].replace('|', '/')} | | | | | |")
                continue
            lines.append(f"| {r['batch']} | {r['remat']} | {r['microbatches']} | "
                         f"{r['step_s']:.3f} s | {r['sequences_per_s']:.1f} | "
                         f"{r['flops_per_sequence'] / 1e9:,.1f} | {r['flops_per_s'] / 1e12:.1f} | "
                         f"{100 * r['fraction']:.0f}% ({r['matmul_flops_per_s'] / 1e12:.0f}) | "
                         f"{100 * r['mfu']:.1f}% |")
    prof = results.get('profile', {})
    if prof.get('top'):
        lines += [
            '', f"## Ten most expensive operations (batch {prof.get('batch')})", '',
            '| operation | part | time | share | count |', '| --- | --- | ---: | ---: | ---: |'
        ]
        for t in prof['top']:
            lines.append(f"| `{t['name'][:80]}` | {t['part']} | {t['us'] / 1e3:.1f} ms | "
                         f"{100 * t['share']:.1f}% | {t['count']} |")
    tr = results.get('train', {})
    if 'steps' in tr:
        lines += [
            '', '## Training, mid-size Moving MNIST', '',
            f"{tr['model']}, batch {tr['batch_size']}, {tr['frames']} frames: {tr['steps']} "
            f"steps, {tr['steps_per_s']:.2f} steps/s, {tr['sequences_per_s']:.1f} seq/s; "
            f"loss {tr['loss_first']:.2f} -> {tr['loss_last']:.2f} {tr['units']}."
        ]
    errors = {k: v['error'] for k, v in results.items() if isinstance(v, dict) and 'error' in v}
    errors.update({
        k: 'did not finish (its process crashed or timed out; see the log)'
        for k in STAGE_NAMES if k not in results.get('stages', {})
    })
    if errors:
        lines += ['', '## Errors', ''] + [f'- {k}: {v}' for k, v in errors.items()]
    return '\n'.join(lines) + '\n'


def main(argv):
    del argv
    smoke, out = _SMOKE.value, _OUT.value
    run = Run(out, _BUDGET.value, smoke)
    if not smoke:  # The plan's compilations, reused by the later stages (GPU only).
        jax.config.update('jax_compilation_cache_dir', os.path.join(out, 'xla_cache'))
        jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    config = paper_config(smoke)
    batches = [2] if smoke else [int(b) for b in _BATCHES.value]
    picked = run.results.get(
        'plan', {}).get('picked') or ({
            '2': dict(remat='none', microbatches=1)
        } if smoke else {
            str(b): DEFAULT_PICKS.get(str(b), DEFAULT_PICKS['64'])
            for b in batches
        })
    limit = run.results.get('device', {}).get('bytes_limit') or 80e9
    stages = {
        'device': device_stage,
        'plan': lambda dl: plan_stage(config, batches, limit, dl),
        'throughput': lambda dl: throughput_stage(picked, smoke, dl),
        'profile': lambda dl: profile_stage(picked, smoke, out, dl),
        'train': lambda dl: train_stage(smoke, dl),
    }
    for name in _STAGES.value:
        run.stage(name, stages[name])
    with open(os.path.join(out, 'gpu_check.md'), 'w') as f:
        f.write(markdown(run.results))
    failed = [k for k in _STAGES.value if run.results['stages'][k]['status'] != 'ok']
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    app.run(main)
