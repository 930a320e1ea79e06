r"""Runs a converted net on inputs from an .npz and writes every blob, in Caffe's layout.

  python -m converters.caffe_forward --checkpoint=checkpoints/caffenet \
      --inputs=in.npz --out=out.npz

``in.npz`` holds ``in_<input name>`` arrays (NCHW float32, any batch size). ``out.npz`` receives
``blob_<name>`` (NCHW) for every blob the net holds after one TEST-phase forward pass: the format
of Caffe goldens, so outputs can be compared with a real Caffe's ``net.blobs``.
"""

from __future__ import annotations

import os
import sys
import tempfile

from absl import app
from absl import flags
import jax
import numpy as np

from dgnam_jax import checkpoint, layers, nets

_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Checkpoint directory (caffe_to_orbax).')
_INPUTS = flags.DEFINE_string('inputs', None, 'Input .npz with in_<name> NCHW float32 arrays.')
_OUT = flags.DEFINE_string('out', None, 'Output .npz (blob_<name>, NCHW).')
_PRECISION = flags.DEFINE_enum('precision', 'highest', ['default', 'high', 'highest'],
                               'Matmul/conv precision (highest = full float32 on GPU/TPU).')


def forward(ckpt: str, inputs: dict[str, np.ndarray], precision: str = 'highest'
            ) -> dict[str, np.ndarray]:
  """Every blob (Caffe layout, float32) of checkpoint ``ckpt`` on ``inputs`` (name -> NCHW)."""
  module, params, meta = checkpoint.load_checkpoint(ckpt, precision=jax.lax.Precision(
      precision.upper() if precision != 'default' else 'DEFAULT'))
  declared = [spec['name'] for spec in meta['inputs']]
  missing = sorted(set(declared) - set(inputs))
  extra = sorted(set(inputs) - set(declared))
  if missing or extra:
    raise ValueError(f'inputs must be exactly {declared}: missing {missing}, unexpected {extra}')
  x = {k: layers.to_nhwc(np.asarray(v, np.float32)) for k, v in inputs.items()}
  arg = x if isinstance(module, nets.CaffeGraph) else x[declared[0]]
  outs = jax.jit(module.apply)({'params': params}, arg)
  return {k: np.asarray(layers.to_nchw(v)) for k, v in outs.blobs.items()}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    with np.load(_INPUTS.value, allow_pickle=False) as z:
      inputs = {k[3:]: z[k] for k in z.files if k.startswith('in_')}
      if not inputs:
        raise ValueError(f'{_INPUTS.value} holds no in_<name> arrays')
    blobs = forward(_CHECKPOINT.value, inputs, _PRECISION.value)
    out = os.path.abspath(_OUT.value)
    fd, tmp = tempfile.mkstemp(suffix='.npz', dir=os.path.dirname(out))
    os.close(fd)
    try:
      np.savez(tmp, **{f'blob_{k}': v for k, v in blobs.items()})
      os.replace(tmp, out)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
  except (checkpoint.CheckpointError, OSError, ValueError, KeyError) as e:
    print(f'caffe_forward: error: {e}', file=sys.stderr)
    return 1
  print(f'wrote {len(blobs)} blobs to {out}')
  return 0


if __name__ == '__main__':
  flags.mark_flags_as_required(['checkpoint', 'inputs', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
