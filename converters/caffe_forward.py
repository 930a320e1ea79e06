r"""Runs a converted net on inputs from an .npz and writes every blob in Caffe's layout.

  python -m converters.caffe_forward --checkpoint=checkpoints/caffenet \
      --inputs=in.npz --out=out.npz

``in.npz`` holds ``in_<input name>`` arrays (NCHW float32, any batch size). ``out.npz`` receives
``blob_<name>`` (NCHW) for every blob the net holds after one TEST-phase forward pass: the format
of Caffe goldens, so the outputs can be compared with a real Caffe's ``net.blobs``.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
import numpy as np

from dgnam_jax import cli, files
from dgnam_jax.nets.from_caffe import caffe_forward

_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Checkpoint directory (caffe_to_orbax).')
_INPUTS = flags.DEFINE_string('inputs', None, 'Input .npz with in_<name> NCHW float32 arrays.')
_OUT = flags.DEFINE_string('out', None, 'Output .npz to write (blob_<name>, NCHW).',
    allow_override=True)
_PRECISION = flags.DEFINE_enum('precision', 'highest', ['default', 'high', 'highest'],
                               'Matmul/conv precision; highest = full float32 on GPU/TPU too.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  return cli.run('caffe_forward', _forward, resumable=False)


def _forward() -> str:
  with np.load(_INPUTS.value, allow_pickle=False) as z:
    inputs = {k[3:]: z[k] for k in z.files if k.startswith('in_')}
  if not inputs:
    raise ValueError(f'{_INPUTS.value} holds no in_<name> arrays')
  blobs = caffe_forward(_CHECKPOINT.value, inputs, _PRECISION.value)
  files.atomic_save_npz(_OUT.value, {f'blob_{k}': v for k, v in blobs.items()})
  return f'wrote {len(blobs)} blobs to {_OUT.value}'


if __name__ == '__main__':
  flags.mark_flags_as_required(['checkpoint', 'inputs', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
