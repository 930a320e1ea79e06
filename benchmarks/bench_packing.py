"""Batches a sweep takes under slot-keyed and dense packing (issue 22, item 2).

  python benchmarks/bench_packing.py [--batches=8,64] [--seeds=1]

For unit lists with strides 1, 5, 10, 21 and 64 (20 units each) and random lists of 20, 200 and
1,000 of 1,000 classes, counts the compiled calls a one-device sweep makes (default chunking,
the sweep's own packing code) and prints them side by side with their ratio. Pure NumPy: the
count does not depend on the nets. Not a test: it prints numbers.
"""

import argparse

import numpy as np

from dgnam_jax.synthesis import batching

CHUNK_TARGET = 64  # dgnam_jax.sweeps.plan.CHUNK_TARGET at one device


def calls(slot_keys: np.ndarray, batch: int) -> int:
  """Compiled calls of a one-device sweep: per default chunk, the slots' longest queue."""
  chunk = max(1, -(-CHUNK_TARGET // batch)) * batch
  return sum(len(batching.pack_slots(slot_keys[lo:lo + chunk], batch))
             for lo in range(0, len(slot_keys), chunk))


def unit_lists() -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  lists = {f'stride {s} (20 units)': np.arange(20) * s for s in (1, 5, 10, 21, 64)}
  for n in (20, 200, 1000):
    lists[f'random {n} of 1000'] = np.sort(rng.choice(1000, n, replace=False))
  return lists


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batches', default='8,64')
  parser.add_argument('--seeds', type=int, default=1)
  args = parser.parse_args()
  batches = [int(b) for b in args.batches.split(',')]
  head = ' | '.join(f'B={b}: keyed / dense (x)' for b in batches)
  print(f'| unit list ({args.seeds} seed(s) each) | {head} |')
  print('|---|' + '---|' * len(batches))
  for name, units in unit_lists().items():
    u = np.repeat(units, args.seeds)
    s = np.tile(np.arange(args.seeds), len(units))
    cells = []
    for b in batches:
      keyed = calls(batching.slot_keys_of(u, s), b)
      dense = calls(np.arange(len(u)), b)
      cells.append(f'{keyed} / {dense} ({keyed / dense:.2f}x)')
    print(f'| {name} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
