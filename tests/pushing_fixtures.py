"""Tiny files in the real Robotic Pushing and BAIR formats, with known contents.

Robotic Pushing: TFRecord shards of `tf.train.Example`s, per step i a 512x640 JPEG under
`move/{i}/image/encoded`, 5 floats under `move/{i}/commanded_pose/vec_pitch_yaw` (action) and
`move/{i}/endeffector/vec_pitch_yaw` (state), plus unrelated keys, and sometimes one step more
than the 20 read. Each image is a 2x2 grid of flat colours over the central 512x512 square, with
64-pixel left and right borders in magenta (`BORDER`), which the centre crop must remove.

BAIR: TFRecords of `tf.train.SequenceExample`s with everything in the context: per step i raw
uint8 64x64x3 bytes under `{i}/image_aux1/encoded` and `{i}/image_main/encoded`, 4 floats under
`{i}/action`, 3 floats under `{i}/endeffector_pos`.

Every writer returns the expected decoded examples, keyed like the builders' example keys.
"""

import io
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image
from tensorflow_datasets.proto import tf_example_pb2

from vpn_jax.data import tfrecord

BORDER = (255, 0, 255)
PUSH_SIZE = (512, 640)

Expected = Dict[str, Dict[str, np.ndarray]]  # example key -> {'video', 'action', 'state'}


def quadrant_colours(seed: int, step: int) -> np.ndarray:
    """uint8[2, 2, 3] colours of the 4 quadrants of push frame `step` of record `seed`."""
    rng = np.random.default_rng([seed, step])
    # Keep away from magenta so that border leaks would be visible.
    return rng.integers(0, 200, size=(2, 2, 3)).astype(np.uint8)


def push_image(colours: np.ndarray, size: Tuple[int, int] = PUSH_SIZE) -> np.ndarray:
    """uint8[H, W, 3]: a 2x2 grid of `colours` over the central HxH square, magenta borders."""
    h, w = size
    image = np.empty((h, w, 3), np.uint8)
    image[:] = BORDER
    left = (w - h) // 2
    half = h // 2
    for r in range(2):
        for c in range(2):
            image[r * half:(r + 1) * half, left + c * half:left + (c + 1) * half] = colours[r, c]
    return image


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=95, subsampling=0)
    return buffer.getvalue()


def _floats(feature, values) -> None:
    feature.float_list.value.extend(np.asarray(values, np.float32).tolist())


def push_record(seed: int,
                num_steps: int = 20,
                *,
                drop_key: str = '',
                vector_length: int = 5,
                bad_jpeg_step: int = -1) -> Tuple[bytes, Dict[str, np.ndarray]]:
    """A serialized push `tf.train.Example` and its expected first 20 steps.

    Options produce corrupt records: `drop_key` leaves that key out, `vector_length` != 5 writes
    wrong-length vectors, `bad_jpeg_step` writes garbage instead of that step's JPEG.

    Returns:
      (serialized, {'video': uint8[20, 64, 64, 3], 'action': float32[20, 5],
                    'state': float32[20, 5]})
    """
    rng = np.random.default_rng([seed, 1000])
    actions = rng.normal(size=(num_steps, vector_length)).astype(np.float32)
    states = rng.normal(size=(num_steps, vector_length)).astype(np.float32)
    example = tf_example_pb2.Example()
    feature = example.features.feature
    video = []
    for i in range(num_steps):
        colours = quadrant_colours(seed, i)
        data = b'not a jpeg' if i == bad_jpeg_step else jpeg(push_image(colours))
        feature[f'move/{i}/image/encoded'].bytes_list.value.append(data)
        _floats(feature[f'move/{i}/commanded_pose/vec_pitch_yaw'], actions[i])
        _floats(feature[f'move/{i}/endeffector/vec_pitch_yaw'], states[i])
        # Unrelated keys, as in the real records (about 6 keys per step).
        _floats(feature[f'move/{i}/joint/positions'], rng.normal(size=7))
        feature[f'move/{i}/timestamp'].int64_list.value.append(1000 * i)
        video.append(np.repeat(np.repeat(colours, 32, axis=0), 32, axis=1))
    if drop_key:
        del feature[drop_key]
    expected = {'video': np.stack(video)[:20], 'action': actions[:20], 'state': states[:20]}
    return example.SerializeToString(), expected


def write_push_manual_dir(root: str,
                          *,
                          train_files: int = 3,
                          records_per_file: int = 2) -> Dict[str, Expected]:
    """Writes `root/push/{push_train,push_testseen,push_testnovel}/*.tfrecord-*`.

    Returns:
      split name -> example key ('<file>:<index>') -> expected example. The 'train' and
      'validation' entries follow the 95/5 split of the sorted push_train files.
    """
    layout = {'push_train': train_files, 'push_testseen': 1, 'push_testnovel': 1}
    by_folder: Dict[str, List[Expected]] = {}
    seed = 0
    for folder, num_files in layout.items():
        os.makedirs(os.path.join(root, 'push', folder), exist_ok=True)
        by_folder[folder] = []
        for f in range(num_files):
            name = f'{folder}.tfrecord-{f:05d}-of-{num_files:05d}'
            records, expected = [], {}
            for r in range(records_per_file):
                # Every other record carries one step more than is read.
                data, exp = push_record(seed, num_steps=20 + (seed % 2))
                records.append(data)
                expected[f'{name}:{r}'] = exp
                seed += 1
            tfrecord.write_records(os.path.join(root, 'push', folder, name), records)
            by_folder[folder].append(expected)
    split_at = int(np.floor(0.95 * train_files))
    merge = lambda parts: {k: v for part in parts for k, v in part.items()}
    return {
        'train': merge(by_folder['push_train'][:split_at]),
        'validation': merge(by_folder['push_train'][split_at:]),
        'test_seen': merge(by_folder['push_testseen']),
        'test_novel': merge(by_folder['push_testnovel']),
    }


def bair_record(seed: int, num_frames: int = 30) -> Tuple[bytes, Dict[str, np.ndarray]]:
    """A serialized BAIR `tf.train.SequenceExample` and its expected `image_aux1` example."""
    rng = np.random.default_rng([seed, 2000])
    aux1 = rng.integers(0, 256, size=(num_frames, 64, 64, 3), dtype=np.uint8)
    main = rng.integers(0, 256, size=(num_frames, 64, 64, 3), dtype=np.uint8)
    actions = rng.normal(size=(num_frames, 4)).astype(np.float32)
    states = rng.normal(size=(num_frames, 3)).astype(np.float32)
    example = tf_example_pb2.SequenceExample()
    feature = example.context.feature
    for i in range(num_frames):
        feature[f'{i}/image_aux1/encoded'].bytes_list.value.append(aux1[i].tobytes())
        feature[f'{i}/image_main/encoded'].bytes_list.value.append(main[i].tobytes())
        _floats(feature[f'{i}/action'], actions[i])
        _floats(feature[f'{i}/endeffector_pos'], states[i])
    return example.SerializeToString(), {'video': aux1, 'action': actions, 'state': states}


def write_bair_manual_dir(root: str,
                          *,
                          train_files: int = 3,
                          records_per_file: int = 2) -> Dict[str, Expected]:
    """Writes `root/softmotion30_44k/{train,test}/traj_*_to_*.tfrecords`; returns as above."""
    parts: Dict[str, List[Expected]] = {'train': [], 'test': []}
    seed = 0
    for split, num_files in (('train', train_files), ('test', 1)):
        folder = os.path.join(root, 'softmotion30_44k', split)
        os.makedirs(folder, exist_ok=True)
        for f in range(num_files):
            name = f'traj_{f * 256}_to_{f * 256 + 255}.tfrecords'
            records, expected = [], {}
            for r in range(records_per_file):
                data, exp = bair_record(seed)
                records.append(data)
                expected[f'{name}:{r}'] = exp
                seed += 1
            tfrecord.write_records(os.path.join(folder, name), records)
            parts[split].append(expected)
    # The builder sorts file names as strings.
    order = sorted(range(train_files), key=lambda f: f'traj_{f * 256}_to_{f * 256 + 255}')
    train_parts = [parts['train'][f] for f in order]
    split_at = int(np.floor(0.95 * train_files))
    merge = lambda ps: {k: v for p in ps for k, v in p.items()}
    return {
        'train': merge(train_parts[:split_at]),
        'validation': merge(train_parts[split_at:]),
        'test': merge(parts['test']),
    }


def record_offsets(path: str) -> List[Tuple[int, int]]:
    """(start of record, payload length) for each record of a TFRecord file."""
    offsets = []
    with open(path, 'rb') as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 8], 'little')
        offsets.append((pos, length))
        pos += 12 + length + 4
    return offsets


def flip_payload_byte(path: str, index: int) -> None:
    """Corrupts record `index` of a TFRecord file: one payload byte flipped (data CRC fails)."""
    start, length = record_offsets(path)[index]
    with open(path, 'r+b') as f:
        f.seek(start + 12 + length // 2)
        byte = f.read(1)
        f.seek(start + 12 + length // 2)
        f.write(bytes([byte[0] ^ 0xff]))


def flip_length_byte(path: str, index: int) -> None:
    """Corrupts record `index`'s length field (length CRC fails)."""
    start, _ = record_offsets(path)[index]
    with open(path, 'r+b') as f:
        f.seek(start)
        byte = f.read(1)
        f.seek(start)
        f.write(bytes([byte[0] ^ 0x01]))
