"""Pictures of sampled continuations: a PNG grid like the paper's Figures 4-7 and animated GIFs.

Grid layout (one block of rows per video, blocks separated by a wider gap):

    sample 1      : context frames | generated frames
    ...
    sample S      : context frames | generated frames
    ground truth  : context frames | true continuation      (when given)

Frames are framed by a thin border: grey for the given context, red for generated frames,
green for the ground truth's continuation, so that a reader sees where generation starts.

In a notebook, `show_videos(videos)` plays the uint8[N, T, H, W, C] arrays that `vpn_jax.sample`
returns, with mediapy and the ffmpeg of the imageio-ffmpeg wheel (no system ffmpeg needed), or
as GIFs where neither is there; `mediapy.show_image(make_grid(...))` shows a grid.
"""

import base64
import io
import shutil
from typing import Optional, Sequence

import numpy as np

CONTEXT_COLOR = (128, 128, 128)
SAMPLE_COLOR = (220, 40, 40)
TRUTH_COLOR = (40, 180, 40)


def to_rgb(frames: np.ndarray) -> np.ndarray:
    """uint8[..., C] with C in (1, 3) -> uint8[..., 3]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f'Frames must be uint8; got {frames.dtype}.')
    if frames.shape[-1] == 1:
        return np.repeat(frames, 3, axis=-1)
    if frames.shape[-1] != 3:
        raise ValueError(f'Frames must have 1 or 3 colour channels; got shape {frames.shape}.')
    return frames


def _framed(frame: np.ndarray, color: Sequence[int], border: int, scale: int) -> np.ndarray:
    """uint8[H, W, 3] -> uint8[scale * H + 2 * border, scale * W + 2 * border, 3]."""
    frame = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
    if border == 0:
        return frame
    out = np.empty((frame.shape[0] + 2 * border, frame.shape[1] + 2 * border, 3), np.uint8)
    out[...] = np.asarray(color, np.uint8)
    out[border:-border, border:-border] = frame
    return out


def _check(samples, ground_truth, num_context, num_samples):
    samples = np.asarray(samples)
    if samples.ndim != 5:
        raise ValueError(f'samples must be uint8[B * num_samples, T, H, W, C]; got shape '
                         f'{samples.shape}.')
    if num_samples < 1 or samples.shape[0] % num_samples:
        raise ValueError(f'{samples.shape[0]} sampled videos are not a multiple of '
                         f'num_samples={num_samples}.')
    if not 0 <= num_context <= samples.shape[1]:
        raise ValueError(f'num_context={num_context} is outside [0, T={samples.shape[1]}].')
    if ground_truth is not None:
        ground_truth = np.asarray(ground_truth)
        expected = (samples.shape[0] // num_samples, ) + samples.shape[1:]
        if ground_truth.shape != expected:
            raise ValueError(f'ground_truth must have shape {expected} (one video per '
                             f'{num_samples} samples); got {ground_truth.shape}.')
        ground_truth = to_rgb(ground_truth)
    return to_rgb(samples), ground_truth


def _rows(samples, ground_truth, num_context, num_samples, t, border, scale):
    """The framed images of time step t for every row of the grid, grouped by video."""
    blocks = []
    for b in range(samples.shape[0] // num_samples):
        rows = []
        for s in range(num_samples):
            color = CONTEXT_COLOR if t < num_context else SAMPLE_COLOR
            rows.append(_framed(samples[b * num_samples + s, t], color, border, scale))
        if ground_truth is not None:
            color = CONTEXT_COLOR if t < num_context else TRUTH_COLOR
            rows.append(_framed(ground_truth[b, t], color, border, scale))
        blocks.append(rows)
    return blocks


def make_grid(samples: np.ndarray,
              ground_truth: Optional[np.ndarray] = None,
              *,
              num_context: int,
              num_samples: int = 1,
              scale: int = 1,
              border: int = 1,
              gap: int = 2,
              block_gap: int = 8,
              background: int = 255) -> np.ndarray:
    """A grid image of sampled continuations, like the paper's Figures 4-7.

    Args:
      samples: uint8[B * num_samples, T, H, W, C] (C = 1 or 3) as returned by `vpn_jax.sample`;
        row b * num_samples + s is sample s of video b.
      ground_truth: uint8[B, T, H, W, C], the true videos, or None.
      num_context: the first `num_context` frames of each row are the given context.
      num_samples: samples per video.
      scale: integer upsampling of each frame (nearest neighbour).
      border: width of the coloured frame around each image.
      gap: pixels between neighbouring frames; block_gap: between the blocks of two videos.
      background: grey level of the gaps.
    Returns:
      uint8[rows * (scale * H + 2 * border + gap) + ..., T * (scale * W + 2 * border + gap), 3].
    """
    samples, ground_truth = _check(samples, ground_truth, num_context, num_samples)
    _, t, h, w, _ = samples.shape
    cell_h, cell_w = scale * h + 2 * border, scale * w + 2 * border
    num_videos = samples.shape[0] // num_samples
    rows_per_video = num_samples + (ground_truth is not None)
    height = num_videos * rows_per_video * (cell_h + gap) + (num_videos - 1) * block_gap - gap
    width = t * (cell_w + gap) - gap
    grid = np.full((height, width, 3), background, np.uint8)
    for step in range(t):
        x = step * (cell_w + gap)
        y = 0
        for rows in _rows(samples, ground_truth, num_context, num_samples, step, border, scale):
            for image in rows:
                grid[y:y + cell_h, x:x + cell_w] = image
                y += cell_h + gap
            y += block_gap
    return grid


def make_animation(samples: np.ndarray,
                   ground_truth: Optional[np.ndarray] = None,
                   *,
                   num_context: int,
                   num_samples: int = 1,
                   scale: int = 1,
                   border: int = 1,
                   gap: int = 2,
                   background: int = 255) -> np.ndarray:
    """Frames of an animation: at time t, all rows of the grid side by side (one column per
    video, its samples then its ground truth stacked vertically); uint8[T, Hg, Wg, 3]."""
    samples, ground_truth = _check(samples, ground_truth, num_context, num_samples)
    _, t, h, w, _ = samples.shape
    cell_h, cell_w = scale * h + 2 * border, scale * w + 2 * border
    num_videos = samples.shape[0] // num_samples
    rows_per_video = num_samples + (ground_truth is not None)
    height = rows_per_video * (cell_h + gap) - gap
    width = num_videos * (cell_w + gap) - gap
    frames = np.full((t, height, width, 3), background, np.uint8)
    for step in range(t):
        blocks = _rows(samples, ground_truth, num_context, num_samples, step, border, scale)
        for b, rows in enumerate(blocks):
            for r, image in enumerate(rows):
                y, x = r * (cell_h + gap), b * (cell_w + gap)
                frames[step, y:y + cell_h, x:x + cell_w] = image
    return frames


def save_png(path: str, image: np.ndarray) -> None:
    """Writes uint8[H, W, 3] (or [H, W]) as a PNG."""
    from PIL import Image
    Image.fromarray(np.asarray(image, np.uint8)).save(path, format='PNG')


def save_gif(path: str, frames: np.ndarray, *, fps: float = 4.0, loop: bool = True) -> None:
    """Writes uint8[T, H, W, 3] as an animated GIF (palette-quantised by Pillow)."""
    from PIL import Image
    frames = np.asarray(frames, np.uint8)
    images = [Image.fromarray(f) for f in frames]
    extra = {'loop': 0} if loop else {}  # loop=0: forever; no loop key: play once.
    images[0].save(path,
                   format='GIF',
                   save_all=True,
                   append_images=images[1:],
                   duration=int(round(1000 / fps)),
                   optimize=False,
                   **extra)


def configure_ffmpeg() -> Optional[str]:
    """Points mediapy at an ffmpeg binary; returns its path, or None when there is none.

    The system's ffmpeg when it is on PATH, else the one inside the imageio-ffmpeg wheel (a
    dependency of vpn_jax), so that mediapy's video display works in a fresh virtualenv.
    """
    import mediapy
    path = shutil.which('ffmpeg')
    if path is None:
        try:
            import imageio_ffmpeg
            path = imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError):
            return None
    mediapy.set_ffmpeg(path)
    return path


def gif_bytes(frames: np.ndarray, *, fps: float = 4.0) -> bytes:
    """uint8[T, H, W, C] (C = 1 or 3) as the bytes of a looping GIF."""
    from PIL import Image
    frames = to_rgb(np.asarray(frames))
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer,
                   format='GIF',
                   save_all=True,
                   append_images=images[1:],
                   duration=int(round(1000 / fps)),
                   loop=0)
    return buffer.getvalue()


def show_videos(videos: np.ndarray,
                *,
                titles: Optional[Sequence[str]] = None,
                fps: float = 4.0,
                scale: int = 2,
                codec: str = 'auto') -> str:
    """Plays videos side by side in a notebook; returns the codec used ('h264' or 'gif').

    videos: uint8[N, T, H, W, C] (C = 1 or 3), e.g. what `vpn_jax.sample` returns.
    codec: 'auto' (mediapy's h264 when an ffmpeg is found, see `configure_ffmpeg`, else GIFs
      drawn by Pillow), 'h264' or 'gif'.
    """
    from IPython import display
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.dtype != np.uint8:
        raise ValueError(f'videos must be uint8[N, T, H, W, C]; got {videos.dtype} '
                         f'{list(videos.shape)}.')
    if codec not in ('auto', 'h264', 'gif'):
        raise ValueError(f"codec must be 'auto', 'h264' or 'gif'; got {codec!r}.")
    videos = np.repeat(np.repeat(to_rgb(videos), scale, axis=2), scale, axis=3)
    if codec != 'gif' and configure_ffmpeg() is not None:
        import mediapy
        mediapy.show_videos(list(videos), titles=titles, fps=fps, codec='h264')
        return 'h264'
    if codec == 'h264':
        raise RuntimeError('No ffmpeg: install imageio-ffmpeg (pip install imageio-ffmpeg) or '
                           "use codec='gif'.")
    cells = []
    for i, video in enumerate(videos):
        data = base64.b64encode(gif_bytes(video, fps=fps)).decode('ascii')
        title = '' if titles is None else f'<div>{titles[i]}</div>'
        cells.append(f'<td style="padding:4px;text-align:center">{title}'
                     f'<img src="data:image/gif;base64,{data}"/></td>')
    display.display(display.HTML('<table><tr>' + ''.join(cells) + '</tr></table>'))
    return 'gif'
