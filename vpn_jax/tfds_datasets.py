"""Registers this project's TFDS builders and prepares them without TensorFlow.

The builders live in the repository's `datasets/` folder, installed as the namespace
package `vpn_jax_datasets` (never as `datasets`, which is Hugging Face's name). TFDS's own
`tfds build` command imports TensorFlow; this module is the TF-free way to prepare them:

    python -m vpn_jax.tfds_datasets --dataset=moving_mnist_vpn \
        --data_dir=~/tensorflow_datasets --manual_dir=/path/to/downloads

Prepared datasets are stored as array_record and read with `tfds.data_source`.
"""

import fcntl
import importlib
import os
from typing import Optional

from absl import app
from absl import flags

# Builder modules, in TFDS's community layout: datasets/<name>/<name>_dataset_builder.py.
BUILDER_MODULES = {
    'moving_mnist_vpn': 'vpn_jax_datasets.moving_mnist_vpn.moving_mnist_vpn_dataset_builder',
    'robotic_pushing': 'vpn_jax_datasets.robotic_pushing.robotic_pushing_dataset_builder',
    'bair_robot_pushing': 'vpn_jax_datasets.bair_robot_pushing.bair_robot_pushing_dataset_builder',
}

# Prepared only from files downloaded by hand (`--manual_dir`).
MANUAL_DATASETS = ('robotic_pushing', 'bair_robot_pushing')

# Serialises preparation of one dataset config across processes (`prepare`).
PREPARE_LOCK = '.prepare.lock'


def register(name: Optional[str] = None) -> None:
    """Imports the builder module(s) so that `tfds.builder(name)` finds them."""
    names = [name] if name else list(BUILDER_MODULES)
    for n in names:
        base = n.split('/')[0].split(':')[0]
        if base not in BUILDER_MODULES:
            raise ValueError(f'Unknown dataset {n!r}; expected one of {sorted(BUILDER_MODULES)}.')
        importlib.import_module(BUILDER_MODULES[base])


def builder(name: str, *, data_dir: Optional[str] = None, **kwargs):
    """`tfds.builder(name, data_dir=...)` for one of this project's datasets.

    `name` may carry a config, e.g. 'moving_mnist_vpn/standard'.
    """
    import tensorflow_datasets as tfds
    register(name)
    return tfds.builder(name, data_dir=data_dir, **kwargs)


def prepare(name: str, *, data_dir: Optional[str] = None, manual_dir: Optional[str] = None):
    """Prepares `name` into `data_dir` as array_record (no TensorFlow needed); returns the builder.

    Processes that prepare the same dataset at once (two training runs started together on a
    fresh data dir) take turns on an exclusive `flock` of `<data_dir>/<name>/<config>/
    .prepare.lock`: one prepares, the others wait and then find it prepared. Without the lock the
    later ones fail when TFDS renames its temporary folder onto the finished one.
    """
    import tensorflow_datasets as tfds
    b = builder(name, data_dir=data_dir, file_format='array_record')
    lock_dir = os.path.dirname(os.fspath(b.data_dir))
    os.makedirs(lock_dir, exist_ok=True)
    with open(os.path.join(lock_dir, PREPARE_LOCK), 'w', encoding='utf-8') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file is closed.
        # A fresh builder sees what another process prepared while this one waited.
        b = builder(name, data_dir=data_dir, file_format='array_record')
        if not b.is_prepared():
            download_config = None
            if manual_dir:
                download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
            b.download_and_prepare(download_config=download_config)
    return b


def data_source(name: str,
                *,
                split: str,
                data_dir: Optional[str] = None,
                manual_dir: Optional[str] = None,
                prepare_if_missing: bool = False):
    """Random-access `tfds.data_source` over a prepared split (numpy dicts).

    With `prepare_if_missing`, prepares the dataset first when it is not in `data_dir`.
    """
    b = builder(name, data_dir=data_dir, file_format='array_record')
    if not b.is_prepared():
        if not prepare_if_missing:
            # The pushing datasets are prepared from TFRecords downloaded by hand.
            manual = ' --manual_dir=<folder with the downloaded TFRecords>' if name.split(
                '/')[0] in MANUAL_DATASETS else ''
            raise FileNotFoundError(
                f'Dataset {name!r} is not prepared in {b.data_dir!r}. Prepare it with '
                f'`python -m vpn_jax.tfds_datasets --dataset={name} --data_dir=...{manual}`.')
        b = prepare(name, data_dir=data_dir, manual_dir=manual_dir)
    if split not in b.info.splits:
        raise ValueError(f'Dataset {name!r} has no split {split!r}; it has '
                         f'{sorted(b.info.splits)}.')
    return b.as_data_source(split=split)


def _define_flags():
    """Defines the command's flags; only when run as a program, so that other absl programs
    (e.g. `python -m vpn_jax.lower_bound`, which has its own --data_dir) can import this module."""
    flags.DEFINE_string('dataset', None, 'Dataset name, optionally with /config.')
    flags.DEFINE_string('data_dir', None, 'TFDS data dir (default ~/tensorflow_datasets).')
    flags.DEFINE_string('manual_dir', None, 'Directory holding the manual downloads.')
    flags.mark_flag_as_required('dataset')


def main(argv):
    del argv
    fv = flags.FLAGS
    b = prepare(fv.dataset, data_dir=fv.data_dir, manual_dir=fv.manual_dir)
    print(f'prepared {b.info.full_name} in {b.data_dir}')
    for split, info in b.info.splits.items():
        print(f'  {split}: {info.num_examples} examples')


if __name__ == '__main__':
    _define_flags()
    app.run(main)
