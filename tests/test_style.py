"""The repository's one code style, enforced: yapf as configured in setup.cfg."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ('vpn_jax', 'tests', 'experiments', 'benchmarks', 'datasets')


def test_python_files_are_formatted_with_yapf():
    result = subprocess.run([sys.executable, '-m', 'yapf', '--diff', '--recursive', *FOLDERS],
                            cwd=REPO,
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, ('Files need formatting; run `yapf -i -r ' + ' '.join(FOLDERS) +
                                    '`:\n' + result.stdout[-3000:] + result.stderr[-1000:])
