"""Merges search_settings' best_settings.json files into one {method: settings} file.

usage: python benchmarks/accelerator/merge_settings.py OUT IN...
"""
import json
import os
import sys

from dgnam_jax.synthesis import methods

if len(sys.argv) < 3 or sys.argv[1].startswith('-'):  # --help, or too few arguments
  print(__doc__)
  sys.exit(0 if sys.argv[1:2] in (['-h'], ['--help']) else 2)
out, *ins = sys.argv[1:]
merged = json.load(open(out)) if os.path.exists(out) else {}
for path in ins:
  if os.path.exists(path):
    for method, s in json.load(open(path)).items():
      # The searched keys only (search_settings also echoes the preset's DGN-AM keys).
      # Methods on generator codes also searched L2 and bounds; pixel methods did not.
      code = methods.get(method).uses_generator
      keep = ('lr', 'iters', 'method_args') + (('l2', 'bounds_k') if code else ())
      merged[method] = {k: v for k, v in s.items() if k in keep}
json.dump(merged, open(out, 'w'), indent=1)
print('settings', merged)
