"""Joins JPEG-pack shards (make_shards.py) into one .npz.

usage: python benchmarks/accelerator/merge_shards.py OUT IN...
"""
import sys
import numpy as np

if len(sys.argv) < 3 or sys.argv[1].startswith('-'):  # --help, or too few arguments
  print(__doc__)
  sys.exit(0 if sys.argv[1:2] in (['-h'], ['--help']) else 2)
out, *ins = sys.argv[1:]
zs = [np.load(p) for p in ins]
d = {k: zs[0][k] for k in zs[0].files if not k.endswith(('_train', '_val'))}
for s in ('train', 'val'):
  parts = [z for z in zs if len(z[f'y_{s}'])]
  d[f'jpeg_{s}'] = np.concatenate([z[f'jpeg_{s}'] for z in parts])
  sizes = np.concatenate([np.diff(z[f'offsets_{s}']) for z in parts])
  d[f'offsets_{s}'] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
  d[f'y_{s}'] = np.concatenate([z[f'y_{s}'] for z in parts])
  d[f'files_{s}'] = np.concatenate([z[f'files_{s}'] for z in parts])
np.savez(out, **d)
print(out, {s: len(d[f'y_{s}']) for s in ('train', 'val')})
