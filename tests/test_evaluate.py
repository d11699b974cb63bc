"""Evaluation in the paper's units equals the value computed by hand from `log_likelihood`."""

import jax
import numpy as np
import pytest

import vpn_jax
from train_helpers import compilation_cache, tiny_experiment  # pylint: disable=unused-import
from vpn_jax.training import checkpoint as ckpt
from vpn_jax import evaluate
from vpn_jax.training import results
from vpn_jax.data import push_sim
from vpn_jax.training import train


def _by_hand(module, params, examples, num_context, pushing):
    """Mean over sequences of -log_likelihood / (predicted frames [x dims])."""
    video = np.stack([e['video'] for e in examples])
    actions = np.stack([e['action'] for e in examples]) if pushing else None
    states = np.stack([e['state'] for e in examples])[:, :num_context] if pushing else None
    ll = vpn_jax.log_likelihood(module, {'params': params},
                                video,
                                num_context=num_context,
                                actions=actions,
                                states=states)
    t, h, w, c = video.shape[1:]
    per = (t - num_context) * (h * w * c if pushing else 1)
    return float(np.mean(-np.asarray(ll, np.float64) / per))


@pytest.mark.parametrize('experiment', ['moving_mnist', 'push_sim'])
def test_evaluate_equals_log_likelihood_by_hand(experiment, tmp_path):
    size = 8
    config = tiny_experiment(experiment, size=size, frames=5, context=2)
    module = train.build_module(config)
    state = train.create_train_state(config, module, jax.random.key(3))
    # A fixed split of 5 sequences: batches of 4, the second padded (mask) to full size.
    rng = np.random.default_rng(0)
    if experiment == 'moving_mnist':
        examples = [{
            'video': rng.integers(0, 256, (5, size, size, 1), dtype=np.uint8)
        } for _ in range(5)]
    else:
        source = push_sim.PushSimSource(2, 5, push_sim.PushSimConfig(num_frames=5))
        examples = [dict(e, video=e['video'][:, 28:28 + size, 28:28 + size]) for e in source]
    mesh = train.make_mesh()
    result = train.evaluate_source(config,
                                   module,
                                   train.replicate(state.params, mesh),
                                   examples,
                                   mesh,
                                   progress=False)
    expected = _by_hand(module, state.params, examples, 2, experiment != 'moving_mnist')
    assert result['num_sequences'] == 5
    assert result['units'] == ('nats/frame' if experiment == 'moving_mnist' else 'nats/dim')
    assert result['nll'] == pytest.approx(expected, rel=1e-5)

    # The same through a checkpoint: load_checkpoint rebuilds the model from the saved config.
    mngr = ckpt.manager(str(tmp_path))
    ckpt.save(mngr, 7, state, config, {'seed': 0, 'step': 7})
    mngr.close()
    loaded_module, variables, loaded_config = vpn_jax.load_checkpoint(str(tmp_path))
    assert loaded_module == module and loaded_config.data.image_size == size
    again = train.evaluate_source(loaded_config,
                                  loaded_module,
                                  variables['params'],
                                  examples,
                                  mesh,
                                  progress=False)
    assert again['nll'] == pytest.approx(result['nll'], rel=1e-6)
    table = results.format_table(config, dict(result, step=7), 'test')
    assert f'{result["nll"]:.4f}' in table
    if experiment == 'moving_mnist':
        assert '87.60' in table  # The paper's VPN row.


def test_evaluate_checkpoint_refuses_other_model(tmp_path):
    config = tiny_experiment('push_sim', size=8)
    module = train.build_module(config)
    state = train.create_train_state(config, module, jax.random.key(0))
    mngr = ckpt.manager(str(tmp_path))
    ckpt.save(mngr, 1, state, config, {'seed': 0, 'step': 1})
    mngr.close()
    other = tiny_experiment('push_sim', size=8)
    other.model.decoder_blocks = 3
    with pytest.raises(ValueError, match='different model config.*decoder_blocks'):
        evaluate.evaluate_checkpoint(str(tmp_path), other)
    with pytest.raises(FileNotFoundError, match='No checkpoints'):
        evaluate.evaluate_checkpoint(str(tmp_path / 'nothing'), config)
