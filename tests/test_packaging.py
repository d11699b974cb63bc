"""What `pip install` ships: every subpackage of vpn_jax is listed in setup.cfg."""

import configparser
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_vpn_jax_package_is_installed():
    """A package missing from setup.cfg's `packages` works in an editable install and is
    absent from a wheel; this catches it before a user's `pip install` does."""
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, 'setup.cfg'))
    listed = set(config['options']['packages'].split())
    found = {
        os.path.relpath(folder, REPO).replace(os.sep, '.')
        for folder, _, files in os.walk(os.path.join(REPO, 'vpn_jax')) if '__init__.py' in files
    }
    assert found <= listed, f'Add to setup.cfg [options] packages: {sorted(found - listed)}'
