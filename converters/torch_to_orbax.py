r"""Imports a PyTorch checkpoint of a real ImageNet net into a dgnam_jax checkpoint directory.

  python -m converters.torch_to_orbax --net=efficientnet_lite1 \
      --checkpoint=efficientnet-lite1-77cc7160.pth --out=checkpoints/efficientnet_lite1

Reads the legacy (before PyTorch 1.6) and zip formats without executing anything in the file and
without torch (``dgnam_jax.torch_reader``), checks every key and shape, folds the batch norms into
the convolutions and writes an Orbax params tree named after the state dict's modules plus
``dgnam.json`` (input size, preprocessing, ImageNet-1k class names with wnids, source sha256;
CHECKPOINTS.md). On any error one message names the file and key, nothing is written, and the
exit status is 1.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from dgnam_jax import cli
from dgnam_jax.nets.from_torch import IMPORTABLE, import_torch

_NET = flags.DEFINE_enum('net', None, sorted(IMPORTABLE), 'The architecture of the checkpoint.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'The PyTorch state dict (.pth).')
_OUT = flags.DEFINE_string('out', None, 'Checkpoint directory to create (must not exist).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  return cli.run('torch_to_orbax', lambda: 'wrote ' + import_torch(
      _NET.value, _CHECKPOINT.value, _OUT.value,
      log=lambda message: cli.say('torch_to_orbax', message)), resumable=False)


if __name__ == '__main__':
  flags.mark_flags_as_required(['net', 'checkpoint', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
