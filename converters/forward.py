r"""Runs any classifier checkpoint on uint8 RGB images and writes its named outputs.

  python -m converters.forward --checkpoint=DIR --images=in.npz --out=out.npz

``in.npz`` holds ``images``: uint8 RGB (N, H, W, 3) at the net's input size (an imported net whose
metadata names a resize, e.g. EfficientNet-Lite's bilinear, also takes other sizes). The
checkpoint's own preprocessing is applied (Caffe nets: BGR minus the mean; imported nets: their
scale and offset). ``out.npz`` receives every named output (``NetOutputs.layers``, NHWC or NC,
float32) and the classifier's pre-softmax output again as ``logits``. Works for Caffe-converted,
project-trained and imported checkpoints alike.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
import numpy as np

from dgnam_jax import cli, files
from dgnam_jax.nets.forward import forward_rgb

_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Classifier checkpoint directory.')
_IMAGES = flags.DEFINE_string('images', None, 'Input .npz with `images`: uint8 RGB (N, H, W, 3).')
_OUT = flags.DEFINE_string('out', None, 'Output .npz to write.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Images per forward call.', lower_bound=1)


def _forward() -> str:
  with np.load(_IMAGES.value, allow_pickle=False) as z:
    if 'images' not in z.files:
      raise ValueError(f'{_IMAGES.value} holds no `images` array (it has {z.files})')
    rgb = z['images']
  outputs = forward_rgb(_CHECKPOINT.value, rgb, _BATCH.value, where=_IMAGES.value)
  files.atomic_save_npz(_OUT.value, outputs)
  return f'wrote {len(outputs)} arrays for {len(rgb)} images to {_OUT.value}'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  return cli.run('forward', _forward, resumable=False)


if __name__ == '__main__':
  flags.mark_flags_as_required(['checkpoint', 'images', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
