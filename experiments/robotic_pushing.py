r"""Robotic Pushing (sect. 6): 64x64 RGB, 2 context frames, actions and states of size 5.

    python -m vpn_jax.main --config=experiments/robotic_pushing.py:vpn_rmb --workdir=/tmp/push

Variants: vpn_rmb_dilation (default; paper: 0.63 / 0.65 / 0.64 nats/dim on validation /
test seen / test novel), vpn_rmb (0.62 / 0.64 / 0.64), vpn_relu_dilation (0.73 / 0.72 / 0.75),
vpn_relu (0.72 / 0.73 / 0.75), baseline (2.06 / 2.08 / 2.07), cpu (small model) and cpu_sim (the
small model on the procedural PushSim data, 2-d actions and states; no downloads). The paper
trains 275k steps at batch 64 on random 12-frame sub-sequences.
"""

import ml_collections

from vpn_jax import config_common as common


def get_config(variant: str = 'vpn_rmb_dilation') -> ml_collections.ConfigDict:
    if variant not in common.VARIANTS + ('cpu_sim', ):
        raise ValueError(f'Unknown variant {variant!r}; expected one of '
                         f'{common.VARIANTS + ("cpu_sim",)}.')
    config = ml_collections.ConfigDict()
    config.variant = variant
    if variant in ('cpu', 'cpu_sim'):
        # PushSim has 2-d actions and states (commanded displacement, gripper position).
        dim = 2 if variant == 'cpu_sim' else 5
        config.model = common.cpu_model(output='softmax',
                                        num_colors=3,
                                        action_dim=dim,
                                        state_dim=dim,
                                        top_channels=48)
    else:
        config.model = common.paper_model(variant,
                                          top_channels=1536,
                                          output='softmax',
                                          num_colors=3,
                                          action_dim=5,
                                          state_dim=5)

    config.data = ml_collections.ConfigDict()
    # Dataset: 'robotic_pushing' (TFDS builder over the real recordings).
    config.data.name = 'robotic_pushing'
    # Training sub-sequence length and context (sect. 6.1); evaluation uses 20 frames.
    config.data.num_frames = 12
    config.data.num_context = 2
    config.data.eval_num_frames = 20
    config.data.tfds_data_dir = ''
    # Frame size: 64 in the paper; smaller values take a central crop (tests only).
    config.data.image_size = 64
    # Fixed evaluation splits (TFDS dataset, split): the paper reports validation, test_seen
    # and test_novel.
    config.data.test_dataset = 'robotic_pushing'
    config.data.test_split = 'test_seen'
    config.data.validation_dataset = 'robotic_pushing'
    config.data.validation_split = 'validation'
    # The real recordings cannot be prepared without the manual download.
    config.data.prepare_if_missing = False
    # TFDS manual dir holding push_train/, push_testseen/, push_testnovel/.
    config.data.manual_dir = ''
    # PushSim (data.name='push_sim'): seeds and sizes of the train, validation and test splits.
    config.data.sim_seeds = (0, 1, 2)
    config.data.sim_sizes = (2000, 64, 256)
    # PushSim: probability per step that the commanded displacement is redrawn, and the area
    # downsampling of its 64x64 frames (1, 2 or 4).
    config.data.sim_turn_probability = 0.3
    config.data.sim_downsample = 1
    # PushSim: a random floor colour per sequence (True) or one grey floor for all (False).
    config.data.sim_random_floor = True
    # Ablation: give each sequence another sequence's actions (train and eval).
    config.data.shuffle_actions = False

    common.training_config(config, batch_size=64, num_steps=275_000, learning_rate=1e-4)
    if variant in ('cpu', 'cpu_sim'):
        _cpu_overrides(config)
    if variant == 'cpu_sim':
        config.data.name = 'push_sim'
    return config


def _cpu_overrides(config: ml_collections.ConfigDict) -> None:
    """Small batch and few steps for 2 CPU cores (cpu_sim: PushSim, no downloads).

    The loss is in nats/dim, so gradients are ~1e-4 of Moving MNIST's: with TF1's accumulator
    start of 1.0 RMSProp's first ~50 steps barely move; short runs start it at 0 (Torch/PyTorch).
    """
    common.short_run(config,
                     num_steps=600,
                     every=200,
                     log_every=20,
                     eval_batch_size=16,
                     validation_batches=2,
                     rmsprop_initial_scale=0.0,
                     plateau_patience=2)
    config.eval.test_batches = 4
