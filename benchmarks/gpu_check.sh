#!/usr/bin/env bash
# Everything a lent GPU should measure, in one run of at most 8 minutes (benchmarks/gpu_check.py
# says what each stage does). Writes <out>/gpu_check.json (after every stage) and gpu_check.md.
#
#   benchmarks/gpu_check.sh --out=/tmp/gpu_check          # on the device
#   benchmarks/gpu_check.sh --smoke --out=/tmp/gpu_smoke  # the same path on the CPU, tiny shapes
#
# Any other flag goes to gpu_check.py (e.g. --batches=16,32 --peak_tflops=989.4). PYTHON picks
# the interpreter (default: .venv/bin/python if there is one, else python3). Each stage runs in
# its own process under its own timeout, so that a crash or a hang in one keeps the others.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
out=/tmp/gpu_check
smoke=0
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    --out=*) out=${arg#--out=} ;;
  esac
done
# Seconds per stage: the budget gpu_check.py keeps to (STAGE_SECONDS), then the hard stop.
declare -A budget=([device]=10 [plan]=120 [throughput]=150 [profile]=45 [train]=90)
grace=25
if [ "$smoke" = 1 ]; then
  # The CPU, whatever is installed. The stages run in full whatever their budget: seven small
  # compilations in five processes, about 2 CPU-minutes; the timeouts allow for a loaded CI.
  export JAX_PLATFORMS=cpu
  grace=600
fi
# JAX preallocates 75% of a GPU's memory by default: give XLA what the memory plan assumes.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}
mkdir -p "$out"
rm -f "$out/gpu_check.json" "$out/gpu_check.md"
failed=()
for stage in device plan throughput profile train; do
  timeout --signal=INT --kill-after=10 $((budget[$stage] + grace)) \
    "$PYTHON" benchmarks/gpu_check.py --stages="$stage" --budget_s=480 "$@" || failed+=("$stage")
done
cat "$out/gpu_check.md" 2>/dev/null
echo "Wrote $out/gpu_check.json and gpu_check.md; stages that failed: ${failed[*]:-none}."
# On the device every stage's figures count even when one fails; the smoke run must pass whole.
[ "$smoke" = 0 ] || [ ${#failed[@]} = 0 ]
