"""Prints parity numbers for BUILD_NOTES.md (not a test; the tests assert the tolerances).

  python benchmarks/parity_report.py

1. Every real-Caffe golden in tests/fixtures/caffe through convert_caffe + caffe_forward: the
   relative max error of the worst blob.
2. Full-size CaffeNet and DeePSim fc6 with random weights against the float64 numpy reference.
"""

import os
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
jax.config.update('jax_default_matmul_precision', 'highest')

import numpy_caffe  # pylint: disable=g-import-not-at-top
import test_nets
from test_converter import GOLDEN_CASES, fx

from dgnam_jax import nets
from dgnam_jax.nets import convert
from dgnam_jax.nets import layers
from dgnam_jax.nets.from_caffe import caffe_forward, convert_caffe


def goldens():
  with tempfile.TemporaryDirectory() as tmp:
    for i, (proto, model, golden) in enumerate(GOLDEN_CASES):
      ckpt = convert_caffe(fx(proto), fx(model), os.path.join(tmp, str(i)))
      with np.load(fx(golden)) as z:
        got = caffe_forward(ckpt, {k[3:]: z[k] for k in z.files if k.startswith('in_')})
        errs = [np.abs(got[k[5:]] - z[k]).max() / max(np.abs(z[k]).max(), 1e-30)
                for k in z.files if k.startswith('blob_')]
      print(f'| {proto} + {model} | {len(errs)} | {max(errs):.1e} |')


def full_size():
  for name in ['caffenet', 'deepsim_fc6']:
    netdef, module = test_nets._netdef(name), nets.net_info(name).factory()
    inp, x = test_nets._input(netdef, batch=1, scale=1.0 if 'deepsim' in name else 50.0)
    params = test_nets._random_params(module, jnp.asarray(layers.to_nhwc(x)), seed=1)
    blobs = convert.flax_to_caffe(netdef, jax.tree.map(np.asarray, params))
    want = numpy_caffe.forward(netdef, {k: [b.astype(np.float64) for b in v]
                                        for k, v in blobs.items()}, {inp: x.astype(np.float64)})
    got = jax.jit(module.apply)({'params': params}, jnp.asarray(layers.to_nhwc(x)))
    errs = {k: test_nets._rel_err(layers.to_nchw(np.asarray(v)), want[k])
            for k, v in got.blobs.items()}
    worst = max(errs, key=errs.get)
    print(f'{name}: {len(errs)} blobs, worst {worst} {errs[worst]:.1e}')


if __name__ == '__main__':
  goldens()
  full_size()
