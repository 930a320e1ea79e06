"""Splits Tiny ImageNet into JPEG-pack shards that travel to the accelerator machine.

A class-balanced random subset of the training images (in shuffled order, the first shard gets
the first BUDGET_A bytes), all val images in the last shard; merge_shards.py joins them.
usage: python benchmarks/accelerator/make_shards.py SRC OUT_A OUT_B BUDGET_A_MB BUDGET_B_MB
"""
import sys
import numpy as np

if len(sys.argv) < 6 or sys.argv[1].startswith('-'):  # --help, or too few arguments
  print(__doc__)
  sys.exit(0 if sys.argv[1:2] in (['-h'], ['--help']) else 2)
src, out_a, out_b = sys.argv[1:4]
budget_a, budget_b = float(sys.argv[4]) * 1e6, float(sys.argv[5]) * 1e6
z = dict(np.load(src))  # loaded once: an NpzFile re-reads an array on every access
names = list(z)
off, y = z['offsets_train'], z['y_train']
sizes = np.diff(off)
rng = np.random.default_rng(0)
# Round-robin over classes in random order: any prefix is class-balanced.
per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(int(y.max()) + 1)]
order = np.stack(per_class, 1).reshape(-1)
for c in range(len(per_class)):
  assert len(per_class[c]) == len(per_class[0])
val_bytes = int(z['offsets_val'][-1])
common = {k: z[k] for k in names if not k.endswith(('_train', '_val'))}

def pack(idx, with_val):
  jt = z['jpeg_train']
  jpeg = np.concatenate([jt[off[i]:off[i + 1]] for i in idx])
  offs = np.concatenate([[0], np.cumsum(sizes[idx])]).astype(np.int64)
  d = dict(common, jpeg_train=jpeg, offsets_train=offs, y_train=y[idx],
           files_train=z['files_train'][idx])
  if with_val:
    d.update({k: z[k] for k in names if k.endswith('_val')})
  else:
    d.update(jpeg_val=np.zeros(0, np.uint8), offsets_val=np.zeros(1, np.int64),
             y_val=np.zeros(0, np.int64), files_val=z['files_val'][:0])
  return d

cum = np.cumsum(sizes[order])
n_a = int(np.searchsorted(cum, budget_a))
n_b = int(np.searchsorted(cum, cum[n_a - 1] + budget_b - val_bytes)) - n_a
np.savez_compressed(out_a, **pack(order[:n_a], False))
np.savez_compressed(out_b, **pack(order[n_a:n_a + n_b], True))
print('shard A', n_a, 'train images; shard B', n_b, 'train +', len(z['y_val']), 'val')
