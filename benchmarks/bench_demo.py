"""Times ``make demo``'s job after installation (budget on 2 CPU cores: 3 min for the whole demo,
2 min without its Tiny ImageNet section).

  python benchmarks/bench_demo.py [--runs=1] [--extra=--tiny_classes=0]

Runs ``python -m experiments.demo`` in a fresh output folder (cold: no resumed images, a new
process, so JAX compiles everything), and prints its wall time, the images it made and the budget
ratio; the record goes to ``reports/benchmarks/demo.json``. Not a test: it prints numbers.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET_S = 180.0  # the whole demo; 120 s for the CIFAR-10 part alone (--extra=--tiny_classes=0)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--runs', type=int, default=1)
  parser.add_argument('--extra', action='append', default=[], help='Extra demo flags.')
  args = parser.parse_args()
  walls = []
  for _ in range(args.runs):
    with tempfile.TemporaryDirectory() as tmp:
      t = time.time()
      proc = subprocess.run([sys.executable, '-m', 'experiments.demo', f'--out={tmp}/demo',
                             *args.extra], cwd=ROOT, capture_output=True, text=True)
      walls.append(time.time() - t)
      if proc.returncode:
        sys.exit(f'demo failed:\n{proc.stderr[-3000:]}')
      lines = [l for l in proc.stdout.splitlines() if 'images in' in l]
  no_tiny = any(e in ('--tiny_classes=', '--tiny_classes=0') for e in args.extra)
  budget = 120.0 if no_tiny else BUDGET_S
  record = {'wall_s': [round(w, 1) for w in walls], 'best_s': round(min(walls), 1),
            'budget_s': budget, 'ratio_to_budget': round(min(walls) / budget, 3),
            'demo_says': lines, 'cpus': os.cpu_count(), 'machine': platform.processor() or
            platform.machine(), 'flags': args.extra}
  print(json.dumps(record, indent=1))
  out = os.path.join(ROOT, 'reports', 'benchmarks', 'demo.json')
  with open(out, 'w') as f:
    json.dump(record, f, indent=1)
  print(f'wrote {out}')


if __name__ == '__main__':
  main()
