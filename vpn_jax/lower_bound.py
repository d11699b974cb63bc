"""The paper's lower bound on the Moving MNIST loss (sect. 5): the entropy of the targets.

The loss is the sigmoid cross-entropy H(z, y) = -sum_i [z_i ln y_i + (1 - z_i) ln(1 - y_i)] with
targets z = x / 255. It is smallest at y = z, where it equals the binary entropy of the targets:
for the predicted frames (t = num_context .. T-1), the sum over the pixels of
-z ln z - (1 - z) ln(1 - z) (with 0 ln 0 = 0), averaged over sequences and predicted frames. The
paper reports 86.3 nats/frame on the standard test set.

    python -m vpn_jax.lower_bound --split=test [--data_dir=...] [--config=generated]

builds the split of `moving_mnist_vpn` if needed; its last line is `lower bound: X nats/frame`.
"""

from typing import Optional

from absl import app
from absl import flags
import numpy as np

NUM_CONTEXT = 10
DATASET = 'moving_mnist_vpn'


def entropy_table() -> np.ndarray:
    """Binary entropy in nats of z = x / 255 for every pixel value x.

    Returns:
        table: float64[256], table[x] = -z ln z - (1 - z) ln(1 - z), 0 at x = 0 and x = 255.
    """
    z = np.arange(256, dtype=np.float64) / 255.0
    with np.errstate(divide='ignore', invalid='ignore'):
        h = -(z * np.log(z) + (1.0 - z) * np.log1p(-z))
    h[0] = h[-1] = 0.0
    return h


def _predicted_frames(video: np.ndarray, num_context: int) -> np.ndarray:
    if video.ndim not in (4, 5) or video.dtype != np.uint8:
        raise ValueError(f'Expected video uint8[B, T, H, W] or [B, T, H, W, C], got {video.dtype} '
                         f'{video.shape}.')
    if not 0 <= num_context < video.shape[1]:
        raise ValueError(f'Expected 0 <= num_context < T = {video.shape[1]}, got {num_context}.')
    return video[:, num_context:]


def value_counts(video: np.ndarray, num_context: int = NUM_CONTEXT) -> tuple[np.ndarray, int]:
    """Histogram of the pixel values of the predicted frames (for streaming over a split).

    Args:
        video: uint8[B, T, H, W] or uint8[B, T, H, W, C].
        num_context: frames 0 .. num_context-1 are context and not counted.

    Returns:
        (counts: int64[256], num_frames: B * (T - num_context)).
    """
    predicted = _predicted_frames(video, num_context)
    counts = np.bincount(predicted.reshape(-1), minlength=256).astype(np.int64)
    return counts, predicted.shape[0] * predicted.shape[1]


def lower_bound(video: np.ndarray, num_context: int = NUM_CONTEXT) -> float:
    """Entropy of the targets of the predicted frames, in nats per frame.

    Args:
        video: uint8[B, T, H, W] or uint8[B, T, H, W, C] (all channels of a frame count).
        num_context: number of context frames (10 in the paper); the other T - num_context count.

    Returns:
        Mean over sequences and predicted frames of the sum over pixels of the binary entropy of
        x / 255, in nats/frame.
    """
    counts, frames = value_counts(video, num_context)
    return float(counts @ entropy_table() / frames)


def split_lower_bound(split: str = 'test',
                      *,
                      config=None,
                      data_dir: Optional[str] = None,
                      manual_dir: Optional[str] = None,
                      num_context: int = NUM_CONTEXT,
                      chunk: int = 500) -> tuple[float, int]:
    """`lower_bound` over a whole split of `moving_mnist_vpn`, preparing it first if needed.

    Args:
        split: 'test' or 'validation'.
        config: builder config name ('generated' by default, 'generated_idx', 'standard') or a
            `MovingMnistVpnConfig` (e.g. a small one).
        data_dir: TFDS data dir (default ~/tensorflow_datasets).
        manual_dir: manual dir for the configs that read files.
        num_context: number of context frames.
        chunk: sequences read at a time.

    Returns:
        (lower bound in nats/frame, number of sequences).
    """
    import tensorflow_datasets as tfds
    from vpn_jax import tfds_datasets
    kwargs = {'config': config} if config is not None else {}
    builder = tfds_datasets.builder(DATASET,
                                    data_dir=data_dir,
                                    file_format='array_record',
                                    **kwargs)
    if not builder.is_prepared():
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir) if manual_dir else None)
    if split not in builder.info.splits:
        raise ValueError(f'{builder.info.full_name} has no split {split!r}; it has '
                         f'{sorted(builder.info.splits)}.')
    source = builder.as_data_source(split=split)
    total = np.zeros(256, dtype=np.int64)
    frames = 0
    for start in range(0, len(source), chunk):
        examples = source.__getitems__(range(start, min(start + chunk, len(source))))
        counts, n = value_counts(np.stack([ex['video'] for ex in examples]), num_context)
        total += counts
        frames += n
    if frames == 0:
        raise ValueError(f'Split {split!r} of {builder.info.full_name} is empty.')
    return float(total @ entropy_table() / frames), len(source)


def _define_flags():
    """Defines the command's flags, only when run as a program (importers keep their own)."""
    flags.DEFINE_string('split', 'test', 'Split of moving_mnist_vpn.')
    flags.DEFINE_string('config', None, 'Builder config (default: generated).')
    flags.DEFINE_string('data_dir', None, 'TFDS data dir (default ~/tensorflow_datasets).')
    flags.DEFINE_string('manual_dir', None, 'Manual dir (configs reading files).')
    flags.DEFINE_integer('num_context', NUM_CONTEXT, 'Context frames, not counted.')


def main(argv):
    del argv
    fv = flags.FLAGS
    value, n = split_lower_bound(fv.split,
                                 config=fv.config,
                                 data_dir=fv.data_dir,
                                 manual_dir=fv.manual_dir,
                                 num_context=fv.num_context)
    print(f'{DATASET}/{fv.config or "generated"} split {fv.split}: {n} sequences, '
          f'{fv.num_context} context frames (paper, standard test set: 86.3 nats/frame)')
    print(f'lower bound: {value:.3f} nats/frame')


if __name__ == '__main__':
    _define_flags()
    app.run(main)
