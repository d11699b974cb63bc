r"""Exports a training run's checkpoint as a shipped model (`vpn_jax/weights/<name>/`).

    python -m vpn_jax.export_pretrained --workdir=W --name=moving_mnist_cpu [--step=S]

Writes float32 parameters (no optimiser state) and model.json (config, checksum, training
record) as `vpn_jax.pretrained.export` does; then `python -m vpn_jax.score_pretrained
--name=NAME` records the model's figures. Export the VPN and its baseline at the same step, so
that they are compared at equal compute.
"""

from absl import app
from absl import flags

from vpn_jax import pretrained


def main(argv):
    del argv
    fv = flags.FLAGS
    directory = pretrained.export(fv.workdir,
                                  fv.name,
                                  step=fv.step,
                                  cores=fv.cores,
                                  weights_dir=fv.weights_dir)
    print(f'wrote {directory}')


if __name__ == '__main__':
    flags.DEFINE_string('workdir', None, 'Training workdir to export from.')
    flags.DEFINE_string('name', None, 'Name of the shipped model, e.g. moving_mnist_cpu.')
    flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
    flags.DEFINE_integer('cores', 1, 'CPU cores the run trained on (for core-hours).')
    flags.DEFINE_string('weights_dir', None, 'Output folder (default: the package\'s weights/).')
    flags.mark_flags_as_required(['workdir', 'name'])
    app.run(main)
