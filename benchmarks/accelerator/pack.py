"""Packs finished run folders into <= 15 MiB pieces under OUT, within a byte budget.

usage: python benchmarks/accelerator/pack.py ROOT OUT BUDGET_MIB NAME
(ROOT/order.txt: run folders, priority order; ROOT/sent.txt: those already sent). Search folders
go without their trial_* images.
"""
import os
import subprocess
import sys
import tarfile

if len(sys.argv) < 5 or sys.argv[1].startswith('-'):  # --help, or too few arguments
  print(__doc__)
  sys.exit(0 if sys.argv[1:2] in (['-h'], ['--help']) else 2)
root, out, budget, name = sys.argv[1], sys.argv[2], float(sys.argv[3]) * 2**20, sys.argv[4]
order = [l.strip() for l in open(os.path.join(root, 'order.txt')) if l.strip()]
sent_path = os.path.join(root, 'sent.txt')
sent = set(l.strip() for l in open(sent_path)) if os.path.exists(sent_path) else set()
packs = os.path.join(root, 'packs')
os.makedirs(packs, exist_ok=True)
chosen, total = [], 0
for run in order:
  src = os.path.join(root, run)
  if run in sent or not os.path.isdir(src):
    continue
  tgz = os.path.join(packs, run.replace('/', '__') + '.tgz')
  if not os.path.exists(tgz):
    with tarfile.open(tgz + '.tmp', 'w:gz', compresslevel=6) as tar:
      tar.add(src, arcname=run, filter=lambda t: None if '/trial_' in t.name else t)
    os.replace(tgz + '.tmp', tgz)
  size = os.path.getsize(tgz)
  if total + size > budget:
    print(f'pack: {run} ({size / 2**20:.1f} MiB) left for later')
    continue
  chosen.append((run, tgz))
  total += size
if chosen:
  bundle = os.path.join(packs, f'{name}.tar')
  with tarfile.open(bundle, 'w') as tar:
    for run, tgz in chosen:
      tar.add(tgz, arcname=os.path.basename(tgz))
  subprocess.run(['split', '-b', '15M', '-d', bundle, os.path.join(out, f'{name}.tar.')],
                 check=True)
  os.remove(bundle)
  with open(sent_path, 'a') as f:
    f.writelines(run + '\n' for run, _ in chosen)
print(f'pack: sent {[r for r, _ in chosen]} ({total / 2**20:.1f} MiB)')
