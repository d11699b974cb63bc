r"""Parameter counts and forward-pass time of the paper-size VPN on this machine.

    python benchmarks/model_forward.py [--experiment=moving_mnist] [--variant=vpn_rmb_dilation]
        [--batch_size=1] [--num_frames=20] [--repeats=3]

Prints the parameter count (all kernel entries, and those that the PixelCNN masks leave
non-zero), XLA's FLOP count for one forward pass (teacher-forced logits for frames 1..T-1),
the compile time, and the median wall time of the forward pass.
"""

import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import vpn_jax
from vpn_jax import configs
from vpn_jax.model.masked_conv import causal_mask, channel_groups

_EXPERIMENT = flags.DEFINE_string('experiment', 'moving_mnist', 'moving_mnist | robotic_pushing')
_VARIANT = flags.DEFINE_string('variant', 'vpn_rmb_dilation', 'Config variant.')
_BATCH = flags.DEFINE_integer('batch_size', 1, 'Videos per forward pass.')
_FRAMES = flags.DEFINE_integer('num_frames', 20, 'Frames per video.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed forward passes.')


def load_config(experiment: str, variant: str):
    """`experiments/<experiment>.py:<variant>`, found from the repository root."""
    return configs.load_config(f'experiments/{experiment}.py:{variant}')


def unmasked_count(model, params) -> int:
    """Parameters left free by the masks (decoder kernels multiplied by their masks)."""
    total = vpn_jax.count_params(params)
    if model.decoder != 'pixelcnn':
        return total
    flat = jax.tree_util.tree_flatten_with_path(params['frame_decoder'])[0]
    for path, leaf in flat:
        names = [getattr(p, 'key', '') for p in path]
        if names[-1] != 'kernel' or 'cond' in names or names[0] == 'context':
            continue
        k, _, cin, cout = leaf.shape
        blocks = 4 if names[-2] == 'gates' else 1
        mask = causal_mask(k, channel_groups(cin, model.num_colors),
                           np.tile(channel_groups(cout // blocks, model.num_colors), blocks),
                           'A' if names[0] == 'input' else 'B')
        total -= int(mask.size - mask.sum())
    return total


def main(argv):
    del argv
    config = load_config(_EXPERIMENT.value, _VARIANT.value)
    model = vpn_jax.build_model(config.model)
    b, t = _BATCH.value, _FRAMES.value
    video = jnp.asarray(
        np.random.default_rng(0).integers(0, 256, (b, t, 64, 64, model.num_colors), np.uint8))
    actions = jnp.zeros((b, t, model.action_dim)) if model.action_dim else None
    states = jnp.zeros((b, 2, model.state_dim)) if model.state_dim else None
    variables = vpn_jax.init_variables(model, jax.random.key(0), height=64, width=64)
    params = variables['params']
    forward = jax.jit(model.apply)
    start = time.perf_counter()
    compiled = forward.lower(variables, video, actions, states).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get('flops', float('nan')))
    jax.block_until_ready(compiled(variables, video, actions, states))
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        jax.block_until_ready(compiled(variables, video, actions, states))
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    print(f'{_EXPERIMENT.value}:{_VARIANT.value} on {jax.devices()[0].device_kind} '
          f'({os.cpu_count()} cores), batch {b} x {t} frames of 64x64x{model.num_colors}')
    print(f'  parameters: {vpn_jax.count_params(params):,} '
          f'({unmasked_count(model, params):,} not masked out)')
    print(f'  forward FLOPs (XLA): {flops / 1e9:,.1f} GFLOP')
    print(f'  compile: {compile_s:.1f} s; forward: {seconds:.2f} s median of {len(times)} '
          f'({flops / seconds / 1e9:,.1f} GFLOP/s)')


if __name__ == '__main__':
    app.run(main)
