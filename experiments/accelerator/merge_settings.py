"""Merges search_settings' best_settings.json files into one {method: settings} file.

usage: python experiments/accelerator/merge_settings.py OUT IN...
"""
import json
import os
import sys

out, *ins = sys.argv[1:]
merged = json.load(open(out)) if os.path.exists(out) else {}
for path in ins:
  if os.path.exists(path):
    for method, s in json.load(open(path)).items():
      # The searched keys only (search_settings also echoes the preset's DGN-AM keys).
      # Methods on a code (dgnam_adam) also searched L2 and bounds; pixel methods did not.
      keep = ('lr', 'iters', 'method_args') + (('l2', 'bounds_k') if 'dgnam' in method else ())
      merged[method] = {k: v for k, v in s.items() if k in keep}
json.dump(merged, open(out, 'w'), indent=1)
print('settings', merged)
