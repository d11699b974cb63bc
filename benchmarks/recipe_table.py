r"""Markdown table of a `recipe_ablations.sh` run: per case, steps reached and validation NLL.

    python benchmarks/recipe_table.py OUT
"""

import json
import os
import sys


def main(out: str) -> None:
    print('| case | steps | sequences | s/step | validation NLL (128 seq.) |')
    print('| --- | ---: | ---: | ---: | ---: |')
    for case in sorted(os.listdir(out)):
        result = os.path.join(out, case, 'eval_validation.json')
        if not os.path.exists(result):
            continue
        with open(result, encoding='utf-8') as f:
            record = json.load(f)
        with open(os.path.join(out, case, 'metrics.jsonl'), encoding='utf-8') as f:
            rows = [json.loads(line) for line in f if line.strip()]
        speeds = [r['train/steps_per_second'] for r in rows if 'train/steps_per_second' in r]
        # The first interval includes compilation; the rest are steady.
        step_time = 1 / (sum(speeds[1:]) / len(speeds[1:])) if len(speeds) > 1 else float('nan')
        batch = rows[-1]['train/sequences_per_second'] / rows[-1]['train/steps_per_second']
        print(f"| {case} | {record['step']} | {record['step'] * round(batch)} | "
              f"{step_time:.2f} | {record['nll']:.2f} |")


if __name__ == '__main__':
    main(sys.argv[1])
