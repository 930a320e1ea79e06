"""Sets a preset's DGN-AM settings in dgnam_jax/sweep.py from a search, and picks the pixel lr.

usage: python experiments/accelerator/apply_preset.py PRESET SEARCH_DIR METHOD_SETTINGS_OUT
"""
import json
import re
import sys

preset, search_dir, settings_out = sys.argv[1:4]
best = json.load(open(f'{search_dir}/best_settings.json'))['dgnam']
path = 'dgnam_jax/sweep.py'
src = open(path).read()
i = src.index(f"'{preset}': dict(")
j = src.index('),', src.index('gallery_scale', i))
block = src[i:j]
for key in ('lr', 'iters', 'l2', 'bounds_k'):
  block, n = re.subn(rf'\b{key}=[0-9.e+-]+', f'{key}={best[key]!r}', block)
  assert n == 1, (key, n)
open(path, 'w').write(src[:i] + block + src[j:])
record = json.load(open(f'{search_dir}/search.json'))
pixel = max(record.get('pixel') or [], default=None,
            key=lambda p: (p['top1_original'] + p['top1_photo'], p['top5_original']))
settings = {'pixel': {'lr': pixel['lr']}} if pixel else {}
json.dump(settings, open(settings_out, 'w'), indent=1)
print('preset', preset, best, 'pixel', settings)
