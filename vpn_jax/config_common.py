"""Shared pieces of the experiment configs: the paper's model variants (sect. 5.1, 6.1).

Not a config file itself: the files in `experiments/` import it as
`from vpn_jax import config_common as common` (big_vision's `configs/common.py` pattern), so that
`--config=experiments/moving_mnist.py:VARIANT` works from any working directory.
"""

import ml_collections

PAPER_VARIANTS = ('vpn_rmb_dilation', 'vpn_rmb', 'vpn_relu_dilation', 'vpn_relu', 'baseline')
VARIANTS = PAPER_VARIANTS + ('cpu', )
# Moving MNIST only: the recipe of the shipped CPU-trained models (experiments/moving_mnist.py).
CPU_RECIPE_VARIANTS = ('cpu_vpn', 'cpu_baseline')

# Sect. 4.3: two repetitions of [1, 2, 4, 8] over the 8 encoder RMBs. The ReLU variants have
# twice the blocks with one 3x3 convolution each, so each rate covers two consecutive blocks:
# the receptive field equals the RMB variant's (sect. 5.1: "to equate the size of the receptive
# fields").
RMB_DILATIONS = (1, 2, 4, 8) * 2
RELU_DILATIONS = (1, 1, 2, 2, 4, 4, 8, 8) * 2


def paper_model(variant: str,
                *,
                top_channels: int,
                output: str,
                num_colors: int,
                action_dim: int = 0,
                state_dim: int = 0) -> ml_collections.ConfigDict:
    """The paper's model for `variant` (c=128, ConvLSTM 256 channels)."""
    if variant not in PAPER_VARIANTS:
        raise ValueError(f'Unknown variant {variant!r}; expected one of {VARIANTS}.')
    relu = variant.startswith('vpn_relu')
    dilation = variant.endswith('dilation') or variant == 'baseline'
    return ml_collections.ConfigDict(
        dict(
            # 'pixelcnn' (the VPN) or 'baseline' (unmasked decoders that do not see frame t).
            decoder='baseline' if variant == 'baseline' else 'pixelcnn',
            # Residual block: 'rmb' (sect. 4.2) or 'relu' (He et al. 2016).
            block='relu' if relu else 'rmb',
            # c: MU width; the residual stream has 2c channels.
            channels=128,
            # Residual blocks in the per-frame encoder (k) and in the decoder (l).
            encoder_blocks=16 if relu else 8,
            decoder_blocks=24 if relu else 12,
            # One dilation rate per encoder block, or () for none. Decoders never dilate.
            encoder_dilations=(RELU_DILATIONS if relu else RMB_DILATIONS) if dilation else (),
            # ConvLSTM channels.
            lstm_channels=256,
            # Channels of the layer before the output.
            top_channels=top_channels,
            # 'softmax' (256-way per sub-pixel) or 'sigmoid' (Moving MNIST's loss).
            output=output,
            # 1 (grayscale) or 3 (RGB; colour order R, G, B).
            num_colors=num_colors,
            # Sizes of the conditioning vectors; 0 when unconditioned.
            action_dim=action_dim,
            state_dim=state_dim,
            # Compute dtype: 'float32' or 'bfloat16' (parameters stay float32).
            dtype='float32',
            # What each residual block keeps for the backward pass, the rest recomputed:
            # 'none', 'blocks' (only its input) or 'convs' (its convolutions' outputs; the MU's
            # gates are recomputed). See vpn_jax/model/encoder.py, REMAT_POLICIES.
            remat='none',
        ))


def cpu_model(*,
              output: str,
              num_colors: int,
              action_dim: int = 0,
              state_dim: int = 0,
              top_channels: int = 32) -> ml_collections.ConfigDict:
    """A small VPN that a 2-core laptop trains in minutes (same structure, fewer channels)."""
    config = paper_model('vpn_rmb_dilation',
                         top_channels=top_channels,
                         output=output,
                         num_colors=num_colors,
                         action_dim=action_dim,
                         state_dim=state_dim)
    config.channels = 16
    config.encoder_blocks = 2
    config.decoder_blocks = 2
    config.encoder_dilations = (1, 2)
    config.lstm_channels = 16
    return config


def training_config(config: ml_collections.ConfigDict, *, batch_size: int, num_steps: int,
                    learning_rate: float) -> ml_collections.ConfigDict:
    """Adds config.train (global batch, steps, RMSProp learning rate, seed 0) and config.eval,
    with `training_defaults` for everything else."""
    config.train = ml_collections.ConfigDict(
        dict(batch_size=batch_size, num_steps=num_steps, learning_rate=learning_rate, seed=0))
    return training_defaults(config)


def short_run(config: ml_collections.ConfigDict,
              *,
              num_steps: int,
              every: int,
              log_every: int,
              eval_batch_size: int,
              validation_batches: int,
              batch_size: int = 4,
              **train_overrides) -> None:
    """A CPU variant's schedule: batch 4, few steps, validation and checkpoints `every` steps.

    `train_overrides` sets further config.train fields (e.g. learning_rate, plateau_patience).
    """
    t = config.train
    t.batch_size = batch_size
    t.num_steps = num_steps
    t.eval_every_steps = t.checkpoint_every_steps = every
    t.log_every_steps = log_every
    t.update(train_overrides)
    config.eval.batch_size = eval_batch_size
    config.eval.validation_batches = validation_batches
    # Samples cost a CPU more than the validation NLL: a small view of them.
    config.eval.viewer_sequences = 4


def training_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Adds the optimiser, schedule, checkpoint, logging and evaluation fields to `config`.

    Expects config.train (batch_size, num_steps, learning_rate, seed) and config.data; the
    defaults are the paper's (sect. 5.1, 6.1) where it gives them.
    """
    train = config.train
    # Context frames of a training sequence (the loss covers the rest); 0: data.num_context.
    train.num_context = 0
    # Sequential micro-batches per device: each device splits its share of the global batch
    # into this many equal parts and averages their gradients (the same update, less memory).
    train.microbatches = 1
    # RMSProp as in TF1's tf.train.RMSPropOptimizer (2016): decay 0.9, eps 1e-10 inside the
    # square root, mean-square accumulator initialised to 1, no momentum, not centred.
    train.rmsprop_decay = 0.9
    # RMSProp epsilon (added to the mean square, inside the square root).
    train.rmsprop_eps = 1e-10
    # Initial value of the mean-square accumulator (TF1: 1.0; PyTorch/Keras: 0.0).
    train.rmsprop_initial_scale = 1.0
    # Multiply the learning rate by this factor when the validation loss flatlines (sect. 5.1).
    train.plateau_factor = 0.3
    # Evaluations without relative improvement > plateau_rtol before the learning rate drops.
    train.plateau_patience = 5
    # Relative improvement of the validation loss that counts as progress.
    train.plateau_rtol = 1e-3
    # Evaluations to wait after a drop before counting again.
    train.plateau_cooldown = 0
    # Probability that the decoder of a training frame sees a black frame instead of the frame it
    # predicts (which stays the target). Not in the paper (0): it makes the decoder take what it
    # cannot see from the context (WORKSPACE.md, "Choices where the paper is silent").
    train.withhold_frames = 0.0
    # When > 0, the withholding probability moves linearly from withhold_frames to
    # withhold_frames_end over this many steps, then stays there (0: constant withhold_frames).
    train.withhold_decay_steps = 0
    train.withhold_frames_end = 0.0
    # 'sigmoid' models: the probability that the encoder and decoder read a training frame as
    # Bernoulli(x / 255) binary pixels, as the sampler feeds them back, while the loss keeps the
    # grey frames as targets (0: never, as in the paper).
    train.binarize_frames = 0.0
    # Start from these parameters instead of random ones (fine-tuning): a training workdir, a
    # WORKDIR@STEP or a shipped model's name; '' for random. The optimiser starts fresh; resuming
    # ignores it. The run records what training they had received (warm_start.json), so that an
    # export counts every stage.
    train.init_from = ''
    # Then take the context path (encoder and ConvLSTM) from this workdir or shipped model, e.g. a
    # trained baseline's into a VPN (staged training); '' keeps the start's. Not in the paper.
    train.init_context_from = ''
    # Clip gradients to this global norm; 0 disables clipping (the paper does not mention any).
    train.grad_clip_norm = 0.0
    # Steps between validation evaluations (each also feeds the plateau schedule).
    train.eval_every_steps = 5_000
    # Steps between checkpoints; a final checkpoint is always written.
    train.checkpoint_every_steps = 5_000
    # Checkpoints kept (the newest K).
    train.keep_checkpoints = 3
    # Steps between metric writes (train loss, learning rate, steps/s, sequences/s).
    train.log_every_steps = 100
    # Evaluate the test split at the end of train_and_evaluate.
    train.evaluate_test = True

    config.eval = ml_collections.ConfigDict()
    # Global evaluation batch (split across devices; the last batch is padded and masked).
    config.eval.batch_size = 64
    # Validation batches per evaluation during training (0: the whole split).
    config.eval.validation_batches = 16
    # Test batches in the final evaluation (0: the whole split, as in the paper).
    config.eval.test_batches = 0
    # At each validation, what a viewer sees (vpn_jax.video_metrics): the context gain and
    # viewer_samples continuations at viewer_temperature of the first viewer_sequences validation
    # sequences (0: none; at least 2, which the context gain pairs).
    config.eval.viewer_sequences = 8
    config.eval.viewer_samples = 2
    config.eval.viewer_temperature = 1.0
    return config
