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
      keep = {'pixel_l2': ('lr', 'iters', 'method_args'), 'pixel_blur': ('lr', 'iters', 'method_args'),
              'pixel_tv': ('lr', 'iters', 'method_args'), 'fourier': ('lr', 'iters', 'method_args'),
              'dgnam_adam': ('lr', 'iters', 'l2', 'bounds_k', 'method_args')}.get(method)
      merged[method] = {k: v for k, v in s.items() if keep is None or k in keep}
json.dump(merged, open(out, 'w'), indent=1)
print('settings', merged)
