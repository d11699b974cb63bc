"""Shared pieces of the experiment configs: the paper's model variants (sect. 5.1, 6.1).

Not a config file itself; `moving_mnist.py` and `robotic_pushing.py` import it by path so that
`--config=experiments/moving_mnist.py:VARIANT` works from any working directory.
"""

import ml_collections

PAPER_VARIANTS = ('vpn_rmb_dilation', 'vpn_rmb', 'vpn_relu_dilation', 'vpn_relu', 'baseline')
VARIANTS = PAPER_VARIANTS + ('cpu',)

# Sect. 4.3: two repetitions of [1, 2, 4, 8] over the 8 encoder RMBs. The ReLU variants have
# twice the blocks with one 3x3 convolution each, so each rate covers two consecutive blocks:
# the receptive field equals the RMB variant's (sect. 5.1: "to equate the size of the receptive
# fields").
RMB_DILATIONS = (1, 2, 4, 8) * 2
RELU_DILATIONS = (1, 1, 2, 2, 4, 4, 8, 8) * 2


def paper_model(variant: str, *, top_channels: int, output: str, num_colors: int,
                action_dim: int = 0, state_dim: int = 0) -> ml_collections.ConfigDict:
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
            # Rematerialise residual blocks in the backward pass (less memory, more compute).
            remat=False,
        ))


def cpu_model(*, output: str, num_colors: int, action_dim: int = 0, state_dim: int = 0,
              top_channels: int = 32) -> ml_collections.ConfigDict:
    """A small VPN that a 2-core laptop trains in minutes (same structure, fewer channels)."""
    config = paper_model('vpn_rmb_dilation', top_channels=top_channels, output=output,
                         num_colors=num_colors, action_dim=action_dim, state_dim=state_dim)
    config.channels = 16
    config.encoder_blocks = 2
    config.decoder_blocks = 2
    config.encoder_dilations = (1, 2)
    config.lstm_channels = 16
    return config
