"""Metric writing: TensorBoard event files (tensorboardX, no TensorFlow) and a JSON-lines file.

    writer = MetricWriter(workdir)          # only process 0 writes; others get a no-op writer
    writer.write(step, {'train/loss': 1.2, 'lr': 3e-4})
    writer.close()

`workdir/metrics.jsonl` holds one object per write: {"step": int, "time": float, **scalars}
(non-finite values as the strings "nan", "inf", "-inf": the file stays valid JSON).

A run resumed from a checkpoint at step S logs again what the interrupted run logged after S:
`MetricWriter(workdir, resume_step=S)` drops those rows from metrics.jsonl and starts the
TensorBoard writer with `purge_step=S + 1`, which hides the old events from step S + 1 on.
"""

import json
import math
import os
import time
from typing import Dict, List, Mapping, Sequence

JSONL = 'metrics.jsonl'


class MetricWriter:
    """Writes scalar metrics to `workdir/tensorboard/` and `workdir/metrics.jsonl`."""

    def __init__(self,
                 workdir: str,
                 *,
                 enabled: bool = True,
                 resume_step: int = None,
                 drop_at_resume_step: Sequence[str] = ()):
        """resume_step: the step training resumes from (0 for a fresh run); None keeps all rows.
        drop_at_resume_step: rows at `resume_step` with a metric whose name starts with one of
        these prefixes are dropped too (they will be logged again)."""
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            path = os.path.join(workdir, JSONL)
            if resume_step is not None:
                truncate_jsonl(path, resume_step, drop_at_resume_step)
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                                     purge_step=None if resume_step is None else resume_step + 1)
            self._jsonl = open(path, 'a', encoding='utf-8')

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


def truncate_jsonl(path: str, step: int, drop_at_step: Sequence[str] = ()) -> int:
    """Drops the rows of `path` after `step` (and those at `step` with a metric starting with a
    prefix in `drop_at_step`) by rewriting it atomically; returns the number dropped.

    A partial last line (a run killed while writing) is dropped too.
    """
    if not os.path.exists(path):
        return 0
    kept, dropped = [], 0
    with open(path, encoding='utf-8') as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                row_step = int(record['step'])
            except (ValueError, KeyError, TypeError):
                dropped += 1
                continue
            if row_step > step or (row_step == step
                                   and any(k.startswith(p) for k in record for p in drop_at_step)):
                dropped += 1
                continue
            kept.append(line if line.endswith('\n') else line + '\n')
    if dropped:
        tmp = path + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            f.writelines(kept)
        os.replace(tmp, path)
    return dropped


def read_jsonl(workdir: str) -> list:
    """All records of `workdir/metrics.jsonl` (for tests and notebooks)."""
    path = os.path.join(workdir, JSONL)
    if not os.path.exists(path):
        return []
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def read_metrics(path: str) -> List[Dict]:
    """Rows of a metrics.jsonl; for a step logged twice (a resumed run), the newest row wins."""
    rows: Dict[tuple, Dict] = {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows[(row['step'], tuple(sorted(k for k in row if '/' in k)))] = row
    return sorted(rows.values(), key=lambda r: r['step'])


def training_seconds(rows: Sequence[Dict]) -> Dict[int, float]:
    """{step: training seconds up to it} for every logged step in `rows` (as `read_metrics`
    returns them): the sum of (steps since the previous log) / steps_per_second over the logged
    training intervals; evaluation time is not in it."""
    seconds, last_step, elapsed = {}, 0, 0.0
    for row in rows:
        if 'train/steps_per_second' in row and row['step'] > last_step:
            elapsed += (row['step'] - last_step) / row['train/steps_per_second']
            last_step = row['step']
        seconds[row['step']] = elapsed
    return seconds


def chain_stages(stages: Sequence[Sequence[Dict]], upto: Sequence[int]) -> List[Dict]:
    """One run's rows from the rows of its training stages (a warm-started run continues the run
    it started from): stage i's rows up to its step `upto[i]`, their steps shifted by the steps
    of the stages before it, so that `training_seconds` and the learning curves run on across
    stages. `stages[i]` as `read_metrics` returns them."""
    if len(stages) != len(upto):
        raise ValueError(f'{len(stages)} stages but {len(upto)} last steps.')
    chained, offset = [], 0
    for rows, last in zip(stages, upto):
        chained.extend(dict(row, step=row['step'] + offset) for row in rows if row['step'] <= last)
        offset += int(last)
    return chained
