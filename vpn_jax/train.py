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
import flax
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from optax import contrib as optax_contrib

from vpn_jax import checkpoint as ckpt
from vpn_jax import input_pipeline
from vpn_jax import metrics as metrics_lib
from vpn_jax.likelihood import frame_log_likelihoods
from vpn_jax.vpn import VideoPixelNetwork, build_model, init_variables

AXIS = 'data'


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf."""


@flax.struct.dataclass
class TrainState:
    """Everything that training carries from step to step (all replicated across devices).

    step: int32[], optimisation steps taken (= the data position).
    params: the model parameters (float32).
    opt_state: the RMSProp (and optional clipping) state.
    plateau_state: `optax.contrib.reduce_on_plateau`'s state; `scale` multiplies the learning
      rate and is updated from the validation loss at each evaluation.
    """
    step: jax.Array
    params: Any
    opt_state: Any
    plateau_state: Any


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


def _predicted_log_likelihood(module: VideoPixelNetwork, video, actions, states, num_context):
    """Inside `module.apply`: log p(frames num_context.. | earlier frames); float32[B].

    Equals `vpn_jax.log_likelihood` but decodes only the predicted frames (the context frames'
    decoders do not contribute to the loss), which saves (num_context - 1) / (T - 1) of the
    decoder's compute.
    """
    module.check_inputs(video, actions, states)
    b, t, h, w, _ = video.shape
    cond = module.conditioning(t, actions, states)
    encoded = module.encode(video[:, :-1], None if cond is None else cond[:, :-1])
    # The ConvLSTM unrolled in Python (the same parameters as `module.contexts`, which scans).
    # XLA's cost analysis counts a while loop's body once, so unrolled, the train step's FLOPs
    # are counted right (benchmarks/train_throughput.py). With vpn_jax.conv's matmul kernel
    # gradients the scan is no longer slower (XLA's own were ~25x slower inside a while loop).
    carry = module.initial_carry(b, h, w)
    contexts = []
    for i in range(t - 1):
        carry, out = module.lstm_step(carry, encoded[:, i])
        contexts.append(out)
    context = jnp.stack(contexts, axis=1)
    targets = video[:, num_context:]
    logits = module.decode(targets, context[:, num_context - 1:],
                           None if cond is None else cond[:, num_context:])
    return frame_log_likelihoods(logits, targets, module.output).sum(axis=1)


def sequence_nll(module: VideoPixelNetwork, params: Any, video: jax.Array,
                 actions: Optional[jax.Array], states: Optional[jax.Array],
                 num_context: int) -> jax.Array:
    """Negative log-likelihood of the predicted frames of each sequence, in nats; float32[B].

    video: uint8[B, T, H, W, C]; actions: float32[B, T, A] or None; states: float32[B, T_c, S]
    or None.
    """
    t = video.shape[1]
    if not 1 <= num_context < t:
        raise ValueError(f'num_context must be in [1, {t - 1}]; got {num_context}.')
    return -module.apply(
        {'params': params}, video, actions, states, num_context, method=_predicted_log_likelihood)


def train_num_context(config: ml_collections.ConfigDict) -> int:
    """Context frames of a training sequence: the loss covers frames num_context..T-1.

    `train.num_context` when set (> 0), else `data.num_context` (the paper's: training scores the
    same frames as evaluation). A smaller value scores more frames per sequence for the same
    encoder and ConvLSTM compute; evaluation always uses `data.num_context`.
    """
    return int(config.train.get('num_context', 0) or config.data.num_context)


def make_optimizer(config: ml_collections.ConfigDict):
    """(tx, plateau): RMSProp (optionally after global-norm clipping) and the plateau schedule.

    The plateau transform is kept apart from `tx`: its state is updated from the validation loss
    at each evaluation, and the train step multiplies the RMSProp update by its `scale`.
    """
    t = config.train
    rmsprop = optax.rmsprop(t.learning_rate,
                            decay=t.rmsprop_decay,
                            eps=t.rmsprop_eps,
                            initial_scale=t.rmsprop_initial_scale,
                            eps_in_sqrt=True)
    tx = optax.chain(optax.clip_by_global_norm(t.grad_clip_norm),
                     rmsprop) if t.grad_clip_norm > 0 else rmsprop
    plateau = optax_contrib.reduce_on_plateau(factor=t.plateau_factor,
                                              patience=t.plateau_patience,
                                              rtol=t.plateau_rtol,
                                              cooldown=t.plateau_cooldown)
    return tx, plateau


def create_train_state(config: ml_collections.ConfigDict, module: VideoPixelNetwork,
                       rng: jax.Array) -> TrainState:
    """A fresh state: parameters from `rng`, zero step, fresh optimiser and plateau states."""
    size = config.data.image_size
    params = init_variables(module, rng, height=size, width=size)['params']
    tx, plateau = make_optimizer(config)
    return TrainState(step=jnp.zeros((), jnp.int32),
                      params=params,
                      opt_state=tx.init(params),
                      plateau_state=plateau.init(params))


def learning_rate(config: ml_collections.ConfigDict, state: TrainState) -> float:
    """The current learning rate: the base rate times the plateau scale."""
    return float(config.train.learning_rate) * float(state.plateau_state.scale)


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


def make_train_step(config: ml_collections.ConfigDict, module: VideoPixelNetwork,
                    mesh: Mesh) -> Callable[[TrainState, Mapping[str, jax.Array]], Tuple]:
    """A jitted data-parallel step `(state, batch) -> (state, metrics)`; donates `state`.

    batch: video uint8[B, T, H, W, C] (B divisible by the mesh size), optional actions
    float32[B, T, A] and states float32[B, T_c, S], split over the mesh's 'data' axis.
    metrics: {'loss': float32[] in the paper's units, 'grad_norm': float32[]}.
    """
    tx, _ = make_optimizer(config)
    num_context = train_num_context(config)

    def local_step(state: TrainState, batch):
        video, actions, states = input_pipeline.model_args(batch)
        norm = normaliser(module, video.shape, num_context)
        # Each device differentiates its own shard's loss with respect to its copy of the
        # parameters (pmap semantics); without the cast, shard_map would treat the replicated
        # parameters as invariant and sum the gradients over devices already.
        params = jax.tree_util.tree_map(lambda x: jax.lax.pcast(x, AXIS, to='varying'),
                                        state.params)

        def loss_fn(p):
            return jnp.mean(sequence_nll(module, p, video, actions, states, num_context)) / norm

        loss, grads = jax.value_and_grad(loss_fn)(params)
        grads = jax.lax.pmean(grads, AXIS)
        loss = jax.lax.pmean(loss, AXIS)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        scale = state.plateau_state.scale
        updates = jax.tree_util.tree_map(lambda u: (scale * u).astype(u.dtype), updates)
        new_state = state.replace(step=state.step + 1,
                                  params=optax.apply_updates(state.params, updates),
                                  opt_state=opt_state)
        return new_state, {'loss': loss, 'grad_norm': optax.tree.norm(grads)}

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

    Returns {'nll': float, 'units': str, 'num_sequences': int, 'seconds': float}.
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
        'seconds': time.time() - start
    }


# ------------------------------------------------------------------------------------------------
# Checks before compute.


def check_config(config: ml_collections.ConfigDict, *, num_devices: int) -> None:
    """Raises ValueError for configs that cannot run (before any data is read or compiled)."""
    t = config.train
    for name, value in (('train.batch_size', t.batch_size), ('eval.batch_size',
                                                             config.eval.batch_size)):
        if value < 1 or value % num_devices:
            raise ValueError(f'{name}={value} is not divisible by the {num_devices} devices; the '
                             f'batch is split evenly across devices: use a multiple of '
                             f'{num_devices}.')
    if t.num_steps < 0:
        raise ValueError(f'train.num_steps must be >= 0; got {t.num_steps}.')
    for name in ('eval_every_steps', 'checkpoint_every_steps', 'log_every_steps',
                 'keep_checkpoints'):
        if t[name] < 1:
            raise ValueError(f'train.{name} must be >= 1; got {t[name]}.')
    nc, t = train_num_context(config), config.data.num_frames
    if not 1 <= nc < t:
        raise ValueError(f'Training sequences have data.num_frames={t} frames, so their context '
                         f'(train.num_context, or data.num_context when that is 0) must be in '
                         f'[1, {t - 1}]; got {nc}.')
    build_module(config)  # Raises ValueError on a bad model config.
    input_pipeline.check_data(config)


def check_finite(loss: float, step: int) -> None:
    """Raises NonFiniteLossError with the step and what to do."""
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f'Training loss is {loss} at step {step}: stopping. No checkpoint was written after '
            'the last finite loss; the newest checkpoint in the workdir is the last good one. '
            'Try a lower learning rate, train.grad_clip_norm > 0, or model.dtype=float32.')


# ------------------------------------------------------------------------------------------------
# The loop.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
    """Trains `config` in `workdir` (resuming from its newest checkpoint), then evaluates.

    Writes checkpoints to `workdir/checkpoints`, metrics to `workdir/metrics.jsonl` and
    `workdir/tensorboard`, and the final test evaluation to `workdir/eval_test.json` (when
    config.train.evaluate_test). Returns {'step', 'train_loss', 'validation', 'test', ...}.
    Raises NonFiniteLossError when the loss becomes NaN or inf.
    """
    t = config.train
    mesh = make_mesh()
    check_config(config, num_devices=mesh.size)
    module = build_module(config)
    workdir = os.path.abspath(os.path.expanduser(workdir))
    mngr = ckpt.manager(workdir, keep=t.keep_checkpoints)
    latest = mngr.latest_step()
    if latest is not None:
        ckpt.check_compatible(mngr, latest, config)
    # Open the data before compiling anything (missing directories or splits raise here).
    train_src = input_pipeline.train_source(config)
    val_src = input_pipeline.eval_source(config, 'validation') if t.eval_every_steps <= \
        t.num_steps else None
    test_src = input_pipeline.eval_source(config, 'test') if t.evaluate_test else None

    state = replicate(create_train_state(config, module, jax.random.key(t.seed)), mesh)
    if latest is not None:
        position = ckpt.read_data_position(mngr, latest)
        if position['seed'] != t.seed:
            raise ValueError(f'The checkpoint in {workdir} was trained with train.seed='
                             f'{position["seed"]}, the config says {t.seed}.')
        state = ckpt.restore_state(mngr, latest, state)
        logging.info('Resumed from step %d in %s.', latest, mngr.directory)
    start_step = int(state.step)

    train_step = make_train_step(config, module, mesh)
    eval_step = make_eval_step(config, module, mesh)
    _, plateau = make_optimizer(config)
    plateau_update = jax.jit(lambda ps, v: plateau.update(updates={}, state=ps, value=v)[1],
                             out_shardings=NamedSharding(mesh, P()))
    is_main = jax.process_index() == 0
    writer = metrics_lib.MetricWriter(workdir, enabled=is_main)
    summary: Dict[str, Any] = {'workdir': workdir, 'start_step': start_step}

    def save(step):
        ckpt.save(mngr, step, state, config, {'seed': t.seed, 'step': step})

    from tqdm import tqdm
    bar = tqdm(total=t.num_steps,
               initial=start_step,
               desc='train',
               disable=not is_main,
               dynamic_ncols=True)
    pending = None  # (step, metrics) of the last dispatched step, checked one step late.
    last_loss = float('nan')
    interval_start, interval_steps = time.time(), 0
    try:
        for step in range(start_step, t.num_steps):
            batch = shard_batch(
                input_pipeline.train_batch(config,
                                           train_src,
                                           step,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count()), mesh)
            state, step_metrics = train_step(state, batch)
            if pending is not None:
                last_loss = float(pending[1]['loss'])
                check_finite(last_loss, pending[0])
            pending = (step + 1, step_metrics)
            interval_steps += 1
            bar.update(1)
            done = step + 1
            boundary = (done % t.log_every_steps == 0, done % t.eval_every_steps == 0,
                        done % t.checkpoint_every_steps == 0 or done == t.num_steps)
            if any(boundary):
                last_loss = float(step_metrics['loss'])  # Waits for the step.
                check_finite(last_loss, done)
            if boundary[0]:
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
            if boundary[1] and val_src is not None:
                result = evaluate_source(config,
                                         module,
                                         state.params,
                                         val_src,
                                         mesh,
                                         max_batches=config.eval.validation_batches,
                                         eval_step=eval_step,
                                         desc='validation')
                state = state.replace(plateau_state=plateau_update(
                    state.plateau_state, jnp.asarray(result['nll'], jnp.float32)))
                writer.write(
                    done, {
                        'validation/nll': result['nll'],
                        'train/learning_rate': learning_rate(config, state)
                    })
                summary['validation'] = result
                logging.info('step %d: validation %.4f %s', done, result['nll'], units(module))
                interval_start = time.time()  # Evaluation time is not training time.
            if boundary[2]:
                save(done)
        if pending is not None:
            last_loss = float(pending[1]['loss'])
            check_finite(last_loss, pending[0])
        if mngr.latest_step() != int(state.step):
            save(int(state.step))
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
            from vpn_jax import evaluate as evaluate_lib
            evaluate_lib.write_result(workdir, config, result, step=int(state.step))
    writer.close()
    mngr.close()
    return summary
