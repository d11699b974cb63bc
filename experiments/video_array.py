r"""Your own videos: a uint8[N, T, H, W, C] .npy (see vpn_jax/data/video_array.py).

    python -m vpn_jax.main --config=experiments/video_array.py:cpu \
        --config.data.path=/data/my_clips.npy --config.model.num_colors=3 --workdir=/tmp/mine

Variants: cpu (the small VPN of the Moving MNIST `cpu` config, a few minutes of a laptop CPU
per hundred steps at 64x64) and vpn_rmb_dilation (the paper's model, for accelerators). Frames
are modelled with the 256-way softmax of sect. 6 (nats/dim); RGB or grey (model.num_colors must
match the videos' C).
"""

import ml_collections

from vpn_jax import config_common as common

VARIANTS = ('cpu', 'vpn_rmb_dilation')


def get_config(variant: str = 'cpu') -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f'Unknown variant {variant!r}; expected one of {VARIANTS}.')
    config = ml_collections.ConfigDict()
    config.variant = variant
    if variant == 'cpu':
        config.model = common.cpu_model(output='softmax', num_colors=3, top_channels=48)
    else:
        config.model = common.paper_model(variant,
                                          top_channels=1536,
                                          output='softmax',
                                          num_colors=3)

    config.data = ml_collections.ConfigDict()
    config.data.name = 'video_array'
    # The .npy of uint8[N, T, H, W, C] videos (vpn_jax.data.video_array.save).
    config.data.path = ''
    # Fractions of the videos held out for validation and test (a fixed seeded split).
    config.data.validation_fraction = 0.1
    config.data.test_fraction = 0.1
    config.data.split_seed = 0
    # Training windows of num_frames frames; evaluation scores frames num_context.. of the
    # first eval_num_frames frames of each held-out video.
    config.data.num_frames = 8
    config.data.num_context = 2
    config.data.eval_num_frames = 8
    # Frame size (H = W); smaller than the videos' takes a central crop.
    config.data.image_size = 64
    config.data.tfds_data_dir = ''

    common.training_config(config, batch_size=64, num_steps=100_000, learning_rate=1e-4)
    if variant == 'cpu':
        # As the pushing `cpu` config: nats/dim gradients are small, so RMSProp's mean-square
        # accumulator starts at 0 (PyTorch) rather than TF1's 1.
        common.short_run(config,
                         num_steps=300,
                         every=100,
                         log_every=10,
                         eval_batch_size=8,
                         validation_batches=2,
                         rmsprop_initial_scale=0.0,
                         learning_rate=1e-3,
                         num_context=1)
        config.eval.test_batches = 0
    return config
