"""The notebooks run top to bottom (with VPN_JAX_NOTEBOOK_SMOKE=1: their smaller sizes).

Executed with nbclient in a fresh kernel, as Colab or a local Jupyter would; any error in any
cell fails the test. The committed notebooks carry no outputs (`test_notebooks_are_committed_
without_outputs`), so what a reader sees is always what the current code produces.
"""

import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'notebooks')


@pytest.mark.parametrize('name', ['quickstart', 'custom_dataset'])
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    notebook = nbformat.read(os.path.join(NOTEBOOKS, f'{name}.ipynb'), as_version=4)
    monkeypatch.setenv('VPN_JAX_NOTEBOOK_SMOKE', '1')
    monkeypatch.setenv('VPN_JAX_NOTEBOOK_WORKDIR', str(tmp_path))
    client = NotebookClient(notebook,
                            timeout=900,
                            kernel_name='python3',
                            resources={'metadata': {
                                'path': str(tmp_path)
                            }})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == 'error']
    # Videos and figures were displayed (mediapy's HTML video or the GIF fallback, PNGs).
    kinds = {k for o in outputs for k in o.get('data', {})}
    assert 'text/html' in kinds
    if name == 'quickstart':
        assert 'image/png' in kinds


def test_notebooks_are_committed_without_outputs():
    for name in os.listdir(NOTEBOOKS):
        if name.endswith('.ipynb'):
            notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
            nbformat.validate(notebook)
            for cell in notebook.cells:
                if cell.cell_type == 'code':
                    assert not cell.outputs and cell.execution_count is None, name
