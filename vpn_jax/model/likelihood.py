"""Exact log-likelihoods of videos under the VPN (softmax) and the paper's sigmoid loss."""

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax


def pixel_log_likelihoods(logits: jax.Array, frames: jax.Array, output: str) -> jax.Array:
    """Log-likelihood of every sub-pixel; float32[B, T, H, W, C] (minus its NLL heat map).

    Args:
      logits: float32[B, T, H, W, C, 256] ('softmax') or float32[B, T, H, W, C] ('sigmoid').
      frames: uint8[B, T, H, W, C], the frames the logits predict.
      output: 'softmax': log p(x) in nats under the 256-way categoricals.
        'sigmoid': minus the sigmoid cross-entropy of sect. 5 with targets z = x / 255
        (a log-likelihood in nats when the frames are binary, 0 or 255).
    """
    if output == 'softmax':
        return -optax.softmax_cross_entropy_with_integer_labels(logits, frames.astype(jnp.int32))
    if output == 'sigmoid':
        return -optax.sigmoid_binary_cross_entropy(logits, frames.astype(jnp.float32) / 255.0)
    raise ValueError(f"output must be 'softmax' or 'sigmoid', got {output!r}.")


def frame_log_likelihoods(logits: jax.Array, frames: jax.Array, output: str) -> jax.Array:
    """Log-likelihood of each frame, summed over its sub-pixels; float32[B, T].

    Arguments as for `pixel_log_likelihoods`.
    """
    ll = pixel_log_likelihoods(logits, frames, output)
    return ll.reshape(ll.shape[:2] + (-1, )).sum(-1)


def predicted_log_likelihood(module,
                             video: jax.Array,
                             actions: Optional[jax.Array],
                             states: Optional[jax.Array],
                             num_context: int,
                             withheld: Optional[jax.Array] = None,
                             inputs: Optional[jax.Array] = None) -> jax.Array:
    """Inside `module.apply`: log p(frames num_context..T-1 | frames before); float32[B].

    Decodes only the predicted frames: the decoders of the context frames 1..num_context-1
    would not contribute. Arguments as for `log_likelihood`, plus two training-only views:
    `withheld`: bool[B, T - num_context] (see `withheld_decoder_inputs`); `inputs`: uint8 like
    `video`, the frames the encoder and decoder read in place of `video`, which stays the target
    (`config.train.binarize_frames`). With neither, this is the paper's likelihood.
    """
    module.check_inputs(video, actions, states)
    seen = video if inputs is None else inputs
    cond = module.conditioning(video.shape[1], actions, states)
    _, context = module.contexts(module.encode(seen[:, :-1],
                                               None if cond is None else cond[:, :-1]))
    targets = video[:, num_context:]
    decoder_in = seen[:, num_context:]
    if withheld is not None:
        decoder_in = withheld_decoder_inputs(decoder_in, withheld)
    logits = module.decode(decoder_in, context[:, num_context - 1:],
                           None if cond is None else cond[:, num_context:])
    return frame_log_likelihoods(logits, targets, module.output).sum(axis=1)


def withheld_decoder_inputs(frames: jax.Array, withheld: jax.Array) -> jax.Array:
    """The decoder's view of the frames it predicts, with the `withheld` ones made black.

    frames: uint8[B, T, H, W, C]; withheld: bool[B, T]. A training-only departure from the paper
    (`config.train.withhold_frames`, word dropout in Bowman et al. 2016): the decoder of a
    withheld frame still predicts the true frame, but sees none of its pixels, so it must take
    them from the context. Black, not a special value, because a black neighbourhood is what the
    decoder sees wherever a digit is about to start at sampling time.
    """
    return jnp.where(withheld[:, :, None, None, None], jnp.zeros_like(frames), frames)


def log_likelihood(module,
                   variables,
                   video: jax.Array,
                   *,
                   num_context: int,
                   actions: Optional[jax.Array] = None,
                   states: Optional[jax.Array] = None) -> jax.Array:
    """log p(frames num_context..T-1 | frames before) in nats; float32[B].

    The one log-likelihood of the project: training minimises it, evaluation reports it.

    Args:
      module: a `VideoPixelNetwork` (see `build_model`).
      variables: its variables.
      video: uint8[B, T, H, W, C].
      num_context: number of given frames, 1 <= num_context < T.
      actions: float[B, T, action_dim] or None.
      states: float[B, T_s, state_dim] or None (states of the first T_s frames).
    For 'sigmoid' models this is minus the paper's sigmoid cross-entropy summed over the
    predicted frames.
    """
    t = video.shape[1]
    if isinstance(num_context, bool) or not isinstance(num_context, (int, np.integer)):
        raise ValueError(f'num_context must be an int (the number of given frames); got '
                         f'{num_context!r}.')
    if not 1 <= num_context < t:
        raise ValueError(f'num_context must be in [1, {t - 1}] for a video of {t} frames; '
                         f'got {num_context}.')
    return module.apply(variables,
                        video,
                        actions,
                        states,
                        int(num_context),
                        method=predicted_log_likelihood)
