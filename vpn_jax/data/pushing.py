"""Robotic Pushing (and BAIR) batches: the input pipeline over prepared or in-memory sources.

Sect. 6 of the paper: 20-frame 64x64 RGB videos, each frame paired with the robot's state and the
commanded action. Training (sect. 6.1) uses random 12-frame sub-sequences with their states and
actions; 2 frames are context and 10 are predicted. Evaluation uses the full 20-frame sequences:
2 context frames (with their states and actions) and 18 predicted frames, all actions given.

Sources. The pipeline reads any random-access source: an object with `len(source)` and
`source[i]` (and optionally `source.__getitems__(indices)`) returning a dict

    video:  uint8[T, 64, 64, 3]
    action: float32[T, A]
    state:  float32[T, S]

as `tfds.data_source` does over the prepared `robotic_pushing` / `bair_robot_pushing` builders
(see `data_source` below) and as `vpn_jax.data.push_sim.PushSimSource` does in memory.

Batches (numpy dicts; the caller moves them to devices and shards them):

    video:   uint8[B, T, 64, 64, 3]
    actions: float32[B, T, A]   the action at frame t leads from frame t to frame t + 1
    states:  float32[B, T, S]   the full sequence of states; the model takes states only for
                                the context frames: pass `states[:, :num_context]` (the paper
                                discards states of predicted frames in training and generation)
    mask:    bool[B]            evaluation only: False for padding in the last batch

Training batches are a pure function of `(seed, step)`: `train_batch(source, seed=..., step=...)`.
The checkpointable position of `TrainIterator` is just `{'seed', 'step'}`.
"""

import dataclasses
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from vpn_jax.data.pushing_format import EVAL_FRAMES, TRAIN_FRAMES


def data_source(name: str, *, split: str, data_dir: Optional[str] = None):
    """`tfds.data_source` over a prepared split of 'robotic_pushing' or 'bair_robot_pushing'."""
    from vpn_jax import tfds_datasets
    return tfds_datasets.data_source(name, split=split, data_dir=data_dir)


def _get_many(source: Any, indices: Sequence[int]) -> List[Mapping[str, np.ndarray]]:
    if hasattr(source, '__getitems__'):
        return list(source.__getitems__([int(i) for i in indices]))
    return [source[int(i)] for i in indices]


def _stack(examples: Sequence[Mapping[str, np.ndarray]],
           windows: Sequence[slice]) -> Dict[str, np.ndarray]:
    return {
        'video':
        np.stack([np.asarray(e['video'])[w] for e, w in zip(examples, windows)]),
        'actions':
        np.stack([np.asarray(e['action'])[w]
                  for e, w in zip(examples, windows)]).astype(np.float32),
        'states':
        np.stack([np.asarray(e['state'])[w] for e, w in zip(examples, windows)]).astype(np.float32),
    }


def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, 0, epoch]).permutation(n)


def train_batch(source: Any,
                *,
                seed: int,
                step: int,
                batch_size: int,
                num_frames: int = TRAIN_FRAMES,
                process_index: int = 0,
                process_count: int = 1) -> Dict[str, np.ndarray]:
    """Training batch number `step`: a pure function of `(seed, step)` and the source.

    The stream of training examples is an endless sequence of epochs; each epoch is a fresh
    permutation of the source (drawn from `(seed, epoch)`), and example number p of the stream
    is cut to a random window of `num_frames` consecutive frames (offset drawn from `(seed, p)`).
    Batch `step` holds stream positions `step * batch_size ... + batch_size - 1`; with several
    processes, each takes its contiguous `batch_size // process_count` of them.

    Args:
      source: random-access source of dicts (see the module docstring), all of length T >=
        num_frames.
      seed: int seed.
      step: int >= 0, the batch number (the checkpointable position).
      batch_size: global batch size B (divisible by process_count).
      num_frames: frames per training window (12 in sect. 6.1).
    Returns:
      video uint8[B', num_frames, 64, 64, 3], actions float32[B', num_frames, A],
      states float32[B', num_frames, S], with B' = batch_size // process_count.
    """
    n = len(source)
    if n == 0:
        raise ValueError('The source is empty.')
    if batch_size % process_count:
        raise ValueError(f'batch_size {batch_size} is not divisible by {process_count} processes.')
    local = batch_size // process_count
    start = step * batch_size + process_index * local
    positions = np.arange(start, start + local)
    indices, windows = [], []
    perms: Dict[int, np.ndarray] = {}
    for p in positions:
        epoch = int(p // n)
        if epoch not in perms:
            perms[epoch] = _epoch_permutation(seed, epoch, n)
        indices.append(int(perms[epoch][p % n]))
    examples = _get_many(source, indices)
    for p, e in zip(positions, examples):
        length = np.asarray(e['video']).shape[0]
        if length < num_frames:
            raise ValueError(f'An example has {length} frames, fewer than {num_frames}.')
        offset = int(np.random.default_rng([seed, 1, int(p)]).integers(0, length - num_frames + 1))
        windows.append(slice(offset, offset + num_frames))
    return _stack(examples, windows)


@dataclasses.dataclass
class TrainIterator:
    """Endless iterator of `train_batch`es; its position is the checkpointable `{'seed', 'step'}`.

    >>> it = TrainIterator(source, seed=0, batch_size=64)
    >>> batch = next(it)                   # step 0
    >>> saved = it.get_state()             # {'seed': 0, 'step': 1}
    >>> TrainIterator(source, batch_size=64).set_state(saved)  # continues with step 1
    """
    source: Any
    batch_size: int
    seed: int = 0
    step: int = 0
    num_frames: int = TRAIN_FRAMES
    process_index: int = 0
    process_count: int = 1

    def __iter__(self) -> 'TrainIterator':
        return self

    def __next__(self) -> Dict[str, np.ndarray]:
        batch = train_batch(self.source,
                            seed=self.seed,
                            step=self.step,
                            batch_size=self.batch_size,
                            num_frames=self.num_frames,
                            process_index=self.process_index,
                            process_count=self.process_count)
        self.step += 1
        return batch

    def get_state(self) -> Dict[str, int]:
        return {'seed': int(self.seed), 'step': int(self.step)}

    def set_state(self, state: Mapping[str, int]) -> 'TrainIterator':
        self.seed, self.step = int(state['seed']), int(state['step'])
        return self


def eval_batches(source: Any,
                 *,
                 batch_size: int,
                 num_frames: int = EVAL_FRAMES,
                 process_index: int = 0,
                 process_count: int = 1) -> Iterator[Dict[str, np.ndarray]]:
    """All examples in order, the first `num_frames` frames of each, padded to full batches.

    Evaluation (sect. 6): frames `[:NUM_CONTEXT]` with their states and actions are context, the
    following `num_frames - NUM_CONTEXT` (18) frames are predicted given all their actions.
    The last batch is padded by repeating the last example, with `mask` False on the padding, so
    that every batch has the same shape (one compilation). With several processes, process i
    gets the i-th contiguous `batch_size // process_count` of every global batch.

    Yields:
      video uint8[B', num_frames, 64, 64, 3], actions float32[B', num_frames, A],
      states float32[B', num_frames, S], mask bool[B'], with B' = batch_size // process_count.
    """
    n = len(source)
    if batch_size % process_count:
        raise ValueError(f'batch_size {batch_size} is not divisible by {process_count} processes.')
    local = batch_size // process_count
    for start in range(0, n, batch_size):
        positions = np.arange(start + process_index * local, start + (process_index + 1) * local)
        mask = positions < n
        indices = np.minimum(positions, n - 1)
        examples = _get_many(source, indices)
        for e in examples:
            if np.asarray(e['video']).shape[0] < num_frames:
                raise ValueError(f'An example has fewer than {num_frames} frames.')
        batch = _stack(examples, [slice(0, num_frames)] * len(examples))
        batch['mask'] = mask
        yield batch


def num_eval_batches(source: Any, batch_size: int) -> int:
    """Number of batches `eval_batches` yields."""
    return -(-len(source) // batch_size)
