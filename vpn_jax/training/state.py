"""What training carries from step to step: `TrainState`, the optimiser that updates it."""

from typing import Any, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from optax import contrib as optax_contrib

from vpn_jax.model.vpn import VideoPixelNetwork, init_variables


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


def create_train_state(
        config: ml_collections.ConfigDict,
        module: VideoPixelNetwork,
        rng: jax.Array,
        optimizer: Optional[Tuple[optax.GradientTransformation, Any]] = None) -> TrainState:
    """A fresh state: parameters from `rng`, zero step, fresh optimiser and plateau states.

    optimizer: `make_optimizer(config)`'s (tx, plateau), when the caller has made it already.
    """
    size = config.data.image_size
    params = init_variables(module, rng, height=size, width=size)['params']
    tx, plateau = optimizer or make_optimizer(config)
    return TrainState(step=jnp.zeros((), jnp.int32),
                      params=params,
                      opt_state=tx.init(params),
                      plateau_state=plateau.init(params))


def learning_rate(config: ml_collections.ConfigDict, state: TrainState) -> float:
    """The current learning rate: the base rate times the plateau scale."""
    return float(config.train.learning_rate) * float(state.plateau_state.scale)
