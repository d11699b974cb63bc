#!/usr/bin/env bash
# CPU recipe ablations for Moving MNIST: every case trains for the same wall-clock minutes with
# the same share of the CPU (cases are pinned round-robin to the cores, so N cases on a 2-core
# host get 2/N of a core each), then its newest checkpoint is scored on 128 validation sequences
# (20 frames, 10 context, as the test split is scored).
#
#   bash benchmarks/recipe_ablations.sh OUT MINUTES CASE [CASE ...]
#   python benchmarks/recipe_table.py OUT
set -euo pipefail
out=$1; minutes=$2; shift 2
py=${PYTHON:-python}
common=(--config=experiments/moving_mnist.py:cpu --config.train.num_steps=1000000
        --config.train.eval_every_steps=1000000 --config.train.checkpoint_every_steps=10
        --config.train.keep_checkpoints=1 --config.train.log_every_steps=10
        --config.train.evaluate_test=False --num_sample_videos=0)
declare -A cases=(
  # The README main job's model and schedule: c=16, ConvLSTM 16, 2+2 blocks, 20 frames, the
  # loss over the 10 predicted frames, batch 4, lr 1e-3.
  [base]=""
  # The loss over frames 1..19 (train.num_context=1): twice the scored frames per sequence.
  [ctx1]="--config.train.num_context=1"
  # Training sequences of 8 frames: the recurrent model is scored one step ahead, so short
  # windows give ~2.5x the parameter updates for the same compute.
  [short]="--config.train.num_context=1 --config.data.num_frames=8"
  # Short windows, and room in the context for the digits' shapes: c=32, ConvLSTM 32.
  [wide]="--config.train.num_context=1 --config.data.num_frames=8 --config.model.channels=32 --config.model.lstm_channels=32"
)
core=0
for name in "$@"; do
  mkdir -p "$out/$name"
  # shellcheck disable=SC2086
  (timeout "$((minutes * 60))" taskset -c "$core" "$py" -m vpn_jax.main "${common[@]}" \
     ${cases[$name]} --workdir="$out/$name" >"$out/$name/log.txt" 2>&1 || true
   taskset -c "$core" "$py" -m vpn_jax.evaluate --checkpoint="$out/$name" --split=validation \
     --max_batches=8 >"$out/$name/eval.txt" 2>&1) &
  core=$(((core + 1) % $(nproc)))
done
wait
