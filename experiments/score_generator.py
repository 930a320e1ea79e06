r"""Scores a generator's reconstructions of held-out images: PSNR and fc6 re-encoding error.

  python -m experiments.score_generator --generator=checkpoints/cifar10/generator \
      --data=../shared/data/cifar10_jpeg.npz --grid=out/recon.png

Prints (and with ``--json`` writes) the PSNR of G(E(x)) against x in the saved-photo convention
(output + mean clipped to 0-255), both pooled over the split (the MSE of all images, the number the
model cards lead with) and as the mean of per-image PSNRs (the usual convention of
image-restoration benchmarks), and the mean relative error of the re-encoded code E(G(E(x))).
``train_generator`` stores the same numbers at export; this runner rescores any generator, e.g.
one trained elsewhere or over other images.
"""

from __future__ import annotations

import json
import sys

from absl import app
from absl import flags

from dgnam_jax import files
from dgnam_jax.training import gen_eval
from experiments import _generator_flags as gflags

_GENERATOR = flags.DEFINE_string('generator', None, 'Generator checkpoint to score.')
_GRID = flags.DEFINE_string('grid', None, 'Optional PNG: 16 images spread over the split '
                            'above their reconstructions.')
_JSON = flags.DEFINE_string('json', None, 'Optional JSON file for the numbers.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    gen, gen_params, meta, enc, enc_params, enc_meta = gen_eval.open_generator(
        _GENERATOR.value, gflags.ENCODER.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  images = gflags.images()
  mean = enc_meta['mean']['per_channel']
  ev = gen_eval.reconstruction_metrics(enc, enc_params, gen, gen_params, images, mean)
  ev.update(generator=_GENERATOR.value, data=gflags.DATA.value, split=gflags.SPLIT.value)
  if _GRID.value:
    gen_eval.reconstruction_grid(enc, enc_params, gen, gen_params, images.spread(16).images, mean,
                                 _GRID.value)
  if _JSON.value:
    files.atomic_write_text(_JSON.value, json.dumps(ev, indent=1))
  print(f'{_GENERATOR.value}, {ev["images"]} {gflags.SPLIT.value} images: {gen_eval.describe(ev)}')
  return 0


if __name__ == '__main__':
  flags.mark_flags_as_required(['generator', 'data'])
  app.run(lambda argv: sys.exit(main(argv)))
