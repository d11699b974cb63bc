"""Evaluation results: the paper's tables (1-3), our row beside them, and eval_<split>.json."""

import json
import math
import os
from typing import Any, Mapping, Optional

import ml_collections

from vpn_jax.data import input_pipeline

# The paper's results (Tables 1-3), by dataset and variant.
PAPER = {
    'moving_mnist': {
        'columns': ('Test', ),
        'rows': {
            'vpn_rmb_dilation': (87.6, ),
            'vpn_rmb': (89.2, ),
            'vpn_relu_dilation': (87.7, ),
            'vpn_relu': (89.1, ),
            'baseline': (110.1, ),
            'lower bound': (86.3, ),
        },
        'units': 'nats/frame',
    },
    'robotic_pushing': {
        'columns': ('Validation', 'Test (Seen)', 'Test (Novel)'),
        'rows': {
            'baseline': (2.06, 2.08, 2.07),
            'vpn_relu_dilation': (0.73, 0.72, 0.75),
            'vpn_relu': (0.72, 0.73, 0.75),
            'vpn_rmb_dilation': (0.63, 0.65, 0.64),
            'vpn_rmb': (0.62, 0.64, 0.64),
        },
        'units': 'nats/dim',
    },
}


def paper_table(config: ml_collections.ConfigDict) -> Optional[Mapping[str, Any]]:
    """The paper's table for the config's dataset (None for PushSim)."""
    name = config.data.name
    return PAPER.get('robotic_pushing' if name in ('robotic_pushing', ) else name)


def format_table(config: ml_collections.ConfigDict, result: Mapping[str, Any],
                 split_name: str) -> str:
    """A small table: the paper's rows, then this run's row, in the paper's units."""
    table = paper_table(config)
    ours = f'this run ({config.get("variant", "?")}, step {result.get("step", "?")}, ' \
           f'{result["num_sequences"]} seq.)'
    if table is None:
        return (f'{"Model":<48} {split_name:>12}\n{ours:<48} {result["nll"]:>12.4f}  '
                f'{result["units"]} (no paper number for {config.data.name})')
    cols = table['columns']
    lines = [f'{"Model":<48} ' + ' '.join(f'{c:>13}' for c in cols) + f'   ({table["units"]})']
    for row, values in table['rows'].items():
        lines.append(f'{"paper: " + row:<48} ' + ' '.join(f'{v:>13.2f}' for v in values))
    col = {
        'test': 'Test',
        'validation': 'Validation',
        'test_seen': 'Test (Seen)',
        'test_novel': 'Test (Novel)'
    }.get(split_name, split_name)
    cells = [f'{result["nll"]:>13.4f}' if c == col else f'{"":>13}' for c in cols]
    if col not in cols:
        cells = [f'{result["nll"]:>13.4f}'] + cells[1:]
    lines.append(f'{ours:<48} ' + ' '.join(cells))
    return '\n'.join(lines)


def write_result(workdir: str,
                 config: ml_collections.ConfigDict,
                 result: Mapping[str, Any],
                 *,
                 step: int,
                 split: Optional[str] = None,
                 which: str = 'test',
                 partial: bool = False) -> str:
    """Writes `<workdir>/eval_<which>.json` (`eval_<which>_partial.json` when `partial`); returns
    its path. Non-finite numbers are written as null (JSON has no NaN)."""
    dataset, split_name = input_pipeline.eval_split(config, which) if config.data.name != \
        'push_sim' else ('push_sim', which)
    record = dict(result)
    record.update(step=int(step),
                  dataset=dataset,
                  split=split or split_name,
                  variant=config.get('variant', ''),
                  paper=paper_table(config) and {
                      k: list(v)
                      for k, v in paper_table(config)['rows'].items()
                  })
    record = {
        k: None if isinstance(v, float) and not math.isfinite(v) else v
        for k, v in record.items()
    }
    path = os.path.join(workdir, f'eval_{which}{"_partial" if partial else ""}.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(record, f, indent=2, allow_nan=False)
    return path
