"""Metric writing: TensorBoard event files (tensorboardX, no TensorFlow) and a JSON-lines file.

    writer = MetricWriter(workdir)          # only process 0 writes; others get a no-op writer
    writer.write(step, {'train/loss': 1.2, 'lr': 3e-4})
    writer.close()

`workdir/metrics.jsonl` holds one object per write: {"step": int, "time": float, **scalars}.
"""

import json
import math
import os
import time
from typing import Mapping

JSONL = 'metrics.jsonl'


class MetricWriter:
    """Writes scalar metrics to `workdir/tensorboard/` and `workdir/metrics.jsonl`."""

    def __init__(self, workdir: str, *, enabled: bool = True):
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))
            self._jsonl = open(os.path.join(workdir, JSONL), 'a', encoding='utf-8')

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Writes float scalars at `step` (non-finite values are written as strings in JSON)."""
        if not self.enabled:
            return
        record = {'step': int(step), 'time': time.time()}
        for name, value in scalars.items():
            value = float(value)
            self._tb.add_scalar(name, value, int(step))
            record[name] = value if math.isfinite(value) else str(value)
        self._jsonl.write(json.dumps(record) + '\n')
        self._jsonl.flush()

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()
            self.enabled = False


def read_jsonl(workdir: str) -> list:
    """All records of `workdir/metrics.jsonl` (for tests and notebooks)."""
    path = os.path.join(workdir, JSONL)
    if not os.path.exists(path):
        return []
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]
