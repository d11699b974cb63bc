"""Robotic Pushing ("push", Finn, Goodfellow & Levine 2016), the VPN paper's sect. 6 benchmark.

Reads the original TFRecord shards from the manual directory without TensorFlow (see README.md in
this folder for the format and what was checked against the original reader) and stores
array_record examples:

    video:  uint8[T, 64, 64, 3]  (T = 20) centre crop 512x512, then TF1 bicubic resize to 64x64
    action: float32[T, 5]        move/{i}/commanded_pose/vec_pitch_yaw
    state:  float32[T, 5]        move/{i}/endeffector/vec_pitch_yaw

Splits: train and validation (the last 5% of the sorted push_train shards), test_seen,
test_novel. Prepare with
`python -m vpn_jax.tfds_datasets --dataset=robotic_pushing --manual_dir=... --data_dir=...`.
"""

import dataclasses
import io
from typing import Dict, List, Optional, Tuple

from etils import epath
from google.protobuf.message import DecodeError
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from vpn_jax.data import pushing_format

IMAGE_KEY = 'move/{}/image/encoded'
ACTION_KEY = 'move/{}/commanded_pose/vec_pitch_yaw'
STATE_KEY = 'move/{}/endeffector/vec_pitch_yaw'
ACTION_DIM = 5
STATE_DIM = 5
ORIGINAL_SIZE = (512, 640)  # Height, width of the recorded JPEGs.

# Split name -> folder of shards in the manual dir.
_FOLDERS = {'train': 'push_train', 'test_seen': 'push_testseen', 'test_novel': 'push_testnovel'}


@dataclasses.dataclass
class RoboticPushingConfig(tfds.core.BuilderConfig):
    """Options. `skip_corrupt`: skip and count corrupt records instead of failing."""
    num_frames: int = 20
    skip_corrupt: bool = False
    original_size: Optional[Tuple[int, int]] = ORIGINAL_SIZE  # None accepts any size.


def decode_jpeg(data: bytes, key: str) -> np.ndarray:
    """uint8[H, W, 3] from JPEG bytes; grey or CMYK become RGB, as with decode_jpeg(channels=3)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != 'JPEG':
                raise pushing_format.FormatError(f'{key}: not a JPEG ({image.format})')
            return np.asarray(image.convert('RGB'))
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, pushing_format.FormatError):
            raise
        raise pushing_format.FormatError(f'{key}: undecodable JPEG ({e})') from e


def parse_example(
        serialized: bytes,
        num_frames: int = 20,
        original_size: Optional[Tuple[int, int]] = ORIGINAL_SIZE) -> Dict[str, np.ndarray]:
    """One serialized `tf.train.Example` of the push data -> `video`, `action`, `state`.

    Steps 0 .. num_frames - 1 are read; further steps and other keys are ignored.

    Returns:
      video uint8[num_frames, 64, 64, 3], action float32[num_frames, 5],
      state float32[num_frames, 5].
    Raises:
      pushing_format.FormatError: unparsable proto, missing key, wrong vector length, bad JPEG or size.
    """
    example = tf_example_pb2.Example()
    try:
        example.ParseFromString(serialized)
    except DecodeError as e:
        raise pushing_format.FormatError(f'not a tf.train.Example ({e})') from e
    feature = example.features.feature
    frames, actions, states = [], [], []
    for i in range(num_frames):
        keys = IMAGE_KEY.format(i), ACTION_KEY.format(i), STATE_KEY.format(i)
        for key in keys:
            if key not in feature:
                raise pushing_format.FormatError(f'missing key {key}')
        image = decode_jpeg(pushing_format.single_bytes(feature[keys[0]], keys[0]), keys[0])
        if original_size is not None and image.shape[:2] != tuple(original_size):
            raise pushing_format.FormatError(
                f'{keys[0]}: image is {image.shape[0]}x{image.shape[1]}, '
                f'expected {original_size[0]}x{original_size[1]}')
        frames.append(pushing_format.crop_and_resize(image))
        actions.append(pushing_format.float_vector(feature[keys[1]], keys[1], ACTION_DIM))
        states.append(pushing_format.float_vector(feature[keys[2]], keys[2], STATE_DIM))
    return {'video': np.stack(frames), 'action': np.stack(actions), 'state': np.stack(states)}


def find_shards(manual_dir, folder: str) -> List:
    """Sorted `<folder>.tfrecord-*` files in `manual_dir/push/<folder>` or `manual_dir/<folder>`."""
    for base in (manual_dir / 'push' / folder, manual_dir / folder):
        if base.is_dir():
            files = sorted(base.glob(f'{folder}.tfrecord-*'), key=lambda p: p.name)
            if files:
                return files
    raise FileNotFoundError(f'No {folder}.tfrecord-* files in {manual_dir}/push/{folder} or '
                            f'{manual_dir}/{folder}. {Builder.MANUAL_DOWNLOAD_INSTRUCTIONS}')


class Builder(pushing_format.RecordSplits, tfds.core.GeneratorBasedBuilder):
    """Robotic Pushing (push) dataset, 64x64, 20 frames with 5-d actions and states."""

    # TFDS finds this folder (README.md) through the top-level package, which fails for the
    # namespace package `vpn_jax_datasets` under an editable install (`NotADirectoryError:
    # MultiplexedPath only supports directories`): name it directly.
    pkg_dir_path = epath.Path(__file__).parent
    code_path = epath.Path(__file__)
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Initial release: 2016 crop-then-resize, 95/5 file split.'}
    BUILDER_CONFIGS = pushing_format.builder_configs(RoboticPushingConfig)
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    The push dataset (Finn, Goodfellow & Levine 2016) is public on Google Cloud Storage under
    https://storage.googleapis.com/brain-robotics-data/push/ (page:
    https://sites.google.com/site/brainrobotdata/home/push-dataset). Download the shards into
      <manual_dir>/push/push_train/push_train.tfrecord-00000-of-00264 ... -00263-of-00264
      <manual_dir>/push/push_testseen/push_testseen.tfrecord-00000-of-00005 ... -00004-of-00005
      <manual_dir>/push/push_testnovel/push_testnovel.tfrecord-00000-of-00005 ... -00004-of-00005
    (the three folders may also sit directly in <manual_dir>), e.g. with
      gsutil -m cp -r gs://brain-robotics-data/push <manual_dir>/
    or by fetching each https://storage.googleapis.com/brain-robotics-data/push/<folder>/<file>.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=pushing_format.tfds_features(self.builder_config.num_frames, ACTION_DIM,
                                                  STATE_DIM),
            homepage='https://sites.google.com/site/brainrobotdata/home/push-dataset',
            metadata=tfds.core.MetadataDict(),
            citation="""@inproceedings{finn2016unsupervised,
  title={Unsupervised Learning for Physical Interaction through Video Prediction},
  author={Finn, Chelsea and Goodfellow, Ian and Levine, Sergey},
  booktitle={NeurIPS}, year={2016}}""",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = dl_manager.manual_dir
        train, validation = pushing_format.train_validation_files(
            find_shards(manual_dir, _FOLDERS['train']), 'push_train shards')
        files = {
            'train': train,
            'validation': validation,
            'test_seen': find_shards(manual_dir, _FOLDERS['test_seen']),
            'test_novel': find_shards(manual_dir, _FOLDERS['test_novel']),
        }
        return {split: self._generate_examples(split, f) for split, f in files.items()}

    def parse_record(self, serialized: bytes) -> Dict[str, np.ndarray]:
        return parse_example(serialized, self.builder_config.num_frames,
                             self.builder_config.original_size)
