"""Bytes per request and fixed bytes of the compiled DGN-AM step, and the rows that fit a card.

  python benchmarks/bench_sizing.py --size=full --dtypes=float32,bfloat16 [--iters=200]

XLA's memory analysis of the step that ``optimize_codes`` runs (``dgnam_jax.synthesis.sizing``),
compiled for this machine's backend; on the CPU it estimates what a GPU needs (cuDNN workspaces
and the GPU's own fusion choices are not in it). Prints one line per dtype and the JSON.
"""

import argparse
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [p for p in (_HERE, os.path.dirname(_HERE)) if p not in sys.path]

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax

import bench_engine
from dgnam_jax.synthesis import methods, sizing
from dgnam_jax.synthesis.loop import NetParams
from dgnam_jax.synthesis.objectives import make_targets
# pylint: enable=g-import-not-at-top,wrong-import-position


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--size', default='full', choices=bench_engine.SIZES)
  parser.add_argument('--dtypes', default='float32,bfloat16')
  parser.add_argument('--iters', type=int, default=200)
  parser.add_argument('--card_gb', type=float, default=80.0)
  args = parser.parse_args()
  records = []
  for dtype in args.dtypes.split(','):
    setup = bench_engine.build_setup(args.size, dtype)
    prob = bench_engine.make_problem(setup, 'fc8', 1, args.iters, 0)
    params = NetParams(setup.gen_params, setup.clf_params)
    per_row, fixed = sizing.step_memory(methods.dgnam_recipe(), setup.pipe, params,
                                        make_targets(prob.units), objective=prob.objective,
                                        iters=args.iters)
    rows = sizing.rows_within(args.card_gb * 1e9, per_row, fixed)
    records.append({'size': args.size, 'dtype': dtype, 'iters': args.iters,
                    'backend': jax.default_backend(), 'per_row_mib': per_row / 2**20,
                    'fixed_mib': fixed / 2**20, f'rows_per_{args.card_gb:g}gb': rows})
    print(f'{args.size} {dtype}: {per_row / 2**20:.1f} MiB per request, {fixed / 2**20:.0f} MiB '
          f'fixed -> {rows} requests per {args.card_gb:g} GB at {sizing.MARGIN:.0%} '
          f'({jax.default_backend()} memory analysis)', flush=True)
  print(json.dumps(records, indent=1))


if __name__ == '__main__':
  main()
