r"""Caches a classifier's features over a dataset, once (for generators that invert a big net).

  python -m experiments.encode_features --net=registry:efficientnet_lite1 \
      --data=../shared/data/tinyimagenet200_jpeg.npz --layers=_avg_pooling,_blocks.15,_blocks.10 \
      --cells=4 --out=runs/features/lite1_tiny

Writes float16 chunks of ``--chunk`` images per split under ``--out`` (resumable: a rerun
computes only missing chunks; other settings are refused), then ``features.json``. Spatial
outputs are averaged down to ``--cells`` x ``--cells`` cells. Read back with
``dgnam_jax.training.features.load_features``.
"""

from __future__ import annotations

import sys
import time

from absl import app
from absl import flags

from dgnam_jax import cli
from dgnam_jax.training import features

_NET = flags.DEFINE_string('net', None, 'Classifier checkpoint (or registry:<net>).')
_DATA = flags.DEFINE_string('data', None, 'Dataset (JPEG-pack .npz or folder).')
_LAYERS = flags.DEFINE_list('layers', None, 'Named outputs to cache.')
_CELLS = flags.DEFINE_integer('cells', 1, 'Average-pool spatial outputs to cells x cells.',
                              lower_bound=1)
_SPLITS = flags.DEFINE_list('splits', ['train', 'test'], 'Splits to encode.')
_CHUNK = flags.DEFINE_integer('chunk', 2000, 'Images per saved chunk.', lower_bound=1)
_OUT = flags.DEFINE_string('out', None, 'Output directory.')
_TRAIN_EVERY = flags.DEFINE_integer('train_every', 1, 'Encode every k-th train image only (a '
                                    "pilot's cheaper cache).", lower_bound=1)
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Decoded-image cache.')


def _run() -> str:
  t = time.time()
  m = features.encode_dataset(_NET.value, _DATA.value, _OUT.value, _LAYERS.value, _CELLS.value,
                              _SPLITS.value, _CHUNK.value, _CACHE_DIR.value,
                              log=lambda s: cli.say('encode_features', s),
                              train_every=_TRAIN_EVERY.value)
  counts = ', '.join(f'{k} {v["images"]}' for k, v in m['files'].items())
  return f'encode_features: {counts} images of {", ".join(m["layers"])} in {time.time() - t:.0f} s'


main = cli.absl_main('encode_features', _run)


if __name__ == '__main__':
  flags.mark_flags_as_required(['net', 'data', 'layers', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
