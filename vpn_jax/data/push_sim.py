"""PushSim: a procedural action-conditioned pushing dataset that trains on a CPU.

A stand-in for Robotic Pushing with the same features, small enough to check on this machine that
an action-conditioned VPN uses its actions (given the true actions it should reach a clearly
lower NLL than given shuffled ones). A 64x64 RGB "basket" (a textured floor inside a wall) holds
a gripper (a square with a dark outline and a bright centre) and a few coloured blocks. Each step
the gripper is commanded to move by an integer displacement; it pushes every block in its way
(blocks push blocks), and stops where a block would leave the floor.

Per sequence (T = 20 frames by default):

    video:  uint8[T, S, S, 3]      S = 64 // config.downsample (64 by default)
    action: float32[T, 2]  commanded displacement (dy, dx) in pixels / ACTION_SCALE from frame t to
                           frame t + 1 (the last action is commanded but its result is not shown)
    state:  float32[T, 2]  gripper top-left (y, x) in frame t, divided by 64

Like the real data, the transitions are not always what the action asks for: a blocked gripper
stays short of its commanded position. Everything is a pure function of `(seed, index)`:
`PushSimSource(seed, size)` is a random-access source (`len`, `[i]`, `__getitems__`) that
`vpn_jax.data.pushing.train_batch` / `eval_batches` read like a `tfds.data_source`.
"""

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np

SIZE = 64
WALL = 4  # Wall thickness; the floor is [WALL, SIZE - WALL) in both axes.
GRIPPER = 8
BLOCK = 10
MAX_SPEED = 4  # Largest |commanded displacement| per axis and step, in pixels.
ACTION_SCALE = float(MAX_SPEED)
ACTION_DIM = 2
STATE_DIM = 2
BLOCK_COLOURS = np.array([[220, 40, 40], [40, 170, 60], [40, 80, 220], [230, 200, 40]], np.uint8)


@dataclasses.dataclass(frozen=True)
class PushSimConfig:
    """Generator options."""
    num_frames: int = 20
    num_blocks: int = 3
    # Probability per step that the commanded displacement is redrawn (else it is kept; it is
    # always redrawn after a step in which the gripper was blocked).
    turn_probability: float = 0.3
    # Area downsampling of the rendered 64x64 frames by this factor (1, 2 or 4; 64 // factor
    # pixels a side). Smaller frames keep the whole scene, and the gripper, in view of a model
    # small enough to train on a CPU.
    downsample: int = 1
    # Each sequence draws its floor colour (True), or all share one grey floor (False). A fixed
    # floor makes the static pixels easy to predict, so that the NLL a model can still lose is
    # mostly in the pixels the gripper changes, the ones the actions determine.
    random_floor: bool = True

    def __post_init__(self):
        if self.downsample not in (1, 2, 4):
            raise ValueError(f'downsample must be 1, 2 or 4 (frames of 64, 32 or 16 pixels); '
                             f'got {self.downsample}.')


def _overlap(a: Tuple[int, int, int], b: Tuple[int, int, int]) -> bool:
    """Whether squares (y, x, size) a and b overlap."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[2] and b[1] < a[1] + a[2]


def _inside(y: int, x: int, size: int) -> bool:
    return WALL <= y and WALL <= x and y + size <= SIZE - WALL and x + size <= SIZE - WALL


def _step_one_pixel(gripper: List[int], blocks: List[List[int]], dy: int, dx: int) -> bool:
    """Moves the gripper by one pixel (dy, dx), pushing blocks in its way; False if blocked."""
    moving = [(gripper[0] + dy, gripper[1] + dx, GRIPPER)]
    if not _inside(*moving[0]):
        return False
    pushed = set()
    frontier = list(moving)
    while frontier:  # Blocks touched by a moving square move too (chains of blocks).
        square = frontier.pop()
        for i, b in enumerate(blocks):
            if i not in pushed and _overlap(square, (b[0], b[1], BLOCK)):
                new = (b[0] + dy, b[1] + dx, BLOCK)
                if not _inside(*new):
                    return False
                pushed.add(i)
                frontier.append(new)
    gripper[0] += dy
    gripper[1] += dx
    for i in pushed:
        blocks[i][0] += dy
        blocks[i][1] += dx
    return True


def _move(gripper: List[int], blocks: List[List[int]], dy: int, dx: int) -> None:
    """Moves pixel by pixel along y, then along x, stopping an axis where it is blocked."""
    for delta, axis in ((dy, 0), (dx, 1)):
        unit = (int(np.sign(delta)), 0) if axis == 0 else (0, int(np.sign(delta)))
        for _ in range(abs(delta)):
            if not _step_one_pixel(gripper, blocks, *unit):
                break


def _background(rng: np.random.Generator, random_floor: bool) -> np.ndarray:
    floor = rng.integers(150, 200, size=3)  # Drawn either way: the scene is otherwise the same.
    if not random_floor:
        floor = np.array([175, 175, 175])
    image = np.empty((SIZE, SIZE, 3), np.int32)
    image[:] = floor
    yy, xx = np.mgrid[:SIZE, :SIZE]
    image += (((yy // 8 + xx // 8) % 2) * 12)[..., None]  # Checkered floor.
    image[:WALL] = image[-WALL:] = image[:, :WALL] = image[:, -WALL:] = (90, 70, 50)
    return image.astype(np.uint8)


def _render(background: np.ndarray, gripper: Sequence[int], blocks: Sequence[Sequence[int]],
            colours: np.ndarray) -> np.ndarray:
    frame = background.copy()
    for (y, x), c in zip(blocks, colours):
        frame[y:y + BLOCK, x:x + BLOCK] = c
        frame[y + 3:y + BLOCK - 3, x + 3:x + BLOCK - 3] = c // 2  # A darker centre.
    y, x = gripper
    frame[y:y + GRIPPER, x:x + GRIPPER] = (30, 30, 30)
    frame[y + 2:y + GRIPPER - 2, x + 2:x + GRIPPER - 2] = (250, 250, 250)
    return frame


def generate(seed: int, index: int,
             config: PushSimConfig = PushSimConfig()) -> Dict[str, np.ndarray]:
    """Sequence number `index` of the stream `seed` (a pure function of both).

    Returns:
      video uint8[T, S, S, 3], action float32[T, 2], state float32[T, 2] (see module doc).
    """
    rng = np.random.default_rng([seed, index])
    background = _background(rng, config.random_floor)
    colours = BLOCK_COLOURS[rng.permutation(len(BLOCK_COLOURS))[:config.num_blocks]]
    # Non-overlapping start positions for the gripper and the blocks.
    squares: List[Tuple[int, int, int]] = []
    for size in [GRIPPER] + [BLOCK] * config.num_blocks:
        while True:
            y, x = rng.integers(WALL, SIZE - WALL - size + 1, size=2)
            square = (int(y), int(x), size)
            if not any(_overlap((y - 2, x - 2, size + 4), s) for s in squares):
                squares.append(square)
                break
    gripper = [squares[0][0], squares[0][1]]
    blocks = [[s[0], s[1]] for s in squares[1:]]
    frames, actions, states = [], [], []
    command = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=2)
    blocked = False
    for _ in range(config.num_frames):
        frames.append(_render(background, gripper, blocks, colours))
        states.append(np.array(gripper, np.float32) / SIZE)
        if blocked or rng.random() < config.turn_probability:
            command = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=2)
        actions.append(command.astype(np.float32) / ACTION_SCALE)
        target = [gripper[0] + int(command[0]), gripper[1] + int(command[1])]
        _move(gripper, blocks, int(command[0]), int(command[1]))
        blocked = gripper != target  # A blocked gripper is given a new command.
    video = np.stack(frames)
    if config.downsample > 1:
        video = _area_downsample(video, config.downsample)
    return {'video': video, 'action': np.stack(actions), 'state': np.stack(states)}


def _area_downsample(video: np.ndarray, factor: int) -> np.ndarray:
    """uint8[T, H, W, C] -> uint8[T, H / factor, W / factor, C], mean of each block, rounded."""
    t, h, w, c = video.shape
    blocks = video.reshape(t, h // factor, factor, w // factor, factor, c).astype(np.float32)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class PushSimSource:
    """Random-access source of `size` PushSim sequences: `source[i] == generate(seed, i, config)`.

    Use different seeds for training, validation and test (e.g. 0, 1, 2).
    """
    seed: int
    size: int
    config: PushSimConfig = PushSimConfig()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
        index = int(index)
        if not 0 <= index < self.size:
            raise IndexError(f'index {index} out of range for {self.size} sequences')
        return generate(self.seed, index, self.config)

    def __getitems__(self, indices: Sequence[int]) -> List[Dict[str, np.ndarray]]:
        return [self[i] for i in indices]
