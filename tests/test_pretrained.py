"""The shipped weights: they load, and they still score what they scored when exported.

A regression test of the weights, not a timing: the NLL of the first 4 test sequences and the
lit-pixel IoU of a temperature-0 first predicted frame are recomputed and compared with the
figures `python -m vpn_jax.score_pretrained` recorded in each model.json.
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

import vpn_jax
from vpn_jax import pretrained, score_pretrained
from train_helpers import compilation_cache, tiny_experiment  # pylint: disable=unused-import

SHIPPED = ('moving_mnist_cpu', 'moving_mnist_cpu_baseline')


def test_the_moving_mnist_models_are_shipped():
    assert set(SHIPPED) <= set(pretrained.names())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: .*'moving_mnist_cpu'"):
        vpn_jax.load_pretrained('moving_mnist_gpu_xl')


def test_a_corrupt_parameter_file_is_refused(tmp_path):
    name = SHIPPED[0]
    shutil.copytree(pretrained.model_dir(name, None), tmp_path / name)
    path = tmp_path / name / pretrained.PARAMS_FILE
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match='corrupt'):
        pretrained.load_pretrained(name, weights_dir=str(tmp_path))


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_model_reproduces_its_recorded_figures(name):
    module, variables, config = vpn_jax.load_pretrained(name)
    record = pretrained.info(name)
    assert record['training']['step'] > 0
    assert config.model.decoder == ('baseline' if name.endswith('baseline') else 'pixelcnn')
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(variables))
    recorded = record['results']['first4']
    nc = int(config.data.num_context)
    video = score_pretrained.first_sequences(config, 4)
    nll = -np.asarray(vpn_jax.log_likelihood(module, variables, video, num_context=nc))
    nll = float(nll.mean()) / (video.shape[1] - nc)
    # Another CPU sums in another order; the figure is a mean of ~40k pixel terms per frame.
    np.testing.assert_allclose(nll, recorded['nll'], rtol=2e-4)
    iou = score_pretrained.continuation_iou(module, variables, video, num_context=nc, num_frames=1)
    assert abs(iou[0] - recorded['iou_frame1']) < 0.02
    if name.endswith('baseline'):
        # Its pixels do not see each other: greedy decoding is the teacher-forced mode.
        assert score_pretrained.teacher_forced_iou(module, variables, video,
                                                   num_context=nc) == pytest.approx(iou[0])


def test_the_recorded_figures_compare_vpn_and_baseline_at_equal_compute():
    vpn, base = (pretrained.info(name) for name in SHIPPED)
    for record in (vpn, base):
        assert record['results']['test_sequences'] >= 64
        assert np.isfinite(record['results']['test_nll'])
    # The same steps (over every training stage, warm starts included), batch and data; the
    # VPN's later stages may change its training recipe (WORKSPACE: the shipped models).
    assert vpn['training']['step'] == base['training']['step']
    assert vpn['training']['sequences_seen'] == base['training']['sequences_seen']
    for name, record in zip(SHIPPED, (vpn, base)):
        assert sum(s['step'] for s in record['training']['stages']) == record['training']['step']
        # A run warm-started from a shipped model inherits exactly these stages.
        assert pretrained.lineage(name) == record['training']['stages']
    assert vpn['config']['data'] == base['config']['data']
    assert base['results']['test_sequences'] == vpn['results']['test_sequences']
    assert base['results']['test_nll'] > vpn['results']['test_nll']


def test_export_round_trip(tmp_path):
    """A trained checkpoint exported to the shipped layout loads with the same parameters, and
    records the steps, batch and training time of the run."""
    from vpn_jax.training import train
    config = tiny_experiment(steps=2)
    workdir = str(tmp_path / 'run')
    train.train_and_evaluate(config, workdir)
    _, variables, _ = vpn_jax.load_checkpoint(workdir)
    # `load_model` specs (warm starts, figures): a workdir (newest checkpoint) or WORKDIR@STEP.
    for spec in (workdir, workdir + '@2'):
        jax.tree_util.tree_map(np.testing.assert_array_equal,
                               pretrained.load_model(spec)[1], variables)
    with pytest.raises(FileNotFoundError, match='No checkpoint 1 '):
        pretrained.load_model(workdir + '@1')
    directory = pretrained.export(workdir, 'tiny', weights_dir=str(tmp_path / 'weights'))
    module, loaded, loaded_config = pretrained.load_pretrained('tiny',
                                                               weights_dir=str(tmp_path /
                                                                               'weights'))
    assert loaded_config.model.to_dict() == config.model.to_dict() | {
        'encoder_dilations': list(config.model.encoder_dilations)
    }
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, variables)
    with open(os.path.join(directory, pretrained.INFO_FILE), encoding='utf-8') as f:
        record = json.load(f)
    assert record['training']['step'] == 2 and record['training']['batch_size'] == 4
    assert record['training']['train_seconds'] > 0
    video = np.zeros((1, 4, 16, 16, 1), np.uint8)
    module.apply(loaded, video)  # The rebuilt module runs with the loaded parameters.


def test_figure_rows_are_named_as_model_and_samples():
    from vpn_jax import figures
    assert figures.parse_models('moving_mnist_cpu:2,/tmp/run@900:1') == [('moving_mnist_cpu', 2),
                                                                         ('/tmp/run@900', 1)]
    for bad in ('moving_mnist_cpu', 'moving_mnist_cpu:0', ':2'):
        with pytest.raises(ValueError, match='MODEL:SAMPLES'):
            figures.parse_models(bad)


def test_training_seconds_count_each_logged_interval_once(tmp_path):
    """A resumed run logs steps after its checkpoint again; the newest rows count, once."""
    from vpn_jax import figures
    rows = [
        {
            'step': 10,
            'train/steps_per_second': 1.0
        },
        {
            'step': 20,
            'train/steps_per_second': 2.0
        },  # Lost with the kill, logged again below.
        {
            'step': 20,
            'validation/nll': 5.0
        },
        {
            'step': 20,
            'train/steps_per_second': 0.5
        },
        {
            'step': 30,
            'train/steps_per_second': 1.0
        },
    ]
    path = tmp_path / 'metrics.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    seconds = figures.training_seconds(figures.read_metrics(str(path)))
    assert seconds == {10: 10.0, 20: 30.0, 30: 40.0}
    curve = figures.validation_curve(figures.read_metrics(str(path)), cores=2)
    assert curve['step'].tolist() == [20] and curve['core_hours'].tolist() == [60.0 / 3600]
    # A warm-started run continues this one after its step 20: its rows follow, shifted.
    from vpn_jax.training.metrics import chain_stages
    second = [{'step': 10, 'train/steps_per_second': 0.5}, {'step': 10, 'validation/nll': 4.0}]
    chained = chain_stages([figures.read_metrics(str(path)), second], upto=[20, 10])
    assert [r['step'] for r in chained] == [10, 20, 20, 30, 30]
    assert figures.training_seconds(chained)[30] == 30.0 + 20.0
