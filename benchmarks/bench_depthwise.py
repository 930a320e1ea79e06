r"""Depthwise convolution on XLA:CPU: lax's grouped conv vs shifted multiply-adds, forward and
input gradient, side by side in one run (why ``efficientnet_lite.depthwise_conv_same`` exists).

  python benchmarks/bench_depthwise.py --out=reports/benchmarks/depthwise_cpu.json

Shapes: the first stages of EfficientNet-Lite1 at 240 px (batch 8). Three forms: ``lax`` (one
``conv_general_dilated`` with ``feature_group_count=C``), ``taps_autodiff`` (the k*k shifted
multiply-adds, differentiated by JAX) and ``taps_custom_vjp`` (the same with the hand-written
gradient the nets use). Median of 5 timed calls after a warm-up; ratios against ``lax``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dgnam_jax import files  # noqa: E402
from dgnam_jax.nets import efficientnet_lite as effnet  # noqa: E402

_OUT = flags.DEFINE_string('out', 'reports/benchmarks/depthwise_cpu.json', 'JSON record.')
_BATCH = flags.DEFINE_integer('batch', 8, 'Images per call.')
# (H, C, k, stride): Lite1 block 0 (32 ch), block 1 (96 ch, stride 2), block 4 (144 ch, k 5).
SHAPES = ((120, 32, 3, 1), (120, 96, 3, 2), (60, 144, 5, 2), (30, 240, 5, 1))


def _lax(x, w, s):
  return lax.conv_general_dilated(x, w, (s, s), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  feature_group_count=x.shape[-1])


def _autodiff(x, w, s):
  return effnet._depthwise_fwd(x, w, s)[0]  # the same sum, without the custom VJP


def _timed(fn, *args) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(5):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def main(argv):
  del argv
  forms = {'lax': _lax, 'taps_autodiff': _autodiff, 'taps_custom_vjp': effnet.depthwise_conv_same}
  rows = []
  for h, c, k, s in SHAPES:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((_BATCH.value, h, h, c)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 1, c)), jnp.float32)
    row = {'shape': [h, h, c], 'kernel': k, 'stride': s}
    for name, f in forms.items():
      fwd = jax.jit(lambda x, w, f=f: f(x, w, s))
      grad = jax.jit(jax.grad(lambda x, w, f=f: f(x, w, s).sum()))
      row[name] = {'forward_ms': 1e3 * _timed(fwd, x, w), 'input_grad_ms': 1e3 * _timed(grad, x, w)}
    for name in forms:
      row[name]['forward_speedup_vs_lax'] = row['lax']['forward_ms'] / row[name]['forward_ms']
      row[name]['grad_speedup_vs_lax'] = row['lax']['input_grad_ms'] / row[name]['input_grad_ms']
    rows.append(row)
    print(json.dumps(row))
  record = {'command': 'python benchmarks/bench_depthwise.py ' + ' '.join(sys.argv[1:]),
            'device': jax.devices()[0].device_kind, 'cpus': os.cpu_count(), 'jax': jax.__version__,
            'batch': _BATCH.value, 'rows': rows}
  files.atomic_write_text(_OUT.value, json.dumps(record, indent=1) + '\n')
  print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
