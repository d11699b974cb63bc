"""The README's Python snippet runs as printed (on the shipped model and the real test split)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_snippet_runs(capsys):
    text = open(os.path.join(ROOT, 'README.md')).read()
    section = text[text.index('## Using it from Python'):]
    code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    namespace = {}
    exec(compile(code, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
    assert namespace['samples'].shape == (6, 20, 64, 64, 1)
    assert namespace['logits'].shape == (2, 19, 64, 64, 1)
    nll = [float(x) for x in capsys.readouterr().out.split('[')[1].split(']')[0].split()]
    assert len(nll) == 2 and all(80 < x < 400 for x in nll), nll
