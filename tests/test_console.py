"""The command-line programs keep INFO lines off the console unless the user asks for them."""

import subprocess
import sys

import pytest

# A minimal absl program doing what vpn_jax.main and vpn_jax.evaluate do first.
_PROGRAM = '''
from absl import app, logging
from vpn_jax import console

def main(argv):
    del argv
    print('lowered' if console.quiet_unless_asked() else 'kept')
    logging.info('an info line')
    logging.warning('a warning line')

app.run(main)
'''


@pytest.mark.parametrize('args, lowered, info_shown', [
    ([], True, False),
    (['--verbosity=0'], False, True),
    (['-v', '0'], False, True),
    (['--verbosity=-1'], False, False),
])
def test_info_lines_only_when_asked(args, lowered, info_shown):
    out = subprocess.run([sys.executable, '-c', _PROGRAM, *args],
                         capture_output=True,
                         text=True,
                         timeout=60,
                         check=True)
    assert out.stdout.strip() == ('lowered' if lowered else 'kept')
    assert ('an info line' in out.stderr) == info_shown, out.stderr
    assert 'a warning line' in out.stderr
