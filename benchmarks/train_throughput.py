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
FLOPs). The measuring pieces are in benchmarks/step_figures.py, shared with memory_plan.py and
gpu_check.py.
"""

import os

from absl import app
from absl import flags
import jax

from vpn_jax.model.encoder import REMAT_POLICIES
from vpn_jax import xla_cpu

from step_figures import run_case

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
