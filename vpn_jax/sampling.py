"""Sampling video continuations from a trained VPN (sect. 2), frame by frame, sub-pixel by
sub-pixel.

`sample` encodes the given frames once, then runs a `jax.lax.scan` over the frames to generate.
Each scan step samples one frame from the decoder given the ConvLSTM output after the previous
frame, encodes the sampled frame and advances the ConvLSTM one step; the recurrent state is the
scan's carry, so no frame is ever encoded twice.

Inside a frame the PixelCNN decoder is evaluated incrementally (`sample_frame_fast`), in the
spirit of "Fast Generation for Convolutional Autoregressive Models" (Ramachandran et al. 2017):

* Every decoder layer with a spatial kernel (the 7x7 mask-A input convolution, the MUs' 3x3
  gates, the ReLU blocks' 3x3 convolutions) keeps its *inputs* of the q = k // 2 rows above
  (a rolling buffer, float[B, q, W + 2q, Cin]) and of the q pixels to the left in the current
  row (float[B, q, Cin]). The masks guarantee that an activation at position p depends only on
  positions before p (and on p's earlier colours), so buffered values are final once written.
* At the start of each row, the contribution of the rows above (the kernel's upper rows, which
  the masks leave whole) is computed for the whole row at once: one small convolution per layer,
  i.e. a matrix-matrix product that reads each weight once per row instead of once per pixel.
* Per pixel, a layer then adds only the taps to the left and the centre tap, as one
  matrix-vector product per layer and colour group. 1x1 convolutions need no buffer. The
  context and conditioning terms are computed once per frame for all positions.
* Colours: sub-pixel R, then G, then B of the same pixel. At colour step g only the channels of
  colour group g of every layer are computed (their inputs, groups <= g at the centre, are known
  by then; mask A's centre sees groups < g). Every weight is therefore read once per pixel, not
  once per sub-pixel, and the left/upper contributions are shared by the three colours.

The incremental forms of the layers and blocks sit next to the modules they mirror:
`model/masked_conv.py:IncrementalConv`, `model/multiplicative_unit.py:IncrementalRMB` and
`model/residual_block.py:IncrementalReluBlock`; `sample_frame_fast` assembles them like `Decoder`
and keeps the buffers.

`sample_frame_naive` is the reference: it runs the whole decoder on the whole frame for every
sub-pixel. The baseline decoder (decoder='baseline') does not see the frame it predicts, so both
methods sample its frames in one shot.

Sampling is Gumbel-max for the 256-way softmax, argmax(logits + temperature * gumbel), and its
logistic analogue for 'sigmoid' outputs, 255 * [logit + temperature * logistic > 0]; with the
same noise both samplers make the same choices, and temperature 0 is the argmax (p > 0.5).
The noise of frame t is drawn from `jax.random.fold_in(rng, t)` for the whole frame at once.
"""

import functools
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from vpn_jax import xla_cpu
from vpn_jax.model.masked_conv import IncrementalConv, conditioned_bias, group_slice, set_group
from vpn_jax.model.multiplicative_unit import IncrementalRMB
from vpn_jax.model.residual_block import IncrementalReluBlock
from vpn_jax.model.vpn import DTYPES, VideoPixelNetwork, to_float

METHODS = ('fast', 'naive')


# ------------------------------------------------------------------------------------ noise
def frame_noise(key: jax.Array, shape: Tuple[int, ...], output: str) -> jax.Array:
    """Noise for one frame: float32[B, H, W, C, 256] Gumbel ('softmax') or [B, H, W, C] logistic.

    shape: (B, H, W, C).
    """
    if output == 'softmax':
        return jax.random.gumbel(key, tuple(shape) + (256, ), jnp.float32)
    return jax.random.logistic(key, tuple(shape), jnp.float32)


def draw(logits: jax.Array, noise: jax.Array, temperature: jax.Array, output: str) -> jax.Array:
    """Sub-pixel values from logits and noise; uint8 with the shape of `noise` without 256.

    logits, noise: float[..., 256] ('softmax') or float[...] ('sigmoid'). temperature: scalar
    >= 0. 'softmax': argmax(logits + temperature * gumbel), a sample from
    softmax(logits / temperature). 'sigmoid': 255 where logits + temperature * logistic > 0,
    else 0 (Bernoulli(sigmoid(logits / temperature)); temperature 0: p > 0.5).
    """
    perturbed = logits.astype(jnp.float32) + temperature * noise
    if output == 'softmax':
        return jnp.argmax(perturbed, axis=-1).astype(jnp.uint8)
    return jnp.where(perturbed > 0, 255, 0).astype(jnp.uint8)


# ------------------------------------------------------------------------------------ naive
def sample_frame_naive(module: VideoPixelNetwork,
                       variables: Any,
                       frame_context: jax.Array,
                       cond: Optional[jax.Array],
                       noise: jax.Array,
                       temperature: jax.Array,
                       num_steps: Optional[int] = None) -> jax.Array:
    """One frame by re-running the full decoder for every sub-pixel (the reference sampler).

    Args:
      module, variables: a `VideoPixelNetwork` and its variables.
      frame_context: float32[B, H, W, L], the ConvLSTM output after the previous frame.
      cond: float[B, D] or None, the conditioning of the frame being sampled.
      noise: from `frame_noise`, float32[B, H, W, C(, 256)].
      temperature: scalar >= 0.
      num_steps: sample only the first `num_steps` sub-pixels in (row, column, colour) order
        (for timing); None for all H * W * C.
    Returns:
      uint8[B, H, W, C] (sub-pixels not sampled are 0).
    """
    b, h, w, _ = frame_context.shape
    colors = module.num_colors
    decode = lambda frame: module.apply(variables,
                                        frame[:, None],
                                        frame_context[:, None],
                                        None if cond is None else cond[:, None],
                                        method=VideoPixelNetwork.decode)[:, 0]
    frame = jnp.zeros((b, h, w, colors), jnp.uint8)
    if module.decoder != 'pixelcnn':
        return draw(decode(frame), noise, temperature, module.output)

    def body(n, frame):
        i, j, c = n // (w * colors), (n // colors) % w, n % colors
        logits = decode(frame)[:, i, j, c]
        value = draw(logits, noise[:, i, j, c], temperature, module.output)
        return frame.at[:, i, j, c].set(value)

    return jax.lax.fori_loop(0, h * w * colors if num_steps is None else num_steps, body, frame)


# ------------------------------------------------------------------------------------ fast
INCREMENTAL_BLOCKS = {'rmb': IncrementalRMB, 'relu': IncrementalReluBlock}
INPUT = (-1, 'input')  # The decoder's first layer among the blocks' (index, name) keys.


def sample_frame_fast(module: VideoPixelNetwork, variables: Any, frame_context: jax.Array,
                      cond: Optional[jax.Array], noise: jax.Array,
                      temperature: jax.Array) -> jax.Array:
    """One frame with the incremental PixelCNN decoder (see the module docstring).

    Args:
      module, variables: a `VideoPixelNetwork` and its variables.
      frame_context: float32[B, H, W, L], the ConvLSTM output after the previous frame.
      cond: float[B, D] or None, the conditioning of the frame being sampled.
      noise: from `frame_noise`, float32[B, H, W, C(, 256)].
      temperature: scalar >= 0.
    Returns:
      uint8[B, H, W, C], the same values as `sample_frame_naive` given the same noise (up to
      float rounding in near-ties).
    """
    if module.decoder != 'pixelcnn':
        return sample_frame_naive(module, variables, frame_context, cond, noise, temperature)
    params = variables['params']['frame_decoder']
    dtype = DTYPES[module.dtype]
    b, h, w, _ = frame_context.shape
    colors, width = module.num_colors, 2 * module.channels
    layer = functools.partial(
        IncrementalConv,
        num_colors=colors,
        cond=cond,
        batch=b,
        dtype=dtype,
        mask_type='B',
        matmul=xla_cpu.small_batch_matmul if jax.default_backend() == 'cpu' else jnp.matmul)
    # The decoder's layers, as in `Decoder`: the context 1x1 (unmasked, so computed once per
    # frame for all positions), the 7x7 mask-A input layer, the blocks, top and logits.
    base = (frame_context.astype(dtype) @ params['context']['kernel'][0, 0].astype(dtype) +
            conditioned_bias(params['context'], cond, b, dtype)[:, None, None])
    first = layer(params['input'], mask_type='A')
    blocks = [
        INCREMENTAL_BLOCKS[module.block](params[f'block_{i}'], layer, colors)
        for i in range(module.decoder_blocks)
    ]
    top, last = layer(params['top']), layer(params['logits'])
    # The layers with spatial kernels, whose inputs in the rows above and the pixels to the left
    # are buffered: (block index, layer name) -> IncrementalConv; the first layer is (-1, 'input').
    spatial = {INPUT: first}
    spatial.update({
        (i, name): conv
        for i, blk in enumerate(blocks)
        for name, conv in blk.spatial.items()
    })

    def pixel_colors(base_px: jax.Array, pre: Dict[Any, jax.Array], left: Dict[Any, jax.Array],
                     noise_px: jax.Array) -> Tuple[jax.Array, Dict[Any, jax.Array]]:
        """All colours of one pixel -> (uint8[B, C], the spatial layers' inputs float[B, Cin]).

        base_px: float[B, 2c], the context term; pre[key]: float[B, Cout], `rows_above` at this
        pixel; left[key]: float[B, q * Cin]; noise_px: float32[B, C(, 256)].
        """
        values = jnp.zeros((b, colors), jnp.uint8)
        frame_in = jnp.zeros((b, colors), dtype)  # The first layer's input: the sampled colours.
        streams = [jnp.zeros((b, width), dtype) for _ in range(len(blocks) + 1)]
        block_inputs = [blk.zero_inputs(b, dtype) for blk in blocks]
        top_in = jnp.zeros((b, width), dtype)
        logits_in = jnp.zeros((b, module.top_channels), dtype)
        for g in range(colors):
            h = group_slice(base_px, g, colors) + first.group(g, pre[INPUT], frame_in, left[INPUT])
            streams[0] = set_group(streams[0], g, h, colors)
            for i, blk in enumerate(blocks):
                block_pre = {name: pre[(i, name)] for name in blk.spatial}
                block_left = {name: left[(i, name)] for name in blk.spatial}
                h = blk.group(g, streams[i], block_inputs[i], block_pre, block_left)
                streams[i + 1] = set_group(streams[i + 1], g, h, colors)
            top_in = set_group(top_in, g, jax.nn.relu(h), colors)
            t = top.group(g, top.bias, top_in)
            logits_in = set_group(logits_in, g, jax.nn.relu(t), colors)
            logits = last.group(g, last.bias, logits_in)
            if module.output == 'sigmoid':
                logits = logits[:, 0]
            value = draw(logits, noise_px[:, g], temperature, module.output)
            values = values.at[:, g].set(value)
            frame_in = frame_in.at[:, g].set(to_float(value).astype(dtype))
        inputs = {INPUT: frame_in}
        inputs.update({
            (i, name): block_inputs[i][name]
            for i, blk in enumerate(blocks)
            for name in blk.spatial
        })
        return values, inputs

    def row(above, xs):
        """One row. above[key]: float[B, q, W + 2q, Cin], the layer's inputs in the q rows
        above (zero-padded at the sides; zeros above the frame)."""
        base_row, noise_row = xs
        pre_row = {key: conv.rows_above(above[key]) for key, conv in spatial.items()}

        def pixel(left, xs):
            """One pixel. left[key]: float[B, q, Cin], the layer's inputs at the q pixels to the
            left (zeros left of the frame)."""
            base_px, noise_px, pre_px = xs
            flat = {key: left[key].reshape(b, -1) for key in spatial}
            values, inputs = pixel_colors(base_px, pre_px, flat, noise_px)
            left = {
                key: jnp.concatenate([left[key][:, 1:], inputs[key][:, None]], axis=1)
                for key in spatial
            }
            return left, (values, inputs)

        time_major = lambda x: jnp.moveaxis(x, 1, 0)
        left = {key: jnp.zeros((b, conv.q, conv.cin), dtype) for key, conv in spatial.items()}
        _, (values, inputs) = jax.lax.scan(pixel, left,
                                           (time_major(base_row), time_major(noise_row), {
                                               key: time_major(p)
                                               for key, p in pre_row.items()
                                           }))
        for key, conv in spatial.items():
            q = conv.q
            new_row = jnp.pad(jnp.moveaxis(inputs[key], 0, 1), ((0, 0), (q, q), (0, 0)))
            above = {**above, key: jnp.concatenate([above[key][:, 1:], new_row[:, None]], 1)}
        return above, values

    above = {
        key: jnp.zeros((b, conv.q, w + 2 * conv.q, conv.cin), dtype)
        for key, conv in spatial.items()
    }
    rows_major = lambda x: jnp.moveaxis(x, 1, 0)
    _, frame = jax.lax.scan(row, above, (rows_major(base), rows_major(noise)))
    return jnp.transpose(frame, (2, 0, 1, 3))  # [H, W, B, C] -> [B, H, W, C]


# ------------------------------------------------------------------------------------ video
def _sample_continuations(module: VideoPixelNetwork, variables: Any, given: jax.Array,
                          actions: Optional[jax.Array], states: Optional[jax.Array], rng: jax.Array,
                          temperature: jax.Array, *, num_frames: int, method: str) -> jax.Array:
    """The traced body of `sample` (inputs already validated and repeated num_samples times).

    given: uint8[B, T_given, H, W, C], the given frames (`sample`'s `context`).
    """
    b, num_given, h, w, _ = given.shape
    total = num_given + num_frames
    cond = module.apply(variables, total, actions, states, method=VideoPixelNetwork.conditioning)
    apply = functools.partial(module.apply, variables)
    encoded = apply(given,
                    None if cond is None else cond[:, :num_given],
                    method=VideoPixelNetwork.encode)
    carry, frame_contexts = apply(encoded, method=VideoPixelNetwork.contexts)
    sample_frame = sample_frame_fast if method == 'fast' else sample_frame_naive

    def step(state, xs):
        carry, frame_context = state
        t, cond_t = xs
        noise = frame_noise(jax.random.fold_in(rng, t), (b, h, w, module.num_colors), module.output)
        frame = sample_frame(module, variables, frame_context, cond_t, noise, temperature)

        def advance(state):
            # Encode the new frame once and advance the ConvLSTM one step.
            enc = apply(frame[:, None],
                        None if cond_t is None else cond_t[:, None],
                        method=VideoPixelNetwork.encode)
            carry, out = apply(enc, state[0], method=VideoPixelNetwork.contexts)
            return carry, out[:, 0]

        # Nothing reads the state after the last frame: skip its encoder and ConvLSTM step.
        state = jax.lax.cond(t < total - 1, advance, lambda state: state, (carry, frame_context))
        return state, frame

    future_cond = None if cond is None else jnp.moveaxis(cond[:, num_given:], 1, 0)
    _, frames = jax.lax.scan(step, (carry, frame_contexts[:, -1]),
                             (jnp.arange(num_given, total), future_cond))
    return jnp.concatenate([given, jnp.moveaxis(frames, 0, 1)], axis=1)


_sample_continuations_jit = jax.jit(_sample_continuations,
                                    static_argnames=('module', 'num_frames', 'method'))


def _check_sample_args(module, context, num_frames, actions, states, temperature, num_samples,
                       method) -> None:
    shape = getattr(context, 'shape', None)
    if shape is None or len(shape) != 5:
        raise ValueError(f'context must be uint8[B, T_context, H, W, C]; got shape {shape}.')
    if context.dtype != np.uint8:
        raise ValueError(f'context must have dtype uint8 (raw pixels 0..255); got {context.dtype}.')
    if shape[1] < 1 or shape[0] < 1 or shape[2] < 1 or shape[3] < 1:
        raise ValueError(f'context needs at least one video of one frame; got shape {shape}.')
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) \
            or num_frames < 1:
        raise ValueError(f'num_frames must be an int >= 1; got {num_frames!r}.')
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
            or num_samples < 1:
        raise ValueError(f'num_samples must be an int >= 1; got {num_samples!r}.')
    if not np.ndim(temperature) == 0 or not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f'temperature must be a finite number >= 0 (0: argmax); '
                         f'got {temperature!r}.')
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}; got {method!r}.')
    total = shape[1] + num_frames
    if module.action_dim:
        a_shape = getattr(actions, 'shape', None)
        if a_shape is None or len(a_shape) != 3 or a_shape[1] < total:
            raise ValueError(f'actions must be float[{shape[0]}, >= {total}, {module.action_dim}] '
                             f'(one action per context and generated frame: {shape[1]} + '
                             f'{num_frames}); got {a_shape}.')
    # The model's own checks cover the rest (colours, vector sizes, states, unused inputs).
    video = jax.ShapeDtypeStruct((shape[0], total) + tuple(shape[2:]), jnp.uint8)
    module.check_inputs(video,
                        None if actions is None else actions[:, :total],
                        states,
                        min_frames=1)


def sample(module: VideoPixelNetwork,
           variables: Any,
           context: jax.Array,
           *,
           num_frames: int,
           rng: jax.Array,
           actions: Optional[jax.Array] = None,
           states: Optional[jax.Array] = None,
           temperature: float = 1.0,
           num_samples: int = 1,
           method: str = 'fast') -> jax.Array:
    """Samples continuations of videos from a VPN (or its baseline).

    Args:
      module: a `VideoPixelNetwork` (see `build_model`).
      variables: its variables (e.g. from `load_checkpoint`).
      context: uint8[B, T_context, H, W, C], the given frames (T_context >= 1).
      num_frames: number of frames to generate after the context.
      rng: a `jax.random` key; the only source of randomness.
      actions: float[B, T_a, action_dim] with T_a >= T_context + num_frames (action t pairs
        with frame t; extra actions are ignored), or None for unconditioned models.
      states: float[B, T_s, state_dim] for the first T_s <= T_context + num_frames frames
        (normally the context frames; later frames see zeros, as in training), or None.
      temperature: >= 0. 1 samples the model's distribution; 0 takes the argmax of every
        sub-pixel ('sigmoid' outputs: 255 where p > 0.5, else 0).
      num_samples: continuations per video.
      method: 'fast' (incremental decoder, the default) or 'naive' (full decoder per sub-pixel;
        a reference, hours per 64x64 frame at paper size).
    Returns:
      uint8[B * num_samples, T_context + num_frames, H, W, C]; row b * num_samples + s is
      sample s of video b and starts with that video's context frames, unchanged. Compiled once
      per (module, shapes, num_frames, method); the same rng gives the same result for both
      methods.
    Raises:
      ValueError: on bad shapes or dtypes, too few actions, or temperature < 0.
    """
    _check_sample_args(module, context, num_frames, actions, states, temperature, num_samples,
                       method)
    total = context.shape[1] + num_frames
    repeat = lambda x, dtype: None if x is None else jnp.repeat(
        jnp.asarray(x, dtype), num_samples, axis=0)
    return _sample_continuations_jit(module,
                                     variables,
                                     repeat(context, jnp.uint8),
                                     repeat(None if actions is None else actions[:, :total],
                                            jnp.float32),
                                     repeat(states, jnp.float32),
                                     rng,
                                     jnp.float32(temperature),
                                     num_frames=int(num_frames),
                                     method=method)
