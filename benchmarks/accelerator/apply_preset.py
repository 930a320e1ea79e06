"""Writes a preset's config with the DGN-AM settings of a search, and picks the pixel lr.

usage: python benchmarks/accelerator/apply_preset.py PRESET SEARCH_DIR METHOD_SETTINGS_OUT
           CONFIG_OUT

CONFIG_OUT (e.g. out/configs/tinyimagenet200.py, named like the preset so that run names keep
the preset's name) is a new config file: the preset's settings with the search's best lr,
iterations, L2 and bounds multiple; later runs pass it as --preset=CONFIG_OUT. Nothing in the
repository is edited.
"""
import json
import os
import sys

from dgnam_jax.sweeps import configs

if len(sys.argv) < 5 or sys.argv[1].startswith('-'):  # --help, or too few arguments
  print(__doc__)
  sys.exit(0 if sys.argv[1:2] in (['-h'], ['--help']) else 2)
preset, search_dir, settings_out, config_out = sys.argv[1:5]
values = configs.load(preset)
best = json.load(open(f'{search_dir}/best_settings.json'))['dgnam']
values.update({key: best[key] for key in ('lr', 'iters', 'l2', 'bounds_k')})
base = os.path.dirname(config_out)
for key in configs.PATH_KEYS:  # relative to the new file, as every config's paths are
  if isinstance(values.get(key), str) and values[key] != 'none':
    values[key] = os.path.relpath(values[key], base or '.')
os.makedirs(base or '.', exist_ok=True)
with open(config_out, 'w') as f:
  f.write(f'"""{preset} with the DGN-AM settings of the search in {search_dir} '
          '(apply_preset.py)."""\n\nfrom ml_collections import config_dict\n\n\n'
          f'def get_config():\n  return config_dict.ConfigDict({values!r})\n')
record = json.load(open(f'{search_dir}/search.json'))
pixel = max(record.get('pixel') or [], default=None,
            key=lambda p: (p['top1_original'] + p['top1_photo'], p['top5_original']))
settings = {'pixel': {'lr': pixel['lr']}} if pixel else {}
json.dump(settings, open(settings_out, 'w'), indent=1)
print('preset', preset, best, 'pixel', settings, '->', config_out)
