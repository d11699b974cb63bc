"""Training: the data-parallel train step and loop, orbax checkpoints, metrics, the run lock."""
