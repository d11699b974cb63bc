"""Training loop: data-parallel train step, RMSProp with reduce-on-plateau, orbax resume.

Data parallelism in the pmap style, written with `jax.shard_map` over a 1-D device mesh
('data',) spanning every device of every process: the train state is replicated, the global
batch is split along its first axis, each device computes the gradients of its own shard, and
`lax.pmean` averages them (and the loss) across devices before the identical optimiser update
on every device. With one device the mean is the identity, so the step is the plain step.

The loss is the paper's: minus the log-likelihood of the predicted frames (frames
num_context..T-1), in nats/frame for Moving MNIST (sigmoid cross-entropy) and nats/dim for the
softmax models; evaluation reports the same units.
"""

import math
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vpn_jax.training import checkpoint as ckpt
from vpn_jax.training import state as state_lib
# Re-exported: the train step's callers build their states through this module.
from vpn_jax.training.state import TrainState, create_train_state, learning_rate
from vpn_jax.data import input_pipeline
from vpn_jax.training import metrics as metrics_lib
from vpn_jax.training import results
from vpn_jax.training import run_lock
from vpn_jax.model.likelihood import log_likelihood, predicted_log_likelihood
from vpn_jax.model.vpn import VideoPixelNetwork, build_model

AXIS = 'data'


class NonFiniteLossError(FloatingPointError):
    """The training loss, the gradient norm or the updated parameters became NaN or inf."""


# ------------------------------------------------------------------------------------------------
# Model, loss, optimiser.


def build_module(config: ml_collections.ConfigDict) -> VideoPixelNetwork:
    """The model of `config.model` (see `vpn_jax.build_model`)."""
    return build_model(config.model)


def units(module: VideoPixelNetwork) -> str:
    """The paper's units: 'nats/frame' (sigmoid, Moving MNIST) or 'nats/dim' (softmax)."""
    return 'nats/frame' if module.output == 'sigmoid' else 'nats/dim'


def normaliser(module: VideoPixelNetwork, video_shape: Tuple[int, ...], num_context: int) -> int:
    """Divisor that turns nats per sequence into the paper's units (frames or dimensions)."""
    _, t, h, w, c = video_shape
    frames = t - num_context
    return frames if module.output == 'sigmoid' else frames * h * w * c


def sequence_nll(module: VideoPixelNetwork, params: Any, video: jax.Array,
                 actions: Optional[jax.Array], states: Optional[jax.Array],
                 num_context: int) -> jax.Array:
    """Negative log-likelihood of the predicted frames of each sequence, in nats; float32[B].

    video: uint8[B, T, H, W, C]; actions: float32[B, T, A] or None; states: float32[B, T_c, S]
    or None.
    """
    return -log_likelihood(
        module, {'params': params}, video, num_context=num_context, actions=actions, states=states)


def train_num_context(config: ml_collections.ConfigDict) -> int:
    """Context frames of a training sequence: the loss covers frames num_context..T-1.

    `train.num_context` when set (> 0), else `data.num_context` (the paper's: training scores the
    same frames as evaluation). A smaller value scores more frames per sequence for the same
    encoder and ConvLSTM compute; evaluation always uses `data.num_context`.
    """
    return int(config.train.get('num_context', 0) or config.data.num_context)


def withheld_frames(config: ml_collections.ConfigDict, step: jax.Array, batch: int,
                    frames: int) -> Optional[jax.Array]:
    """Inside the train step: which predicted frames the decoder does not see; bool[batch, frames].

    Each frame is withheld with probability `withhold_schedule(config)(step)`, drawn from
    (train.seed, step, device), so that a resumed run draws the same frames; None when no frame
    is ever withheld (the paper). See `vpn_jax.model.likelihood.withheld_decoder_inputs`.
    """
    schedule = withhold_schedule(config)
    if schedule is None:
        return None
    return jax.random.bernoulli(_step_key(config, step, 0), schedule(step), (batch, frames))


def withhold_schedule(config: ml_collections.ConfigDict) -> Optional[optax.Schedule]:
    """step -> the probability that a training frame is withheld; None if none ever is.

    `train.withhold_frames` throughout when `train.withhold_decay_steps` is 0; otherwise it moves
    linearly to `train.withhold_frames_end` over the first `withhold_decay_steps` steps and stays
    there. Lowering it late in training lets the decoder learn the in-frame detail again once the
    context path carries the digits.
    """
    t = config.train
    start = float(t.get('withhold_frames', 0.0))
    decay_steps = int(t.get('withhold_decay_steps', 0))
    end = float(t.get('withhold_frames_end', 0.0)) if decay_steps else start
    if start == end == 0.0:
        return None
    if decay_steps == 0:
        return optax.constant_schedule(start)
    return optax.linear_schedule(start, end, decay_steps)


def binarized_inputs(config: ml_collections.ConfigDict, module: VideoPixelNetwork, step: jax.Array,
                     video: jax.Array) -> Optional[jax.Array]:
    """Inside the train step: the frames the model reads when `train.binarize_frames` > 0, else
    None; see `binarize`. Drawn from (train.seed, step, device), so a resumed run draws the same.
    """
    p = float(config.train.get('binarize_frames', 0.0))
    if p == 0.0:
        return None
    if module.output != 'sigmoid':
        raise ValueError("train.binarize_frames reads Bernoulli frames, which only a 'sigmoid' "
                         "model samples; set it to 0 for 'softmax' models.")
    return binarize(_step_key(config, step, 1), video, p)


def binarize(key: jax.Array, video: jax.Array, p: float) -> jax.Array:
    """Each frame, with probability `p`, read as the sampler's binary frames; uint8 like `video`.

    video: uint8[B, T, H, W, C] of a 'sigmoid' model (grey Moving MNIST frames). In a chosen frame
    each pixel x is read as 255 with probability x / 255 and 0 otherwise; the other frames stay
    grey. The loss keeps the true grey frames as targets. Why: the sampler feeds back binary
    frames after grey given ones, and a model trained on grey frames only meets binary ones first
    at sampling time (p = 1 reads every frame binary; p < 1 keeps the grey frames that the scored
    likelihood reads in the training distribution too).
    """
    u = jax.random.uniform(key, video.shape)
    binary = jnp.where(u * 255.0 < video.astype(jnp.float32), 255, 0).astype(jnp.uint8)
    if p >= 1.0:
        return binary
    chosen = jax.random.bernoulli(jax.random.fold_in(key, 1), p, video.shape[:2])
    return jnp.where(chosen[:, :, None, None, None], binary, video)


def _step_key(config: ml_collections.ConfigDict, step: jax.Array, stream: int) -> jax.Array:
    """A key of (train.seed, step, device, stream), inside the train step's shard_map."""
    key = jax.random.fold_in(jax.random.key(config.train.seed), step)
    return jax.random.fold_in(jax.random.fold_in(key, jax.lax.axis_index(AXIS)), stream)


def train_microbatches(config: ml_collections.ConfigDict) -> int:
    """`train.microbatches` (1 for configs written before the field existed)."""
    return int(config.train.get('microbatches', 1))


def microbatched_value_and_grad(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    args: Tuple,
    microbatches: int,
    varying_axes: Tuple[str, ...] = ()) -> Tuple[jax.Array, Any]:
    """`jax.value_and_grad(loss_fn)(params, *args)`, computed in sequential micro-batches.

    args: arrays (or None) whose axis 0 is the batch, B rows each; `loss_fn(params, *args)`
    must be a mean over the batch (as the train loss is: the mean NLL over sequences divided by
    a constant). The batch is split into `microbatches` consecutive parts of B / microbatches
    rows; a `lax.scan` computes each part's loss and gradients in turn and sums them, and the
    sums divided by `microbatches` are the mean over the whole batch: the same loss and
    gradients up to float rounding. Only one part's activations are alive at a time, which is
    what lets a large batch fit an accelerator's memory. With microbatches=1 it is exactly
    `jax.value_and_grad` (no scan). varying_axes: inside `shard_map`, the mesh axes along which
    `params` were cast to device-varying (the train step's ('data',)).
    """
    grad_fn = jax.value_and_grad(loss_fn)
    if microbatches < 1:
        raise ValueError(f'train.microbatches must be >= 1; got {microbatches}.')
    if microbatches == 1:
        return grad_fn(params, *args)
    rows = {a.shape[0] for a in args if a is not None}
    (b, ) = rows
    if b % microbatches:
        raise ValueError(f'A batch of {b} sequences per device does not split into '
                         f'train.microbatches={microbatches} equal micro-batches; use a per-device '
                         f'batch (train.batch_size / devices) divisible by {microbatches}.')
    split = lambda a: None if a is None else a.reshape(
        (microbatches, b // microbatches) + a.shape[1:])
    parts = tuple(split(a) for a in args)

    def body(carry, part):
        loss, grads = grad_fn(params, *part)
        total_loss, total_grads = carry
        return (total_loss + loss, jax.tree_util.tree_map(jnp.add, total_grads, grads)), None

    # Inside shard_map the sums must start with the body's device-varying type (that of the
    # parameters after `pcast`), or the scan's carry types differ.
    varying = lambda x: jax.lax.pcast(x, varying_axes, to='varying') if varying_axes else x
    zeros = (varying(jnp.zeros((), jnp.float32)),
             jax.tree_util.tree_map(lambda p: varying(jnp.zeros(p.shape, p.dtype)), params))
    (loss, grads), _ = jax.lax.scan(body, zeros, parts)
    return loss / microbatches, jax.tree_util.tree_map(lambda g: g / microbatches, grads)


# ------------------------------------------------------------------------------------------------
# Devices and steps.


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh ('data',) over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS, ))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places `tree` replicated on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> Dict[str, jax.Array]:
    """Global arrays split along axis 0 over the mesh, from this process's share of the batch."""
    sharding = NamedSharding(mesh, P(AXIS))
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in batch.items()
    }


def make_train_step(
    config: ml_collections.ConfigDict,
    module: VideoPixelNetwork,
    mesh: Mesh,
    tx: Optional[optax.GradientTransformation] = None
) -> Callable[[TrainState, Mapping[str, jax.Array]], Tuple]:
    """A jitted data-parallel step `(state, batch) -> (state, metrics)`; donates `state`.

    batch: video uint8[B, T, H, W, C] (B divisible by the mesh size, and B / devices by
    `train.microbatches`), optional actions float32[B, T, A] and states float32[B, T_c, S],
    split over the mesh's 'data' axis. Each device computes its gradients in
    `train.microbatches` sequential parts (`microbatched_value_and_grad`): the same update as
    one part, with the activation memory of one micro-batch.
    metrics: {'loss': float32[] in the paper's units, 'grad_norm': float32[], 'param_norm':
    float32[] (the global norm of the updated parameters: NaN or inf when any of them is)}.
    tx: the state's optimiser (default: `make_optimizer(config)`'s).
    """
    tx = tx or state_lib.make_optimizer(config)[0]
    num_context = train_num_context(config)
    microbatches = train_microbatches(config)

    def local_step(state: TrainState, batch):
        video, actions, states = input_pipeline.model_args(batch)
        norm = normaliser(module, video.shape, num_context)
        # Each device differentiates its own shard's loss with respect to its copy of the
        # parameters (pmap semantics); without the cast, shard_map would treat the replicated
        # parameters as invariant and sum the gradients over devices already.
        params = jax.tree_util.tree_map(lambda x: jax.lax.pcast(x, AXIS, to='varying'),
                                        state.params)

        withheld = withheld_frames(config, state.step, video.shape[0], video.shape[1] - num_context)
        inputs = binarized_inputs(config, module, state.step, video)

        def loss_fn(p, video, actions, states, withheld, inputs):
            if withheld is None and inputs is None:
                nll = sequence_nll(module, p, video, actions, states, num_context)
            else:
                nll = -module.apply({'params': p},
                                    video,
                                    actions,
                                    states,
                                    num_context,
                                    withheld,
                                    inputs,
                                    method=predicted_log_likelihood)
            return jnp.mean(nll) / norm

        loss, grads = microbatched_value_and_grad(loss_fn, params,
                                                  (video, actions, states, withheld, inputs),
                                                  microbatches, (AXIS, ))
        grads = jax.lax.pmean(grads, AXIS)
        loss = jax.lax.pmean(loss, AXIS)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        scale = state.plateau_state.scale
        updates = jax.tree_util.tree_map(lambda u: (scale * u).astype(u.dtype), updates)
        new_params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=new_params, opt_state=opt_state)
        return new_state, {
            'loss': loss,
            'grad_norm': optax.tree.norm(grads),
            'param_norm': optax.tree.norm(new_params)
        }

    step = jax.shard_map(local_step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()))
    return jax.jit(step, donate_argnums=0)


def make_eval_step(config: ml_collections.ConfigDict, module: VideoPixelNetwork,
                   mesh: Mesh) -> Callable[[Any, Mapping[str, jax.Array]], Tuple]:
    """A jitted data-parallel `(params, batch) -> (sum of per-sequence NLL, count)`.

    batch: as for training plus mask bool[B]; the NLL of each unmasked sequence is in the
    paper's units (nats/frame or nats/dim); both outputs are float32[] summed over devices.
    """
    num_context = config.data.num_context

    def local_eval(params, batch):
        video, actions, states = input_pipeline.model_args(batch)
        norm = normaliser(module, video.shape, num_context)
        nll = sequence_nll(module, params, video, actions, states, num_context) / norm
        mask = batch['mask']
        total = jax.lax.psum(jnp.sum(jnp.where(mask, nll, 0.0)), AXIS)
        count = jax.lax.psum(jnp.sum(mask.astype(jnp.float32)), AXIS)
        return total, count

    step = jax.shard_map(local_eval, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()))
    return jax.jit(step)


def evaluate_source(config: ml_collections.ConfigDict,
                    module: VideoPixelNetwork,
                    params: Any,
                    source: Any,
                    mesh: Mesh,
                    *,
                    max_batches: int = 0,
                    eval_step: Optional[Callable] = None,
                    desc: str = 'eval',
                    progress: bool = True) -> Dict[str, Any]:
    """Mean NLL of the sequences of `source` in the paper's units (a tqdm bar on process 0).

    Returns {'nll': float, 'units': str, 'num_sequences': int, 'seconds': float, 'partial':
    bool (whether max_batches left batches of the split out)}.
    """
    from tqdm import tqdm
    eval_step = eval_step or make_eval_step(config, module, mesh)
    total, count = 0.0, 0.0
    start = time.time()
    batches = input_pipeline.eval_batches(config,
                                          source,
                                          max_batches=max_batches,
                                          process_index=jax.process_index(),
                                          process_count=jax.process_count())
    n = input_pipeline.num_eval_batches(config, source, max_batches)
    partial = n < input_pipeline.num_eval_batches(config, source, 0)
    bar = tqdm(batches,
               total=n,
               desc=desc,
               leave=False,
               disable=not progress or jax.process_index() != 0)
    for batch in bar:
        t, c = eval_step(params, shard_batch(batch, mesh))
        total += float(t)
        count += float(c)
        if count:
            bar.set_postfix_str(f'{total / count:.4f} {units(module)}')
    if count == 0:
        raise ValueError('The evaluation split is empty.')
    return {
        'nll': total / count,
        'units': units(module),
        'num_sequences': int(count),
        'seconds': time.time() - start,
        'partial': partial
    }


def check_init_from(source: str, field: str = 'init_from') -> None:
    """Raises ValueError unless `source` ('' or train.<field>) names a workdir or shipped model."""
    from vpn_jax.pretrained import names
    path, at, step = source.partition('@')
    if at and not (step.isdigit() and os.path.isdir(os.path.expanduser(path))):
        raise ValueError(f'train.{field}={source!r}: WORKDIR@STEP needs a training workdir and '
                         'a step number, e.g. runs/vpn@900.')
    if source and not os.path.isdir(os.path.expanduser(path)) and source not in names():
        raise ValueError(f'train.{field}={source!r} is neither a training workdir (or '
                         f'WORKDIR@STEP) nor a shipped model ({names()}).')


# The parameters of the context path (encoder and ConvLSTM), which the VPN and its baseline share.
CONTEXT_PATH = ('encoder', 'lstm')


def _load_params(source: str) -> Any:
    """The parameters (on the host) of a training workdir's newest intact checkpoint or of a
    shipped model."""
    from vpn_jax.pretrained import load_model
    return jax.device_get(load_model(source)[1]['params'])


def _shapes(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: (x.shape, str(x.dtype)), tree)


def warm_start_params(config: ml_collections.ConfigDict, template: Any) -> Any:
    """The parameters a run starts from when `config.train` names a warm start (fine-tuning).

    init_from: a training run's workdir (its newest intact checkpoint) or a shipped model's name
    (`vpn_jax.pretrained.names()`); its parameters must have the shapes and dtypes of `template`
    (the fresh state's). init_context_from: the same kinds of source, whose context path
    (`CONTEXT_PATH`: encoder and ConvLSTM) then replaces that of the start, e.g. a trained
    baseline's in a VPN (staged training); the rest of the model may differ. The optimiser and
    plateau states start fresh; a resumed run restores its own checkpoint instead.
    """
    t = config.train
    params = jax.device_get(template)
    if t.get('init_from', ''):
        check_init_from(t.init_from)
        params = _load_params(t.init_from)
        if _shapes(template) != _shapes(params):
            raise ValueError(f'train.init_from={t.init_from!r} holds a model of other parameter '
                             'shapes than config.model: use the model config it was trained with.')
    if t.get('init_context_from', ''):
        check_init_from(t.init_context_from, 'init_context_from')
        donor = _load_params(t.init_context_from)
        params = dict(params)
        for name in CONTEXT_PATH:
            if name not in donor or _shapes(donor[name]) != _shapes(params[name]):
                raise ValueError(f'train.init_context_from={t.init_context_from!r} has no '
                                 f'{name!r} of the shapes of config.model\'s: give it a model '
                                 'with the same channels, encoder_blocks, encoder_dilations '
                                 'and lstm_channels.')
            params[name] = donor[name]
    return params


def validation_viewer_metrics(config: ml_collections.ConfigDict, module: VideoPixelNetwork,
                              params: Any, sequences: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """The learning curves' cheap view of the samples: `vpn_jax.video_metrics.summarize` of
    `viewer_metrics` on `sequences` (evaluation sequences: video uint8[V, T, H, W, C], optional
    actions and states) with `config.eval.viewer_samples` samples each at
    `config.eval.viewer_temperature`, as 'validation/<name>' scalars.

    The sampling noise is fixed by train.seed, so that successive points of a curve differ by the
    parameters only. One process only (the sampler runs on this process's default device).
    """
    from vpn_jax import video_metrics
    result = video_metrics.viewer_metrics(module, {'params': params},
                                          sequences['video'],
                                          num_context=int(config.data.num_context),
                                          num_samples=int(config.eval.viewer_samples),
                                          rng=jax.random.key(config.train.seed),
                                          temperature=float(config.eval.viewer_temperature),
                                          actions=sequences.get('actions'),
                                          states=sequences.get('states'))
    return video_metrics.summarize(result, prefix='validation/')


# ------------------------------------------------------------------------------------------------
# Checks before compute.


def check_config(config: ml_collections.ConfigDict, *, num_devices: int) -> VideoPixelNetwork:
    """The model of a config that can run; raises ValueError for one that cannot.

    Called before any data is read or anything compiled.
    """
    t = config.train
    for name, value in (('train.batch_size', t.batch_size), ('eval.batch_size',
                                                             config.eval.batch_size)):
        if value < 1:
            raise ValueError(f'{name} must be >= 1; got {value}.')
        if value % num_devices:
            raise ValueError(f'{name}={value} is not divisible by the {num_devices} devices; the '
                             f'batch is split evenly across devices: use a multiple of '
                             f'{num_devices}.')
    m = train_microbatches(config)
    per_device = t.batch_size // num_devices
    if m < 1:
        raise ValueError(f'train.microbatches must be >= 1; got {m}.')
    if per_device % m:
        fits = [d for d in range(1, per_device + 1) if per_device % d == 0]
        raise ValueError(f'train.batch_size={t.batch_size} over {num_devices} devices is '
                         f'{per_device} sequences per device, which do not split into '
                         f'train.microbatches={m} equal micro-batches: use train.microbatches in '
                         f'{fits}, or a train.batch_size that is a multiple of '
                         f'{num_devices * m}.')
    if t.num_steps < 0:
        raise ValueError(f'train.num_steps must be >= 0; got {t.num_steps}.')
    for name in ('withhold_frames', 'withhold_frames_end'):
        if not 0.0 <= t.get(name, 0.0) < 1.0:
            raise ValueError(f'train.{name} is a probability that the decoder does not see a '
                             f'training frame: use a value in [0, 1); got {t[name]}.')
    if not 0.0 <= t.get('binarize_frames', 0.0) <= 1.0:
        raise ValueError(f'train.binarize_frames is the probability that a training frame is '
                         f'read binarized: use a value in [0, 1]; got {t.binarize_frames}.')
    if t.get('withhold_decay_steps', 0) < 0:
        raise ValueError(f'train.withhold_decay_steps must be >= 0 (0: a constant '
                         f'train.withhold_frames); got {t.withhold_decay_steps}.')
    if not t.learning_rate > 0:  # Also refuses NaN.
        raise ValueError(f'train.learning_rate must be > 0; got {t.learning_rate} (a negative '
                         'rate would train uphill).')
    for name in ('validation_batches', 'test_batches'):
        if config.eval.get(name, 0) < 0:
            raise ValueError(f'eval.{name} must be >= 0 (0: the whole split); got '
                             f'{config.eval[name]}.')
    v = config.eval
    if v.get('viewer_sequences', 0) and (v.viewer_sequences < 2 or v.viewer_samples < 1
                                         or not v.viewer_temperature >= 0):
        raise ValueError(
            f'eval.viewer_sequences={v.viewer_sequences} (0, or >= 2: the context gain '
            f'pairs sequences), eval.viewer_samples={v.viewer_samples} (>= 1) and '
            f'eval.viewer_temperature={v.viewer_temperature} (>= 0): fix the one '
            'out of range.')
    for name in ('eval_every_steps', 'checkpoint_every_steps', 'log_every_steps',
                 'keep_checkpoints'):
        if t[name] < 1:
            raise ValueError(f'train.{name} must be >= 1; got {t[name]}.')
    nc, t = train_num_context(config), config.data.num_frames
    if not 1 <= nc < t:
        raise ValueError(f'Training sequences have data.num_frames={t} frames, so their context '
                         f'(train.num_context, or data.num_context when that is 0) must be in '
                         f'[1, {t - 1}]; got {nc}.')
    check_init_from(config.train.get('init_from', ''))
    check_init_from(config.train.get('init_context_from', ''), 'init_context_from')
    module = build_module(config)  # Raises ValueError on a bad model config.
    input_pipeline.check_data(config)  # Also checks data.num_context against eval_num_frames.
    return module


def check_finite(loss: float,
                 step: int,
                 *,
                 grad_norm: float = 0.0,
                 param_norm: float = 0.0,
                 newest_checkpoint: str = '') -> None:
    """Raises NonFiniteLossError with the step, the newest good checkpoint and what to do.

    loss: the step's loss (of the parameters before the update); grad_norm: its gradients'
    global norm; param_norm: the updated parameters' global norm. Any of them non-finite means
    the state after `step` steps must not be saved.
    newest_checkpoint: a sentence naming the newest checkpoint (all saved states are finite).
    """
    if not math.isfinite(loss):
        what = f'Training loss is {loss} at step {step}'
    elif not math.isfinite(grad_norm):
        what = f'The gradient norm is {grad_norm} at step {step} (loss {loss})'
    elif not math.isfinite(param_norm):
        what = f'The updated parameters are not finite (norm {param_norm}) at step {step} ' \
            f'(loss {loss}, gradient norm {grad_norm})'
    else:
        return
    raise NonFiniteLossError(
        f'{what}: stopping. This state was not saved. {newest_checkpoint} Try a lower learning '
        'rate, train.grad_clip_norm > 0, or model.dtype=float32.')


def _newest_checkpoint_sentence(mngr) -> str:
    step = mngr.latest_step()
    if step is None:
        return f'No checkpoint was saved yet in {mngr.directory}.'
    return (f'The newest checkpoint, step {step} in {mngr.directory}, is the last good one '
            '(non-finite states are never saved); resuming starts from it.')


def describe(summary: Mapping[str, Any]) -> str:
    """One line on what `train_and_evaluate` did, for the console (see its summary)."""
    step, start, num = summary['step'], summary['start_step'], summary['num_steps']
    if start > num:
        return (f'The checkpoint in {summary["workdir"]} is at step {start}, beyond '
                f'train.num_steps={num}: nothing was trained (raise train.num_steps to continue '
                'training).')
    if step == start:
        return (f'{summary["workdir"]} was already trained to {step} steps '
                f'(train.num_steps={num}): nothing to train.')
    return (f'trained {step} steps in {summary["workdir"]} ({step - start} in this run); final '
            f'train loss {summary["train_loss"]:.4f} {summary["units"]}')


# ------------------------------------------------------------------------------------------------
# The loop.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
    """Trains `config` in `workdir` (resuming from its newest intact checkpoint), then evaluates.

    Writes checkpoints to `workdir/checkpoints`, metrics to `workdir/metrics.jsonl` and
    `workdir/tensorboard`, and the final test evaluation to `workdir/eval_test.json` (when
    config.train.evaluate_test). Returns {'step', 'start_step', 'num_steps', 'train_loss',
    'validation', 'test', ...} (`describe` turns it into a line for the console).

    What survives what (WORKSPACE.md, "What survives what"):
    * Config and data errors (including sequences too short or frames too small for the config)
      raise before the workdir is created and before anything is compiled.
    * Process 0 holds `workdir/train.lock` (`vpn_jax.training.run_lock`) for the whole run: a second run
      on the same workdir raises WorkdirLockedError.
    * A broken newest checkpoint (unreadable, or its state not matching its checksum) is
      reported, moved to `workdir/broken_checkpoints/`, and training resumes from the newest
      intact one.
    * NonFiniteLossError when the loss, the gradient norm or the updated parameters become NaN
      or inf; such a state is never saved.
    * At a step that both validates and saves, the save comes first; the checkpoint records
      that its validation is pending, and a run resumed from it validates first.
    * On resume, metric rows after the restored step (logged by the interrupted run) are
      dropped from metrics.jsonl and purged from TensorBoard.
    """
    t = config.train
    mesh = make_mesh()
    module = check_config(config, num_devices=mesh.size)
    workdir = os.path.abspath(os.path.expanduser(workdir))
    # Open the data before creating the workdir or compiling anything (missing directories or
    # splits, too-short sequences and too-small frames raise here).
    train_src = input_pipeline.train_source(config)
    val_src = input_pipeline.eval_source(config, 'validation') if t.eval_every_steps <= \
        t.num_steps else None
    test_src = input_pipeline.eval_source(config, 'test') if t.evaluate_test else None
    input_pipeline.check_sources(config, train_src, {'validation': val_src, 'test': test_src})

    is_main = jax.process_index() == 0
    lock = run_lock.WorkdirLock(workdir) if is_main else None
    try:
        return _train_and_evaluate(config, workdir, mesh, module, train_src, val_src, test_src)
    finally:
        if lock is not None:
            lock.release()


def _train_and_evaluate(config, workdir, mesh, module, train_src, val_src, test_src):
    """`train_and_evaluate` once the data are open and the workdir is locked."""
    t = config.train
    is_main = jax.process_index() == 0
    mngr = ckpt.manager(workdir, keep=t.keep_checkpoints)
    tx, plateau = state_lib.make_optimizer(config)
    state = replicate(create_train_state(config, module, jax.random.key(t.seed), (tx, plateau)),
                      mesh)

    def read(step):
        ckpt.check_compatible(mngr, step, config)
        position = ckpt.read_data_position(mngr, step)
        if position['seed'] != t.seed:
            raise ckpt.IncompatibleCheckpointError(
                f'The checkpoint in {workdir} was trained with train.seed={position["seed"]}, the '
                f'config says {t.seed}.')
        return {'position': position}

    latest, restored, extra, broken = ckpt.restore_newest_intact(mngr, state, read=read)
    if broken:
        if is_main:
            ckpt.move_aside(mngr, [s for s, _ in broken])
        if jax.process_count() > 1:
            from orbax.checkpoint import multihost
            multihost.sync_global_processes('vpn_jax_move_broken_checkpoints')
        mngr.close()
        mngr = ckpt.manager(workdir, keep=t.keep_checkpoints)
    validation_pending = False
    if latest is None and (t.get('init_from', '') or t.get('init_context_from', '')):
        state = state.replace(params=replicate(warm_start_params(config, state.params), mesh))
        if is_main and t.get('init_from', ''):
            from vpn_jax.pretrained import write_warm_start
            write_warm_start(workdir, t.init_from)
        logging.info('Started from the parameters of %s, context path from %s.',
                     t.get('init_from', '') or 'random',
                     t.get('init_context_from', '') or 'there')
    if latest is not None:
        state = restored
        validation_pending = not extra['position']['validated']
        logging.info('Resumed from step %d in %s.', latest, mngr.directory)
    start_step = int(state.step)
    if start_step > t.num_steps:
        logging.warning(
            'The checkpoint in %s is at step %d, beyond train.num_steps=%d: nothing '
            'to train.', workdir, start_step, t.num_steps)

    train_step = make_train_step(config, module, mesh, tx)
    eval_step = make_eval_step(config, module, mesh)
    plateau_update = jax.jit(lambda ps, v: plateau.update(updates={}, state=ps, value=v)[1],
                             out_shardings=NamedSharding(mesh, P()))
    validates = lambda step: val_src is not None and step > 0 and step % t.eval_every_steps == 0
    validation_pending = validation_pending and validates(start_step)
    # Rows after the restored step were logged by an interrupted run and are logged again.
    writer = metrics_lib.MetricWriter(
        workdir,
        enabled=is_main,
        resume_step=start_step,
        drop_at_resume_step=('validation/', ) if validation_pending else ())
    summary: Dict[str, Any] = {
        'workdir': workdir,
        'start_step': start_step,
        'num_steps': t.num_steps
    }

    def save(step, validated):
        ckpt.save(mngr, step, state, config, {
            'seed': t.seed,
            'step': step,
            'validated': int(validated)
        })

    def validate(step):
        nonlocal state
        result = evaluate_source(config,
                                 module,
                                 state.params,
                                 val_src,
                                 mesh,
                                 max_batches=config.eval.validation_batches,
                                 eval_step=eval_step,
                                 desc='validation')
        state = state.replace(plateau_state=plateau_update(state.plateau_state,
                                                           jnp.asarray(result['nll'], jnp.float32)))
        row = {'validation/nll': result['nll'], 'train/learning_rate': learning_rate(config, state)}
        row.update(viewer(state.params))
        writer.write(step, row)
        summary['validation'] = result
        logging.info('step %d: validation %.4f %s', step, result['nll'], units(module))

    viewer_videos = []

    def viewer(params) -> Dict[str, float]:
        """`validation_viewer_metrics` on the first validation sequences (read once)."""
        if config.eval.get('viewer_sequences', 0) < 2 or jax.process_count() > 1:
            return {}
        if not viewer_videos:
            viewer_videos.append(
                input_pipeline.evaluation_sequences(config, 'validation',
                                                    config.eval.viewer_sequences))
            if len(viewer_videos[0]['video']) < 2:
                logging.warning('The validation split has fewer than 2 sequences: no context '
                                'gain or sample figures at validation.')
        if len(viewer_videos[0]['video']) < 2:
            return {}
        return validation_viewer_metrics(config, module, jax.device_get(params), viewer_videos[0])

    def check(step, metrics):
        values = {k: float(v) for k, v in metrics.items()}
        if all(math.isfinite(v) for v in values.values()):
            return values['loss']
        check_finite(values['loss'],
                     step,
                     grad_norm=values['grad_norm'],
                     param_norm=values['param_norm'],
                     newest_checkpoint=_newest_checkpoint_sentence(mngr))
        return values['loss']

    from tqdm import tqdm
    bar = tqdm(total=t.num_steps,
               initial=min(start_step, t.num_steps),
               desc='train',
               disable=not is_main,
               dynamic_ncols=True)
    pending = None  # (step, metrics) of the last dispatched step, checked one step late.
    last_loss = float('nan')
    interval_start, interval_steps = time.time(), 0
    try:
        if validation_pending:  # Saved before its validation: validate as the run would have.
            validate(start_step)
        for step in range(start_step, t.num_steps):
            batch = shard_batch(
                input_pipeline.train_batch(config,
                                           train_src,
                                           step,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count()), mesh)
            state, step_metrics = train_step(state, batch)
            if pending is not None:
                last_loss = check(*pending)
            pending = (step + 1, step_metrics)
            interval_steps += 1
            bar.update(1)
            done = step + 1
            logs = done % t.log_every_steps == 0
            validates_now = validates(done)
            saves = done % t.checkpoint_every_steps == 0 or done == t.num_steps
            if logs or validates_now or saves:
                last_loss = check(done, step_metrics)  # Waits for the step.
            if logs:
                elapsed = time.time() - interval_start
                writer.write(
                    done, {
                        'train/loss': last_loss,
                        'train/grad_norm': float(step_metrics['grad_norm']),
                        'train/learning_rate': learning_rate(config, state),
                        'train/steps_per_second': interval_steps / elapsed,
                        'train/sequences_per_second': interval_steps * t.batch_size / elapsed,
                    })
                bar.set_postfix_str(f'loss {last_loss:.4f} {units(module)}')
                interval_start, interval_steps = time.time(), 0
            if saves:
                # Before the validation: an error there must not lose the training since the
                # last checkpoint. A run resumed from here validates first ('validated': 0).
                save(done, validated=not validates_now)
            if validates_now:
                validate(done)
                interval_start = time.time()  # Evaluation time is not training time.
        if pending is not None:
            last_loss = check(*pending)
        if mngr.latest_step() != int(state.step):
            save(int(state.step), validated=True)
    finally:
        bar.close()
        writer.flush()
        mngr.wait_until_finished()
    summary.update(step=int(state.step), train_loss=last_loss, units=units(module))
    if t.evaluate_test and test_src is not None:
        result = evaluate_source(config,
                                 module,
                                 state.params,
                                 test_src,
                                 mesh,
                                 max_batches=config.eval.test_batches,
                                 eval_step=eval_step,
                                 desc='test')
        writer.write(int(state.step), {'test/nll': result['nll']})
        summary['test'] = result
        if is_main:
            results.write_result(workdir, config, result, step=int(state.step))
    writer.close()
    mngr.close()
    return summary
