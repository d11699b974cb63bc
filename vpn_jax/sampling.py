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

from vpn_jax.masked_conv import causal_mask, channel_groups
from vpn_jax.vpn import DTYPES, VideoPixelNetwork

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


def _to_float(values: jax.Array) -> jax.Array:
    """uint8 -> float32 in [-1, 1], exactly as `vpn.to_float`."""
    return values.astype(jnp.float32) / 127.5 - 1.0


# ------------------------------------------------------------------------------------ naive
def sample_frame_naive(module: VideoPixelNetwork,
                       variables: Any,
                       context: jax.Array,
                       cond: Optional[jax.Array],
                       noise: jax.Array,
                       temperature: jax.Array,
                       num_steps: Optional[int] = None) -> jax.Array:
    """One frame by re-running the full decoder for every sub-pixel (the reference sampler).

    Args:
      module, variables: a `VideoPixelNetwork` and its variables.
      context: float32[B, H, W, L], the ConvLSTM output after the previous frame.
      cond: float[B, D] or None, the conditioning of the frame being sampled.
      noise: from `frame_noise`, float32[B, H, W, C(, 256)].
      temperature: scalar >= 0.
      num_steps: sample only the first `num_steps` sub-pixels in (row, column, colour) order
        (for timing); None for all H * W * C.
    Returns:
      uint8[B, H, W, C] (sub-pixels not sampled are 0).
    """
    b, h, w, _ = context.shape
    colors = module.num_colors
    decode = lambda frame: module.apply(variables,
                                        frame[:, None],
                                        context[:, None],
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
def _bias(params: Dict[str, Any], cond: Optional[jax.Array], batch: int, dtype: Any) -> jax.Array:
    """A `MaskedConv`'s bias plus its conditioning term (a per-image bias); float[B, Cout]."""
    bias = jnp.broadcast_to(params['bias'].astype(dtype)[None], (batch, params['bias'].shape[0]))
    if 'cond' in params:
        dense = params['cond']
        bias = bias + (cond.astype(dtype) @ dense['kernel'].astype(dtype) +
                       dense['bias'].astype(dtype))
    return bias


# XLA:CPU runs a matrix-vector product at memory speed, but a [B, K] x [K, N] product with a
# small B (2 to 8) slower than B separate ones (4x for B = 2 at K = 256, N = 512).
_ROWWISE_MAX_BATCH = 8
_ROWWISE_MIN_WEIGHTS = 1 << 14  # Below this, per-op overhead dominates: one product.


def _matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x: float[B, K] @ w: float[K, N], one matrix-vector product per row for small B and big w."""
    if 1 < x.shape[0] <= _ROWWISE_MAX_BATCH and w.size >= _ROWWISE_MIN_WEIGHTS:
        return jnp.concatenate([x[i:i + 1] @ w for i in range(x.shape[0])], axis=0)
    return x @ w


class _Layer:
    """One decoder `MaskedConv` prepared for incremental evaluation (built inside a trace).

    Output channels are permuted so that each colour group is one contiguous slice
    (`out[g] = (lo, hi)`); only the MU's fused gates need a non-trivial permutation (their
    group g becomes [g1_g, g2_g, g3_g, u_g]).

    Attributes:
      q: k // 2 (0 for a 1x1 convolution); the row buffer pads q columns on each side.
      up: float[q, k, Cin, Cout], the kernel's rows above the centre (for the per-row conv).
      taps: per colour group g, float[q * Cin + lim_g, hi_g - lo_g]: the centre row's taps left
        of the centre (all input channels) stacked on the centre tap's visible input channels
        0..lim_g (a prefix: groups are contiguous); None when empty.
      bias: float[B, Cout], bias plus the conditioning term of this frame.
    """

    def __init__(self, params: Dict[str, Any], *, mask_type: str, num_colors: int, num_blocks: int,
                 cond: Optional[jax.Array], batch: int, dtype: Any):
        kernel = params['kernel']
        k, _, cin, cout = kernel.shape
        in_groups = channel_groups(cin, num_colors)
        out_groups = np.tile(channel_groups(cout // num_blocks, num_colors), num_blocks)
        kernel = kernel * causal_mask(k, in_groups, out_groups, mask_type)
        perm = np.concatenate([np.nonzero(out_groups == g)[0] for g in range(num_colors)])
        kernel = kernel[..., perm].astype(dtype)
        self.bias = _bias(params, cond, batch, dtype)[:, perm]
        counts = np.bincount(out_groups, minlength=num_colors)
        ends = np.cumsum(counts)
        self.out = [(int(e - n), int(e)) for n, e in zip(counts, ends)]
        self.q = q = k // 2
        self.cin = cin
        self.up = kernel[:q] if q else None
        left = kernel[q, :q].reshape(q * cin, cout)
        # Per colour group g: the left taps and the centre tap in one matrix, so that a pixel
        # costs one matrix-vector product per layer and colour group.
        self.taps, self.lims = [], []
        for g, (lo, hi) in enumerate(self.out):
            visible = in_groups < g if mask_type == 'A' else in_groups <= g
            lim = int(np.sum(visible))  # Groups are contiguous and ascending: a prefix.
            self.lims.append(lim)
            taps = jnp.concatenate([left[:, lo:hi], kernel[q, q, :lim, lo:hi]], axis=0)
            self.taps.append(taps if taps.shape[0] else None)

    def group(self,
              g: int,
              pre: jax.Array,
              x: jax.Array,
              left: Optional[jax.Array] = None) -> jax.Array:
        """Outputs of colour group g at the current pixel: float[B, hi_g - lo_g].

        pre: float[B, Cout], the bias and conditioning plus, for k > 1, the rows above.
        x: float[B, Cin], the layer's input at the current pixel, final for groups <= g.
        left: float[B, q * Cin], the layer's inputs at the q pixels to the left (k > 1).
        """
        lo, hi = self.out[g]
        y = pre[:, lo:hi]
        if self.taps[g] is not None:
            inputs = [x[:, :self.lims[g]]] if left is None else [left, x[:, :self.lims[g]]]
            y = y + _matmul(jnp.concatenate(inputs, axis=1), self.taps[g])
        return y


def _set_group(vec: jax.Array, g: int, values: jax.Array, num_colors: int) -> jax.Array:
    """Writes the colour-group-g slice of a per-pixel activation vector float[B, n]."""
    groups = channel_groups(vec.shape[-1], num_colors)
    lo, hi = int(np.argmax(groups == g)), int(np.sum(groups <= g))
    return vec.at[:, lo:hi].set(values)


def _group_slice(vec: jax.Array, g: int, num_colors: int) -> jax.Array:
    groups = channel_groups(vec.shape[-1], num_colors)
    return vec[:, int(np.argmax(groups == g)):int(np.sum(groups <= g))]


def _mu(gates: jax.Array, h: jax.Array) -> jax.Array:
    """The MU's element-wise part (eq. 1) on one colour group; gates float[B, 4n], h [B, n]."""
    g1, g2, g3, u = jnp.split(gates, 4, axis=-1)
    sig = jax.nn.sigmoid
    return sig(g1) * jnp.tanh(sig(g2) * h + sig(g3) * jnp.tanh(u))


def sample_frame_fast(module: VideoPixelNetwork, variables: Any, context: jax.Array,
                      cond: Optional[jax.Array], noise: jax.Array,
                      temperature: jax.Array) -> jax.Array:
    """One frame with the incremental PixelCNN decoder (see the module docstring).

    Args:
      module, variables: a `VideoPixelNetwork` and its variables.
      context: float32[B, H, W, L], the ConvLSTM output after the previous frame.
      cond: float[B, D] or None, the conditioning of the frame being sampled.
      noise: from `frame_noise`, float32[B, H, W, C(, 256)].
      temperature: scalar >= 0.
    Returns:
      uint8[B, H, W, C], the same values as `sample_frame_naive` given the same noise (up to
      float rounding in near-ties).
    """
    if module.decoder != 'pixelcnn':
        return sample_frame_naive(module, variables, context, cond, noise, temperature)
    params = variables['params']['frame_decoder']
    dtype = DTYPES[module.dtype]
    b, h, w, _ = context.shape
    colors = module.num_colors
    rmb = module.block == 'rmb'
    layer = functools.partial(_Layer,
                              num_colors=colors,
                              cond=cond,
                              batch=b,
                              dtype=dtype,
                              mask_type='B',
                              num_blocks=1)
    # The context convolution is an unmasked 1x1: computed once per frame for all positions.
    base = (context.astype(dtype) @ params['context']['kernel'][0, 0].astype(dtype) +
            _bias(params['context'], cond, b, dtype)[:, None, None])
    layers = {'input': layer(params['input'], mask_type='A')}
    spatial = ['input']
    for blk in range(module.decoder_blocks):
        p = params[f'block_{blk}']
        layers[f'{blk}/reduce'] = layer(p['reduce'])
        layers[f'{blk}/expand'] = layer(p['expand'])
        if rmb:
            for mu in ('mu1', 'mu2'):
                layers[f'{blk}/{mu}'] = layer(p[mu]['gates'], num_blocks=4)
                spatial.append(f'{blk}/{mu}')
        else:
            layers[f'{blk}/conv'] = layer(p['conv'])
            spatial.append(f'{blk}/conv')
    layers['top'] = layer(params['top'])
    layers['logits'] = layer(params['logits'])

    def column(base_px: jax.Array, pre: Dict[str, jax.Array], left: Dict[str, jax.Array],
               noise_px: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
        """All colours of one pixel -> (uint8[B, C], the spatial layers' inputs float[B, Cin]).

        base_px: float[B, 2c], the context term; pre[name]: float[B, Cout], bias plus rows
        above; left[name]: float[B, q * Cin]; noise_px: float32[B, C(, 256)].
        """
        vec: Dict[str, jax.Array] = {}  # Per-pixel activations float[B, n], filled group by group.

        def put(name: str, n: int, g: int, values: jax.Array) -> jax.Array:
            vec[name] = _set_group(vec.get(name, jnp.zeros((b, n), dtype)), g, values, colors)
            return values

        values = jnp.zeros((b, colors), jnp.uint8)
        vec['input'] = jnp.zeros((b, colors), dtype)
        c, width = module.channels, 2 * module.channels
        for g in range(colors):
            lay = layers['input']
            h = _group_slice(base_px, g, colors) + lay.group(g, pre['input'], vec['input'],
                                                             left['input'])
            put('h0', width, g, h)
            for blk in range(module.decoder_blocks):
                reduce, expand = layers[f'{blk}/reduce'], layers[f'{blk}/expand']
                hin = vec[f'h{blk}']
                if rmb:  # h1 = W1 h; h2 = MU(h1); h3 = MU(h2); h + W4 h3.
                    h1 = put(f'{blk}/mu1', c, g, reduce.group(g, reduce.bias, hin))
                    mu1, mu2 = layers[f'{blk}/mu1'], layers[f'{blk}/mu2']
                    gates = mu1.group(g, pre[f'{blk}/mu1'], vec[f'{blk}/mu1'], left[f'{blk}/mu1'])
                    h2 = put(f'{blk}/mu2', c, g, _mu(gates, h1))
                    gates = mu2.group(g, pre[f'{blk}/mu2'], vec[f'{blk}/mu2'], left[f'{blk}/mu2'])
                    put(f'{blk}/h3', c, g, _mu(gates, h2))
                    h4 = expand.group(g, expand.bias, vec[f'{blk}/h3'])
                else:  # h + W3 relu(W2 relu(W1 relu(h))).
                    y1 = reduce.group(g, reduce.bias, jax.nn.relu(hin))
                    put(f'{blk}/conv', c, g, jax.nn.relu(y1))
                    conv = layers[f'{blk}/conv']
                    y2 = conv.group(g, pre[f'{blk}/conv'], vec[f'{blk}/conv'], left[f'{blk}/conv'])
                    put(f'{blk}/y2', c, g, jax.nn.relu(y2))
                    h4 = expand.group(g, expand.bias, vec[f'{blk}/y2'])
                put(f'h{blk + 1}', width, g, _group_slice(hin, g, colors) + h4)
            top = layers['top']
            t = top.group(g, top.bias, jax.nn.relu(vec[f'h{module.decoder_blocks}']))
            put('top', module.top_channels, g, jax.nn.relu(t))
            logits = layers['logits'].group(g, layers['logits'].bias, vec['top'])
            if module.output == 'sigmoid':
                logits = logits[:, 0]
            value = draw(logits, noise_px[:, g], temperature, module.output)
            values = values.at[:, g].set(value)
            vec['input'] = vec['input'].at[:, g].set(_to_float(value).astype(dtype))
        return values, {name: vec[name] for name in spatial}

    def row(above, xs):
        """One row. above[name]: float[B, q, W + 2q, Cin], the layer's inputs in the q rows
        above (zero-padded at the sides; zeros above the frame)."""
        base_row, noise_row = xs
        ups = {
            name:
            jax.lax.conv_general_dilated(above[name],
                                         layers[name].up, (1, 1),
                                         'VALID',
                                         dimension_numbers=('NHWC', 'HWIO', 'NHWC'))[:, 0] +
            layers[name].bias[:, None]
            for name in spatial
        }

        def pixel(left, xs):
            """One pixel. left[name]: float[B, q, Cin], the layer's inputs at the q pixels to the
            left (zeros left of the frame)."""
            base_px, noise_px, ups_px = xs
            flat = {name: left[name].reshape(b, -1) for name in spatial}
            values, inputs = column(base_px, ups_px, flat, noise_px)
            left = {
                name: jnp.concatenate([left[name][:, 1:], inputs[name][:, None]], axis=1)
                for name in spatial
            }
            return left, (values, inputs)

        time_major = lambda x: jnp.moveaxis(x, 1, 0)
        left = {name: jnp.zeros((b, layers[name].q, layers[name].cin), dtype) for name in spatial}
        _, (values, inputs) = jax.lax.scan(pixel, left,
                                           (time_major(base_row), time_major(noise_row), {
                                               n: time_major(u)
                                               for n, u in ups.items()
                                           }))
        for name in spatial:
            q = layers[name].q
            new_row = jnp.pad(jnp.moveaxis(inputs[name], 0, 1), ((0, 0), (q, q), (0, 0)))
            above = {**above, name: jnp.concatenate([above[name][:, 1:], new_row[:, None]], 1)}
        return above, values

    above = {
        name: jnp.zeros((b, layers[name].q, w + 2 * layers[name].q, layers[name].cin), dtype)
        for name in spatial
    }
    rows_major = lambda x: jnp.moveaxis(x, 1, 0)
    _, frame = jax.lax.scan(row, above, (rows_major(base), rows_major(noise)))
    return jnp.transpose(frame, (2, 0, 1, 3))  # [H, W, B, C] -> [B, H, W, C]


# ------------------------------------------------------------------------------------ video
def _continue(module: VideoPixelNetwork, variables: Any, context: jax.Array,
              actions: Optional[jax.Array], states: Optional[jax.Array], rng: jax.Array,
              temperature: jax.Array, *, num_frames: int, method: str) -> jax.Array:
    """The traced body of `sample` (inputs already validated and repeated num_samples times)."""
    b, t_context, h, w, _ = context.shape
    total = t_context + num_frames
    cond = module.apply(variables, total, actions, states, method=VideoPixelNetwork.conditioning)
    apply = functools.partial(module.apply, variables)
    encoded = apply(context,
                    None if cond is None else cond[:, :t_context],
                    method=VideoPixelNetwork.encode)
    lstm_step = lambda carry, x: apply(carry, x, method=VideoPixelNetwork.lstm_step)
    carry = apply(b, h, w, method=VideoPixelNetwork.initial_carry)
    carry, outputs = jax.lax.scan(lstm_step, carry, jnp.moveaxis(encoded, 1, 0))
    sample_frame = sample_frame_fast if method == 'fast' else sample_frame_naive

    def step(state, xs):
        carry, lstm_out = state
        t, cond_t = xs
        noise = frame_noise(jax.random.fold_in(rng, t), (b, h, w, module.num_colors), module.output)
        frame = sample_frame(module, variables, lstm_out, cond_t, noise, temperature)

        def advance(state):
            # Encode the new frame once and advance the ConvLSTM one step.
            enc = apply(frame[:, None],
                        None if cond_t is None else cond_t[:, None],
                        method=VideoPixelNetwork.encode)[:, 0]
            return lstm_step(state[0], enc)

        # Nothing reads the state after the last frame: skip its encoder and ConvLSTM step.
        state = jax.lax.cond(t < total - 1, advance, lambda state: state, (carry, lstm_out))
        return state, frame

    future_cond = None if cond is None else jnp.moveaxis(cond[:, t_context:], 1, 0)
    _, frames = jax.lax.scan(step, (carry, outputs[-1]),
                             (jnp.arange(t_context, total), future_cond))
    return jnp.concatenate([context, jnp.moveaxis(frames, 0, 1)], axis=1)


_continue_jit = jax.jit(_continue, static_argnames=('module', 'num_frames', 'method'))


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
    return _continue_jit(module,
                         variables,
                         repeat(context, jnp.uint8),
                         repeat(None if actions is None else actions[:, :total], jnp.float32),
                         repeat(states, jnp.float32),
                         rng,
                         jnp.float32(temperature),
                         num_frames=int(num_frames),
                         method=method)
