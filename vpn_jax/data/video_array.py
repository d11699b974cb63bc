"""Your own videos as a dataset: a `uint8[N, T, H, W, C]` array in a `.npy` file.

    videos = vpn_jax.data.video_array.read_video_folder('my_clips/', num_frames=12, size=64)
    vpn_jax.data.video_array.save('my_clips.npy', videos)
    config = vpn_jax.configs.load_config('experiments/video_array.py:cpu')
    config.data.path = 'my_clips.npy'

The file is split by a fixed, seeded permutation of its N videos: the first
`data.test_fraction` are the test split, the next `data.validation_fraction` validation, the rest
training (`split_indices`). Training batches take random videos and random windows of
`data.num_frames` frames, a pure function of `(train.seed, step)` like every other dataset
here, so that a run resumes bit for bit; evaluation sequences are the first
`data.eval_num_frames` frames of each video of the split, in order.

The `.npy` is opened memory-mapped (`np.load(mmap_mode='r')`, `allow_pickle=False`): a file
larger than memory works, and loading runs no code from the file.
"""

import os
from typing import Dict, Optional, Sequence

import numpy as np

SPLITS = ('train', 'validation', 'test')
VIDEO_EXTENSIONS = ('.mp4', '.gif', '.avi', '.mov', '.webm', '.mkv')


def check_videos(videos: np.ndarray, what: str = 'videos') -> np.ndarray:
    """Returns `videos` as an array; raises ValueError unless uint8[N, T, H, W, C], C in 1 or 3."""
    videos = np.asarray(videos) if not isinstance(videos, np.memmap) else videos
    if videos.ndim != 5:
        raise ValueError(f'{what} must be uint8[N, T, H, W, C] (C = 1 grey or 3 RGB); got shape '
                         f'{videos.shape}. A single video is videos[None]; grey frames without '
                         'a channel axis are videos[..., None].')
    if videos.dtype != np.uint8:
        raise ValueError(f'{what} must have dtype uint8 (pixels 0..255); got {videos.dtype}. '
                         'Pass e.g. np.clip(x * 255, 0, 255).astype(np.uint8) for floats in '
                         '[0, 1].')
    if videos.shape[-1] not in (1, 3):
        raise ValueError(f'{what} must have 1 or 3 colour channels (last axis); got '
                         f'{videos.shape[-1]}.')
    if min(videos.shape[:4]) < 1:
        raise ValueError(f'{what} is empty: shape {videos.shape}.')
    return videos


def save(path: str, videos: np.ndarray) -> str:
    """Checks `videos` and writes them to `path` (.npy); returns the absolute path."""
    videos = check_videos(videos)
    path = os.path.abspath(os.path.expanduser(path))
    if not path.endswith('.npy'):
        raise ValueError(f'Write the videos to a .npy file; got {path!r}.')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp.npy'
    np.save(tmp, videos, allow_pickle=False)
    os.replace(tmp, path)  # A crash never leaves a half-written dataset under `path`.
    return path


def load(path: str) -> np.ndarray:
    """The videos of a .npy file, memory-mapped and checked."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f'No video array at {path!r}; write one with '
                                'vpn_jax.data.video_array.save(path, videos).')
    try:
        videos = np.load(path, mmap_mode='r', allow_pickle=False)
    except ValueError as e:
        raise ValueError(f'{path} is not a plain .npy array of uint8 videos: {e}') from e
    return check_videos(videos, path)


def _to_frames(frames: np.ndarray, colors: int, size: Optional[int]) -> np.ndarray:
    """uint8[T, H, W(, C)] -> uint8[T, size, size, colors]: grey/RGB, centre square, resize."""
    from PIL import Image
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[..., None]
    frames = frames[..., :3] if frames.shape[-1] >= 3 else frames[..., :1]  # Drops alpha.
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    out = []
    for frame in frames:
        image = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
        image = image.convert('L' if colors == 1 else 'RGB')
        if size:
            w, h = image.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            image = image.crop((left, top, left + side, top + side))
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(image, np.uint8)
        out.append(array[..., None] if array.ndim == 2 else array)
    return np.stack(out)


def read_video_folder(folder: str,
                      *,
                      num_frames: int,
                      size: Optional[int] = None,
                      colors: int = 3,
                      extensions: Sequence[str] = VIDEO_EXTENSIONS) -> np.ndarray:
    """Reads every video file in `folder` (sorted by name) into uint8[N, num_frames, S, S, C].

    Each file gives its first `num_frames` frames, converted to `colors` channels (1 grey, 3
    RGB) and, with `size`, centre-cropped to a square and resized to size x size. Files with
    fewer frames are skipped with a printed note. Reads through imageio (ffmpeg from the
    imageio-ffmpeg wheel for .mp4 and friends, Pillow for .gif).
    """
    import imageio.v3 as iio
    if colors not in (1, 3):
        raise ValueError(f'colors must be 1 (grey) or 3 (RGB); got {colors}.')
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'No folder {folder!r}.')
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(tuple(extensions)))
    if not files:
        raise ValueError(f'No video files ({", ".join(extensions)}) in {folder!r}.')
    videos = []
    for name in files:
        frames = iio.imread(os.path.join(folder, name), index=None)
        if len(frames) < num_frames:
            print(f'skipping {name}: {len(frames)} frames < num_frames={num_frames}')
            continue
        videos.append(_to_frames(frames[:num_frames], colors, size))
    if not videos:
        raise ValueError(f'No video in {folder!r} has num_frames={num_frames} frames.')
    shapes = {v.shape for v in videos}
    if len(shapes) > 1:
        raise ValueError(f'The videos have different frame sizes {sorted(shapes)}; pass size= '
                         'to bring them to one square size.')
    return np.stack(videos)


def write_video_folder(folder: str, videos: np.ndarray, *, fps: float = 8.0) -> Sequence[str]:
    """Writes each video as `folder/video_<i>.gif` (lossless for grey and few-colour clips)."""
    from vpn_jax.visualize import save_gif, to_rgb
    videos = check_videos(videos)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, video in enumerate(videos):
        path = os.path.join(folder, f'video_{i:04d}.gif')
        save_gif(path, to_rgb(video), fps=fps)
        paths.append(path)
    return paths


def split_indices(num_videos: int,
                  *,
                  validation_fraction: float,
                  test_fraction: float,
                  seed: int = 0) -> Dict[str, np.ndarray]:
    """{'train', 'validation', 'test'}: disjoint sorted index arrays covering range(num_videos).

    A seeded permutation; test gets round(test_fraction * N) videos (at least 1 when the
    fraction is > 0), validation likewise, training the rest (at least 1).
    """
    for name, f in (('validation_fraction', validation_fraction), ('test_fraction', test_fraction)):
        if not 0 <= f < 1:
            raise ValueError(f'data.{name} must be in [0, 1); got {f}.')
    count = lambda f: 0 if f == 0 else max(1, int(round(f * num_videos)))
    n_test, n_val = count(test_fraction), count(validation_fraction)
    if n_test + n_val >= num_videos:
        raise ValueError(f'{num_videos} videos leave none for training after {n_test} test and '
                         f'{n_val} validation videos; lower the fractions or add videos.')
    order = np.random.default_rng([seed, 31]).permutation(num_videos)
    return {
        'test': np.sort(order[:n_test]),
        'validation': np.sort(order[n_test:n_test + n_val]),
        'train': np.sort(order[n_test + n_val:]),
    }


class VideoArraySource:
    """Random access to one split of a video array: `len(source)`, `source[i] = {'video': ...}`.

    video: uint8[T, H, W, C] (the whole video; batches cut their frames).
    """

    def __init__(self, videos: np.ndarray, indices: np.ndarray):
        self.videos = videos
        self.indices = np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        return {'video': np.asarray(self.videos[int(self.indices[i])])}


def open_split(path: str,
               split: str,
               *,
               validation_fraction: float,
               test_fraction: float,
               split_seed: int = 0) -> VideoArraySource:
    """The `split` ('train', 'validation' or 'test') of the video array at `path`."""
    if split not in SPLITS:
        raise ValueError(f'Unknown split {split!r}; expected one of {SPLITS}.')
    videos = load(path)
    indices = split_indices(len(videos),
                            validation_fraction=validation_fraction,
                            test_fraction=test_fraction,
                            seed=split_seed)[split]
    if len(indices) == 0:
        raise ValueError(f'The {split} split of {path} is empty; set data.{split}_fraction > 0.')
    return VideoArraySource(videos, indices)


def train_batch(source: VideoArraySource, *, batch_size: int, num_frames: int, seed: int,
                step: int) -> np.ndarray:
    """uint8[batch_size, num_frames, H, W, C]: random videos, random windows; a pure function
    of (seed, step)."""
    length = source.videos.shape[1]
    if num_frames > length:
        raise ValueError(f'data.num_frames={num_frames} exceeds the {length} frames of each '
                         'video.')
    rng = np.random.default_rng([seed, 17, step])
    which = rng.integers(len(source), size=batch_size)
    starts = rng.integers(length - num_frames + 1, size=batch_size)
    return np.stack([source[int(i)]['video'][s:s + num_frames] for i, s in zip(which, starts)])
