"""Two sweeps of the same requests side by side (e.g. float32 vs bfloat16): activation reached
and image difference per request.

  python benchmarks/compare_sweeps.py A B

Prints the median activation of each and their ratio, the mean absolute difference of the saved
images (0-255 scale), and how many images differ visibly (mean |diff| >= 20/255, the
evaluation's distinctness threshold). Not a test: it prints numbers.
"""

import json
import os
import sys

import numpy as np
from PIL import Image

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [p for p in (os.path.dirname(_HERE),) if p not in sys.path]

from dgnam_jax.sweeps import outputs  # pylint: disable=g-import-not-at-top,wrong-import-position


def _rows(out):
  return {r['name']: r for r in outputs.finished_manifest(out)['rows']}


def _image(out, row):
  with Image.open(os.path.join(out, row['image'])) as im:
    return np.asarray(im.convert('RGB'), np.float64)


def main():
  a, b = sys.argv[1:3]
  ra, rb = _rows(a), _rows(b)
  names = sorted(set(ra) & set(rb))
  if not names:
    sys.exit(f'no common requests in {a} and {b}')
  act_a = np.array([ra[n]['activation'] for n in names])
  act_b = np.array([rb[n]['activation'] for n in names])
  diff = np.array([np.abs(_image(a, ra[n]) - _image(b, rb[n])).mean() for n in names])
  record = {'requests': len(names), 'median_activation': [float(np.median(act_a)),
                                                           float(np.median(act_b))],
            'median_activation_ratio_b_over_a': float(np.median(act_b / act_a)),
            'mean_abs_image_diff_0_255': float(diff.mean()),
            'visibly_different': int((diff >= 20).sum())}
  print(json.dumps(record, indent=1))


if __name__ == '__main__':
  main()
