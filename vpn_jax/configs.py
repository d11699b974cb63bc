"""Loads experiment configs the way `--config=experiments/FILE.py:VARIANT` does, from Python.

    config = vpn_jax.configs.load_config('experiments/moving_mnist.py:cpu')

For notebooks, benchmarks and tests, which have no `--config` flag.
"""

import importlib.util
import os

import ml_collections

# The repository root when vpn_jax runs from a checkout (editable install).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`'PATH.py:VARIANT'` (or `'PATH.py'` for the default variant) -> the file's `get_config`.

    A relative PATH is looked up from the working directory, then from the repository root.
    """
    path, _, variant = spec.partition(':')
    candidates = [path] if os.path.isabs(path) else [path, os.path.join(REPO_ROOT, path)]
    found = next((p for p in candidates if os.path.isfile(p)), None)
    if found is None:
        raise FileNotFoundError(f'No config file {path!r} (looked in {candidates}); pass e.g. '
                                "'experiments/moving_mnist.py:cpu'.")
    name = 'vpn_config_' + os.path.splitext(os.path.basename(found))[0]
    module_spec = importlib.util.spec_from_file_location(name, found)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()
