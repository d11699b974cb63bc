"""The Video Pixel Network (sect. 3) and its baseline, assembled from a config.

Tensor layout: videos are uint8[B, T, H, W, C] (batch, time, row, column, colour). The encoder
reads frames 0..T-2, the ConvLSTM turns them into contexts, and the decoder for frame t (t >= 1)
reads the context after frame t-1 together with frame t itself (teacher forcing; the VPN's masks
hide each sub-pixel and everything after it). The output for frame t is entry t-1 of
`logits: float32[B, T-1, H, W, C, 256]` ('softmax') or `float32[B, T-1, H, W, C]` ('sigmoid').
"""

from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vpn_jax.model.conv_lstm import Carry, ConvLSTM
from vpn_jax.model.decoder import Decoder
from vpn_jax.model.encoder import Encoder, remat_policy_name
from vpn_jax.model.multiplicative_unit import ResidualMultiplicativeBlock
from vpn_jax.model.residual_block import ReluResidualBlock

BLOCKS = {'rmb': ResidualMultiplicativeBlock, 'relu': ReluResidualBlock}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def to_float(frames: jax.Array) -> jax.Array:
    """uint8 pixels -> float32 in [-1, 1]."""
    return frames.astype(jnp.float32) / 127.5 - 1.0


class VideoPixelNetwork(nn.Module):
    """The VPN (decoder='pixelcnn') or the baseline (decoder='baseline'); see `build_model`."""
    decoder: str = 'pixelcnn'
    block: str = 'rmb'
    channels: int = 128
    encoder_blocks: int = 8
    decoder_blocks: int = 12
    encoder_dilations: Tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    lstm_channels: int = 256
    top_channels: int = 768
    output: str = 'softmax'
    num_colors: int = 3
    action_dim: int = 0
    state_dim: int = 0
    dtype: str = 'float32'
    remat: str = 'none'

    def setup(self):
        dtype = DTYPES[self.dtype]
        block_cls = BLOCKS[self.block]
        self.encoder = Encoder(block_cls,
                               channels=self.channels,
                               num_blocks=self.encoder_blocks,
                               dilations=tuple(self.encoder_dilations),
                               dtype=dtype,
                               remat=self.remat)
        self.lstm = ConvLSTM(self.lstm_channels, dtype=dtype)
        self.frame_decoder = Decoder(block_cls,
                                     channels=self.channels,
                                     num_blocks=self.decoder_blocks,
                                     top_channels=self.top_channels,
                                     num_colors=self.num_colors,
                                     output=self.output,
                                     masked=self.decoder == 'pixelcnn',
                                     dtype=dtype,
                                     remat=self.remat)

    # ----------------------------------------------------------------------------- checks
    def check_inputs(self, video, actions=None, states=None, *, min_frames: int = 2) -> None:
        """Raises ValueError naming what was expected (shapes, dtype, colours, vector sizes)."""
        shape = getattr(video, 'shape', None)
        if shape is None or len(shape) != 5:
            raise ValueError(f'video must be uint8[B, T, H, W, C]; got shape {shape}.')
        if video.dtype != jnp.uint8:
            raise ValueError(f'video must have dtype uint8 (raw pixels 0..255); got {video.dtype}. '
                             'Pass e.g. np.asarray(video, np.uint8).')
        b, t, _, _, c = shape
        if c != self.num_colors:
            raise ValueError(f'video has {c} colour channels but the model was built with '
                             f'num_colors={self.num_colors}; pass uint8[B, T, H, W, '
                             f'{self.num_colors}].')
        if t < min_frames:
            raise ValueError(f'video needs at least {min_frames} frames; got T={t}.')
        for name, vec, dim, full in (('actions', actions, self.action_dim, True),
                                     ('states', states, self.state_dim, False)):
            if dim == 0:
                if vec is not None:
                    raise ValueError(f'The model was built with {name[:-1]}_dim=0 but {name} were '
                                     f'given; build it with {name[:-1]}_dim={vec.shape[-1]} or '
                                     f'pass {name}=None.')
                continue
            expected = f'float[{b}, {t}, {dim}]' if full else f'float[{b}, T_s <= {t}, {dim}]'
            if vec is None or len(vec.shape) != 3:
                raise ValueError(f'{name} must be {expected}; got '
                                 f'{None if vec is None else vec.shape}.')
            ok_time = vec.shape[1] == t if full else 1 <= vec.shape[1] <= t
            if vec.shape[0] != b or vec.shape[2] != dim or not ok_time:
                raise ValueError(f'{name} must be {expected}; got {tuple(vec.shape)}.')

    def conditioning(self, num_frames: int, actions=None, states=None) -> Optional[jax.Array]:
        """Per-frame conditioning vector float32[B, T, A + S], or None when unconditioned.

        Frame t gets [a_t, s_t]; states exist only for the first T_s (context) frames and are
        zero afterwards (sect. 6.1: later frames are conditioned on actions only).
        """
        parts = []
        if self.action_dim:
            parts.append(jnp.asarray(actions, jnp.float32))
        if self.state_dim:
            states = jnp.asarray(states, jnp.float32)
            pad = num_frames - states.shape[1]
            parts.append(jnp.pad(states, ((0, 0), (0, pad), (0, 0))))
        return jnp.concatenate(parts, axis=-1) if parts else None

    # ----------------------------------------------------------------------------- parts
    def encode(self, frames: jax.Array, cond: Optional[jax.Array] = None) -> jax.Array:
        """frames: uint8[B, T, H, W, C]; cond: float[B, T, D] -> float[B, T, H, W, 2c]."""
        b, t = frames.shape[:2]
        flat = to_float(frames).reshape((b * t, ) + frames.shape[2:])
        flat_cond = None if cond is None else cond.reshape(b * t, -1)
        h = self.encoder(flat, flat_cond)
        return h.reshape((b, t) + h.shape[1:])

    def contexts(self,
                 encoded: jax.Array,
                 carry: Optional[Carry] = None) -> Tuple[Carry, jax.Array]:
        """The ConvLSTM over encoded frames: float[B, T, H, W, 2c] -> (carry, float32[B, T, H, W, L]).

        Entry t summarises frames 0..t; `carry` is the state before frame 0 (None: zeros), and the
        returned one continues after frame T-1 (the sampler's one-frame steps).
        """
        return self.lstm(encoded, carry)

    def decode(self,
               frames: jax.Array,
               context: jax.Array,
               cond: Optional[jax.Array] = None) -> jax.Array:
        """Logits of frames given their contexts (teacher forcing).

        frames: uint8[B, T, H, W, C]; context: float[B, T, H, W, L] (context[:, t] is the
        ConvLSTM output after the frame *before* frames[:, t]); cond: float[B, T, D] or None.
        Returns float32[B, T, H, W, C, 256] or float32[B, T, H, W, C].
        """
        b, t = frames.shape[:2]
        merge = lambda x: None if x is None else x.reshape((b * t, ) + x.shape[2:])
        logits = self.frame_decoder(to_float(merge(frames)), merge(context), merge(cond))
        return logits.reshape((b, t) + logits.shape[1:])

    def __call__(self, video: jax.Array, actions=None, states=None) -> jax.Array:
        """Teacher-forced logits for frames 1..T-1.

        Args:
          video: uint8[B, T, H, W, C].
          actions: float[B, T, action_dim] (action t pairs with frame t), or None.
          states: float[B, T_s, state_dim] for the first T_s <= T (context) frames, or None.
        Returns:
          float32[B, T-1, H, W, C, 256] ('softmax') or float32[B, T-1, H, W, C] ('sigmoid');
          entry t-1 is the distribution of frame t given frames < t and, for the VPN, the
          sub-pixels of frame t earlier in (row, column, colour) order.
        """
        self.check_inputs(video, actions, states)
        t = video.shape[1]
        cond = self.conditioning(t, actions, states)
        enc_cond, dec_cond = (None, None) if cond is None else (cond[:, :-1], cond[:, 1:])
        _, context = self.contexts(self.encode(video[:, :-1], enc_cond))
        return self.decode(video[:, 1:], context, dec_cond)


MODEL_FIELDS = ('decoder', 'block', 'channels', 'encoder_blocks', 'decoder_blocks',
                'encoder_dilations', 'lstm_channels', 'top_channels', 'output', 'num_colors',
                'action_dim', 'state_dim')
OPTIONAL_FIELDS = ('dtype', 'remat')
# Fields older configs may carry that no longer change anything (accepted and ignored).
RETIRED_FIELDS = ('image_chunk', )


def build_model(config: ml_collections.ConfigDict) -> VideoPixelNetwork:
    """Builds the VPN or baseline from a model config; raises ValueError on a bad config.

    Required fields: decoder ('pixelcnn' | 'baseline'), block ('rmb' | 'relu'), channels (c),
    encoder_blocks, decoder_blocks, encoder_dilations (tuple, one entry per encoder block, or
    empty), lstm_channels, top_channels, output ('softmax' | 'sigmoid'), num_colors (1 | 3),
    action_dim, state_dim (0 when unconditioned). Optional: dtype ('float32' | 'bfloat16'),
    remat (a name in `encoder.REMAT_POLICIES`: 'none', 'blocks', 'convs'; the bools of older
    configs load as True -> 'blocks', False -> 'none'). Fields in `RETIRED_FIELDS` are ignored,
    so that old checkpoints still load.
    """
    missing = [f for f in MODEL_FIELDS if f not in config]
    if missing:
        raise ValueError(f'Model config lacks fields {missing}; it needs {list(MODEL_FIELDS)}.')
    unknown = [f for f in config if f not in MODEL_FIELDS + OPTIONAL_FIELDS + RETIRED_FIELDS]
    if unknown:
        raise ValueError(f'Unknown model config fields {unknown}; known: '
                         f'{list(MODEL_FIELDS + OPTIONAL_FIELDS)}.')
    kwargs = {f: config[f] for f in MODEL_FIELDS + OPTIONAL_FIELDS if f in config}
    kwargs['encoder_dilations'] = tuple(int(d) for d in kwargs['encoder_dilations'])

    def expect(ok, message):
        if not ok:
            raise ValueError(message)

    expect(kwargs['decoder'] in ('pixelcnn', 'baseline'),
           f"decoder must be 'pixelcnn' or 'baseline', got {kwargs['decoder']!r}.")
    expect(kwargs['block'] in BLOCKS, f"block must be 'rmb' or 'relu', got {kwargs['block']!r}.")
    expect(kwargs['output'] in ('softmax', 'sigmoid'),
           f"output must be 'softmax' or 'sigmoid', got {kwargs['output']!r}.")
    expect(kwargs['num_colors'] in (1, 3),
           f"num_colors must be 1 or 3, got {kwargs['num_colors']}.")
    expect(kwargs['output'] == 'softmax' or kwargs['num_colors'] == 1,
           "output='sigmoid' models grayscale video (Moving MNIST): use num_colors=1.")
    dilations = kwargs['encoder_dilations']
    expect(
        len(dilations) in (0, kwargs['encoder_blocks']) and all(d >= 1 for d in dilations),
        f"encoder_dilations must be empty or hold one positive rate per encoder block "
        f"({kwargs['encoder_blocks']}); got {dilations}.")
    for f in ('channels', 'lstm_channels', 'top_channels'):
        expect(kwargs[f] >= 3, f'{f} must be at least 3 (one channel per colour group); '
               f'got {kwargs[f]}.')
    for f in ('encoder_blocks', 'decoder_blocks', 'action_dim', 'state_dim'):
        expect(kwargs[f] >= 0, f'{f} must be >= 0; got {kwargs[f]}.')
    expect(
        kwargs.get('dtype', 'float32') in DTYPES,
        f"dtype must be one of {list(DTYPES)}; got {kwargs.get('dtype')!r}.")
    if 'remat' in kwargs:
        kwargs['remat'] = remat_policy_name(kwargs['remat'])  # Raises ValueError, listing names.
    return VideoPixelNetwork(**kwargs)


def count_params(params: Any) -> int:
    """Number of scalars in a parameter tree."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


def init_variables(module: VideoPixelNetwork,
                   rng: jax.Array,
                   *,
                   height: int,
                   width: int,
                   num_frames: int = 2) -> Any:
    """Initial variables for `module` on inputs of the given frame size (batch 1)."""
    video = jnp.zeros((1, num_frames, height, width, module.num_colors), jnp.uint8)
    actions = jnp.zeros((1, num_frames, module.action_dim)) if module.action_dim else None
    states = jnp.zeros((1, num_frames, module.state_dim)) if module.state_dim else None
    return module.init(rng, video, actions, states)
