r"""What the train step needs in memory, per device, by XLA's own estimate: one table of levers.

    python benchmarks/memory_plan.py --config=experiments/moving_mnist.py:vpn_rmb_dilation \
        --frames=20 --batches=16,32,64 --dtypes=bfloat16 --remats=none,blocks,convs \
        --microbatches=1,4 [--json=plan.json]
    python benchmarks/memory_plan.py --config=... --cases=64:bfloat16:convs:4,16:float32:none:1
    python benchmarks/memory_plan.py --smoke   # the tiny model, seconds (the test suite runs it)

For each combination of per-device batch, compute dtype (`model.dtype`), rematerialisation
policy (`model.remat`) and micro-batches (`train.microbatches`) it lowers and compiles the train
step of `vpn_jax.training.train` for one device of the current backend, from abstract inputs
(`jax.ShapeDtypeStruct`: nothing of the batch's or the parameters' size is allocated), and
prints one table row (`step_figures.plan_row`, `format_table`):

* XLA's figures from `compiled.memory_analysis()`: arguments (train state and batch), outputs,
  the outputs aliased to the donated arguments, temporaries (one allocation, in which buffer
  assignment already overlaps buffers never alive together), and the peak, arguments + outputs
  - aliased + temporaries: what the step holds at once. (XLA's own `peak_memory_in_bytes` goes
  to the JSON as `xla_peak_bytes`; XLA:CPU's is below its temporaries, so the table ignores it.)
* JAX's residuals: what autodiff keeps from one micro-batch's forward pass for the backward
  pass under the remat policy (`step_figures.residual_bytes`, traced, not compiled), and the
  arguments plus those residuals: an estimate independent of any backend's buffer assignment.
* XLA's FLOPs per sequence (`step_figures.xla_flops`: recomputation included), and whether
  each estimate fits each `--budgets_gb`.

XLA:CPU's buffer assignment is not XLA:GPU's (other fusions and schedules, cuDNN and cuBLAS
workspaces), and a GPU process gets only XLA_PYTHON_CLIENT_MEM_FRACTION of the device (75% by
default; gpu_check.sh sets 0.95), so a CPU plan ranks and sizes the levers; only a plan run on
the device says what fits there. On the CPU the script turns XLA:CPU's concurrency-optimised
scheduler off, as vpn_jax.main does: with it on, the temporaries do not depend on the remat
policy at all. The step is the data-parallel one on a one-device mesh: what each device of a
data-parallel run holds at that per-device batch. Current figures: WORKSPACE.md, "GPU: memory
plan".
"""

import itertools
import json
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags
import jax

from vpn_jax import configs
from vpn_jax import xla_cpu

import step_figures

_CONFIG = flags.DEFINE_string('config', 'experiments/moving_mnist.py:vpn_rmb_dilation',
                              'FILE:VARIANT of the experiment config.')
_FRAMES = flags.DEFINE_integer('frames', 20, 'Frames per training sequence (0: the config\'s).')
_BATCHES = flags.DEFINE_list('batches', ['16', '32', '64'], 'Per-device batch sizes.')
_DTYPES = flags.DEFINE_list('dtypes', ['bfloat16'], 'Compute dtypes (model.dtype).')
_REMATS = flags.DEFINE_list('remats', ['none', 'blocks', 'convs'], 'model.remat policies.')
_MICROBATCHES = flags.DEFINE_list('microbatches', ['1', '4'], 'train.microbatches values.')
_CASES = flags.DEFINE_list(
    'cases', [], 'BATCH:DTYPE:REMAT:MICROBATCHES, ...: these combinations instead of the grid '
    'of --batches x --dtypes x --remats x --microbatches.')
_BUDGETS = flags.DEFINE_list('budgets_gb', ['80', '141'],
                             'Device memories to compare the peak with, in GB (10^9 bytes).')
_JSON = flags.DEFINE_string('json', '', 'Also write the rows to this JSON file.')
_SMOKE = flags.DEFINE_bool(
    'smoke', False, 'The tiny model on 8x8 frames: the script\'s path in '
    'seconds (the test suite runs it).')


def combinations(cases: Sequence[str], batches: Sequence[str], dtypes: Sequence[str],
                 remats: Sequence[str], microbatches: Sequence[str]) -> List[tuple]:
    """(batch, dtype, remat, microbatches) tuples: `cases` if given, else the grid."""
    if cases:
        out = []
        for case in cases:
            b, d, r, m = case.split(':')
            out.append((int(b), d, r, int(m)))
        return out
    return [(int(b), d, r, int(m))
            for b, d, r, m in itertools.product(batches, dtypes, remats, microbatches)]


def run(config,
        combos: Sequence[tuple],
        budgets_gb: Sequence[float],
        json_path: str = '',
        flops: bool = True) -> List[Dict[str, Any]]:
    """Plans every combination, printing each row as it is done; returns the rows."""
    rows = []
    for b, d, r, m in combos:
        rows.append(
            step_figures.plan_row(config, batch=b, dtype=d, remat=r, microbatches=m, flops=flops))
        print(json.dumps(rows[-1]), flush=True)
        if json_path:  # After every row: a later failure (or kill) keeps the earlier ones.
            with open(json_path, 'w') as f:
                json.dump(rows, f, indent=1)
    return rows


def main(argv):
    del argv
    # XLA:CPU's default concurrency-optimised scheduler orders for parallelism and leaves the
    # temporaries the same whatever the remat policy; with it off (as vpn_jax.main runs) the
    # buffers follow the policy, as a GPU's do. No effect on other backends.
    xla_cpu.configure_scheduler()
    device = jax.devices()[0]
    if _SMOKE.value:
        config = step_figures.smoke_config()
        combos = [(2, 'float32', 'none', 1), (2, 'float32', 'convs', 2)]
    else:
        config = configs.load_config(_CONFIG.value)
        if _FRAMES.value:
            config.data.num_frames = _FRAMES.value
        combos = combinations(_CASES.value, _BATCHES.value, _DTYPES.value, _REMATS.value,
                              _MICROBATCHES.value)
    budgets = [float(b) for b in _BUDGETS.value]
    print(
        f'{device.device_kind} ({device.platform}); {config.data.num_frames} frames of '
        f'{config.data.image_size}x{config.data.image_size}; jax {jax.__version__}',
        flush=True)
    rows = run(config, combos, budgets, _JSON.value)
    print(step_figures.format_table(rows, budgets))


if __name__ == '__main__':
    app.run(main)
