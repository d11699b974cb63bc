"""Grid and GIF layout: which frame lands where, borders, files that read back."""

import numpy as np
import pytest
from PIL import Image

from vpn_jax import visualize

B, S, T, H, W = 2, 3, 4, 5, 6


def videos(colors=3):
    """Every frame a constant whose value encodes (row, t): distinguishable after layout."""
    samples = np.zeros((B * S, T, H, W, colors), np.uint8)
    for n in range(B * S):
        for t in range(T):
            samples[n, t] = 10 * n + t
    truth = np.zeros((B, T, H, W, colors), np.uint8)
    for b in range(B):
        for t in range(T):
            truth[b, t] = 200 + 10 * b + t
    return samples, truth


@pytest.mark.parametrize('colors', [1, 3])
def test_grid_places_samples_then_ground_truth_per_video(colors):
    samples, truth = videos(colors)
    border, gap, block_gap, scale = 1, 2, 8, 2
    grid = visualize.make_grid(samples,
                               truth,
                               num_context=2,
                               num_samples=S,
                               scale=scale,
                               border=border,
                               gap=gap,
                               block_gap=block_gap)
    cell_h, cell_w = scale * H + 2 * border, scale * W + 2 * border
    assert grid.dtype == np.uint8
    assert grid.shape == (B * (S + 1) * (cell_h + gap) + (B - 1) * block_gap - gap,
                          T * (cell_w + gap) - gap, 3)
    for b in range(B):
        for r in range(S + 1):
            y = (b * (S + 1) + r) * (cell_h + gap) + b * block_gap
            for t in range(T):
                x = t * (cell_w + gap)
                cell = grid[y:y + cell_h, x:x + cell_w]
                inner = cell[border:-border, border:-border]
                value = 10 * (b * S + r) + t if r < S else 200 + 10 * b + t
                assert np.all(inner == value), (b, r, t)
                if t < 2:
                    expected_border = visualize.CONTEXT_COLOR
                elif r < S:
                    expected_border = visualize.SAMPLE_COLOR
                else:
                    expected_border = visualize.TRUTH_COLOR
                np.testing.assert_array_equal(cell[0, 0], expected_border)


def test_grid_without_ground_truth_and_bad_shapes():
    samples, truth = videos()
    grid = visualize.make_grid(samples, num_context=1, num_samples=S, border=0, gap=0, block_gap=0)
    assert grid.shape == (B * S * H, T * W, 3)
    np.testing.assert_array_equal(grid[H:2 * H, W:2 * W], samples[1, 1])
    with pytest.raises(ValueError, match='multiple of num_samples'):
        visualize.make_grid(samples[:5], num_context=1, num_samples=S)
    with pytest.raises(ValueError, match='ground_truth must have shape'):
        visualize.make_grid(samples, truth[:1], num_context=1, num_samples=S)
    with pytest.raises(ValueError, match='num_context'):
        visualize.make_grid(samples, num_context=T + 1, num_samples=S)
    with pytest.raises(ValueError, match='uint8'):
        visualize.make_grid(samples.astype(np.float32), num_context=1, num_samples=S)


def test_png_and_gif_read_back(tmp_path):
    samples, truth = videos()
    grid = visualize.make_grid(samples, truth, num_context=2, num_samples=S)
    visualize.save_png(str(tmp_path / 'grid.png'), grid)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'grid.png').convert('RGB')),
                                  grid)
    frames = visualize.make_animation(samples, truth, num_context=2, num_samples=S, border=0, gap=0)
    assert frames.shape == (T, (S + 1) * H, B * W, 3)
    np.testing.assert_array_equal(frames[3, H:2 * H, W:2 * W], samples[S + 1, 3])
    np.testing.assert_array_equal(frames[1, S * H:, :W], truth[0, 1])
    visualize.save_gif(str(tmp_path / 'video.gif'), frames, fps=5)
    gif = Image.open(tmp_path / 'video.gif')
    assert gif.n_frames == T and gif.size == (B * W, (S + 1) * H)
    assert gif.info.get('loop') == 0 and gif.info.get('duration') == 200
    for t in range(T):
        gif.seek(t)
        np.testing.assert_array_equal(np.asarray(gif.convert('RGB')), frames[t])
