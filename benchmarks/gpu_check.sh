#!/usr/bin/env bash
# Everything a lent GPU should measure, in one run of at most 8 minutes (benchmarks/gpu_check.py
# says what each stage does). Writes <out>/gpu_check.json (after every stage) and gpu_check.md.
#
#   benchmarks/gpu_check.sh --out=/tmp/gpu_check          # on the device
#   benchmarks/gpu_check.sh --smoke --out=/tmp/gpu_smoke  # the same path on the CPU, tiny shapes
#
# Any other flag goes to gpu_check.py (e.g. --batches=16,32 --peak_tflops=989.4). PYTHON picks
# the interpreter (default: .venv/bin/python if there is one, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
budget=480
grace=60
for arg in "$@"; do
  if [ "$arg" = "--smoke" ]; then
    # The CPU, whatever is installed; a smaller budget; no GPU memory setting needed.
    export JAX_PLATFORMS=cpu
    budget=60
    # Four small compilations; on a loaded 2-core CI machine each can take half a minute.
    grace=300
  fi
done
# JAX preallocates 75% of a GPU's memory by default: give XLA what the memory plan assumes.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}
# The stages keep to their budgets; the timeout only stops a stage that hangs (the JSON written
# so far stays).
exec timeout --signal=INT --kill-after=20 $((budget + grace)) \
  "$PYTHON" benchmarks/gpu_check.py --budget_s="$budget" "$@"
