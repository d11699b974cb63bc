"""BAIR robot pushing (Ebert et al. 2017, `softmotion30_44k`), in Robotic Pushing's features.

Beyond the VPN paper: the action-conditioned dataset most later video prediction work reports
on. Reads the original TFRecords of `tf.train.SequenceExample`s from the manual directory without
TensorFlow (see README.md in this folder) and stores array_record examples:

    video:  uint8[T, 64, 64, 3]  (T = 30) `{i}/image_aux1/encoded`, raw 64x64x3 bytes
    action: float32[T, 4]        `{i}/action`
    state:  float32[T, 3]        `{i}/endeffector_pos`

Splits: train and validation (the last 5% of the sorted training files), test. Train with
`action_dim=4, state_dim=3`.
"""

import dataclasses
from typing import Dict, List

from etils import epath
from google.protobuf.message import DecodeError
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from vpn_jax.data import pushing_format

ACTION_DIM = 4
STATE_DIM = 3
IMAGE_SHAPE = (64, 64, 3)
TARBALL = 'bair_robot_pushing_dataset_v0.tar'


@dataclasses.dataclass
class BairConfig(tfds.core.BuilderConfig):
    """Options. `camera`: 'image_aux1' (default, as prediction_input.py) or 'image_main'."""
    num_frames: int = 30
    camera: str = 'image_aux1'
    skip_corrupt: bool = False


def parse_example(serialized: bytes,
                  num_frames: int = 30,
                  camera: str = 'image_aux1') -> Dict[str, np.ndarray]:
    """One serialized `tf.train.SequenceExample` (all features in its context) -> example.

    Returns:
      video uint8[num_frames, 64, 64, 3], action float32[num_frames, 4],
      state float32[num_frames, 3].
    Raises:
      pushing_format.FormatError: unparsable proto, missing key, wrong vector or image length.
    """
    example = tf_example_pb2.SequenceExample()
    try:
        example.ParseFromString(serialized)
    except DecodeError as e:
        raise pushing_format.FormatError(f'not a tf.train.SequenceExample ({e})') from e
    feature = example.context.feature
    frames, actions, states = [], [], []
    size = int(np.prod(IMAGE_SHAPE))
    for i in range(num_frames):
        image_key, action_key, state_key = (f'{i}/{camera}/encoded', f'{i}/action',
                                            f'{i}/endeffector_pos')
        for key in (image_key, action_key, state_key):
            if key not in feature:
                raise pushing_format.FormatError(f'missing key {key}')
        raw = pushing_format.single_bytes(feature[image_key], image_key)
        if len(raw) != size:
            raise pushing_format.FormatError(f'{image_key}: {len(raw)} bytes, expected {size} '
                                             '(raw uint8 64x64x3)')
        frames.append(np.frombuffer(raw, np.uint8).reshape(IMAGE_SHAPE))
        actions.append(pushing_format.float_vector(feature[action_key], action_key, ACTION_DIM))
        states.append(pushing_format.float_vector(feature[state_key], state_key, STATE_DIM))
    return {'video': np.stack(frames), 'action': np.stack(actions), 'state': np.stack(states)}


def find_root(manual_dir):
    """The `softmotion30_44k` folder (holding train/ and test/) in `manual_dir`."""
    for root in (manual_dir / 'softmotion30_44k', manual_dir):
        if (root / 'train').is_dir() and (root / 'test').is_dir():
            return root
    hint = ''
    if (manual_dir / TARBALL).exists():  # TFDS's extractor needs TensorFlow: extract it by hand.
        hint = f' Extract the tarball first: tar -xf {manual_dir / TARBALL} -C {manual_dir}.'
    raise FileNotFoundError(f'No softmotion30_44k/{{train,test}} in {manual_dir}.{hint} '
                            f'{Builder.MANUAL_DOWNLOAD_INSTRUCTIONS}')


def _tfrecords(folder) -> List:
    files = sorted(folder.glob('*.tfrecords'), key=lambda p: p.name)
    if not files:
        raise FileNotFoundError(f'No *.tfrecords files in {folder}.')
    return files


class Builder(pushing_format.RecordSplits, tfds.core.GeneratorBasedBuilder):
    """BAIR robot pushing (softmotion30_44k), 64x64, 30 frames, 4-d actions, 3-d states."""

    # TFDS finds this folder (README.md) through the top-level package, which fails for the
    # namespace package `vpn_jax_datasets` under an editable install (`NotADirectoryError:
    # MultiplexedPath only supports directories`): name it directly.
    pkg_dir_path = epath.Path(__file__).parent
    code_path = epath.Path(__file__)
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Initial release: image_aux1, 95/5 file split of train.'}
    BUILDER_CONFIGS = pushing_format.builder_configs(BairConfig)
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download http://rail.eecs.berkeley.edu/datasets/{TARBALL} (about 30 GB) and extract it
    into <manual_dir> (tar -xf {TARBALL} -C <manual_dir>), so that
      <manual_dir>/softmotion30_44k/train/traj_*_to_*.tfrecords
      <manual_dir>/softmotion30_44k/test/traj_*_to_*.tfrecords
    exist.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=pushing_format.tfds_features(self.builder_config.num_frames, ACTION_DIM,
                                                  STATE_DIM),
            homepage='https://sites.google.com/view/sna-visual-mpc/',
            metadata=tfds.core.MetadataDict(),
            citation="""@inproceedings{ebert2017self,
  title={Self-Supervised Visual Planning with Temporal Skip Connections},
  author={Ebert, Frederik and Finn, Chelsea and Lee, Alex X. and Levine, Sergey},
  booktitle={CoRL}, year={2017}}""",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = find_root(dl_manager.manual_dir)
        train, validation = pushing_format.train_validation_files(_tfrecords(root / 'train'),
                                                                  'training files')
        files = {'train': train, 'validation': validation, 'test': _tfrecords(root / 'test')}
        return {split: self._generate_examples(split, f) for split, f in files.items()}

    def parse_record(self, serialized: bytes) -> Dict[str, np.ndarray]:
        return parse_example(serialized, self.builder_config.num_frames, self.builder_config.camera)
