"""Per-layer profile: where XLA:CPU loses to PyTorch (oneDNN) in a DGN-AM step.

  python benchmarks/bench_layers.py [--size=embedded] [--batch=64] [--repeats=5]

For every convolution, deconvolution and inner product of the pair (``bench_engine`` sizes),
times what a DGN-AM step does with it: the forward pass and the gradient w.r.t. its input (no
weight gradient), at the layer's own shape, in JAX (the engine's ``layers.conv2d`` /
``deconv2d`` / ``inner_product``, jitted) and in PyTorch (``F.conv2d`` / ``conv_transpose2d`` /
``linear`` with autograd), interleaved, median of ``--repeats``. Prints a table (ms, GFLOP/s,
JAX / PyTorch time) and the JSON. Not a test.
"""

import argparse
import json
import os
import statistics
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [p for p in (_HERE, os.path.dirname(_HERE)) if p not in sys.path]

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

import bench_engine
from dgnam_jax.nets import layers
# pylint: enable=g-import-not-at-top,wrong-import-position


def _cases(netdef, batch):
  """(name, kind, input NCHW shape, param, macs) of each conv/deconv/fc layer."""
  _, blobs = bench_engine._shapes(netdef)  # pylint: disable=protected-access
  for layer in netdef.layers:
    if layer.type not in ('Convolution', 'Deconvolution', 'InnerProduct'):
      continue
    shape = (batch,) + tuple(blobs[layer.bottoms[0]][1:])
    yield layer.name, layer.type, shape, layer.param, batch * bench_engine.layer_macs(layer, blobs)


def _jax_fn(kind, shape, p, rng):
  x = jnp.asarray(rng.standard_normal(shape, np.float32).transpose(0, 2, 3, 1)
                  if len(shape) == 4 else rng.standard_normal(shape, np.float32))
  if kind == 'InnerProduct':
    flat = int(np.prod(shape[1:]))
    x = x.reshape(shape[0], flat)
    k = jnp.asarray(rng.standard_normal((flat, p.num_output), np.float32))
    f = lambda v: layers.inner_product(v, k, None)
  elif kind == 'Convolution':
    k = jnp.asarray(rng.standard_normal((*p.kernel, shape[1] // p.group, p.num_output),
                                        np.float32))
    f = lambda v: layers.conv2d(v, k, None, stride=p.stride, pad=p.pad, group=p.group)
  else:
    k = jnp.asarray(rng.standard_normal((*p.kernel, p.num_output // p.group, shape[1]),
                                        np.float32))
    f = lambda v: layers.deconv2d(v, k, None, stride=p.stride, pad=p.pad, group=p.group)
  y = jax.eval_shape(f, x)
  # The cotangent is an argument: a constant one would let XLA fold the (linear) input gradient.
  dy = jnp.asarray(rng.standard_normal(y.shape, np.float32))

  @jax.jit
  def step(v, g):
    out, vjp = jax.vjp(f, v)
    return out, vjp(g)[0]

  return lambda: jax.block_until_ready(step(x, dy))


def _torch_fn(kind, shape, p, rng):
  x = torch.tensor(rng.standard_normal(shape, np.float32), requires_grad=True)
  if kind == 'InnerProduct':
    flat = int(np.prod(shape[1:]))
    w = torch.tensor(rng.standard_normal((p.num_output, flat), np.float32))
    f = lambda v: F.linear(v.reshape(shape[0], flat), w)
  elif kind == 'Convolution':
    w = torch.tensor(rng.standard_normal((p.num_output, shape[1] // p.group, *p.kernel),
                                         np.float32))
    f = lambda v: F.conv2d(v, w, stride=tuple(p.stride), padding=tuple(p.pad), groups=p.group)
  else:
    w = torch.tensor(rng.standard_normal((shape[1], p.num_output // p.group, *p.kernel),
                                         np.float32))
    f = lambda v: F.conv_transpose2d(v, w, stride=tuple(p.stride), padding=tuple(p.pad),
                                     groups=p.group)

  with torch.no_grad():
    dy = torch.randn_like(f(x))

  def run():
    y = f(x)
    (dx,) = torch.autograd.grad(y, x, dy)
    return dx

  return run


def _median_ms(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times) * 1e3


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--size', default='embedded', choices=bench_engine.SIZES)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  setup = bench_engine.build_setup(args.size)
  rng = np.random.default_rng(0)
  rows = []
  print(f'{"net":<10s} {"layer":<10s} {"input":<20s} {"GFLOP":>7s} {"JAX ms":>8s} '
        f'{"torch ms":>9s} {"JAX/torch":>9s}')
  for net, netdef in (('generator', setup.gen_def), ('classifier', setup.clf_def)):
    for name, kind, shape, p, macs in _cases(netdef, args.batch):
      jf, tf = _jax_fn(kind, shape, p, rng), _torch_fn(kind, shape, p, rng)
      j, t = _median_ms(jf, args.repeats), _median_ms(tf, args.repeats)
      gflop = 4 * macs / 1e9  # forward + input gradient, 2 FLOP per MAC each
      rows.append({'net': net, 'layer': name, 'type': kind, 'input_nchw': list(shape),
                   'gflop': gflop, 'jax_ms': j, 'torch_ms': t, 'jax_over_torch_time': j / t})
      print(f'{net:<10s} {name:<10s} {"x".join(map(str, shape)):<20s} {gflop:7.2f} {j:8.1f} '
            f'{t:9.1f} {j / t:9.2f}', flush=True)
  total_j, total_t = sum(r['jax_ms'] for r in rows), sum(r['torch_ms'] for r in rows)
  print(f'all layers: JAX {total_j:.1f} ms, PyTorch {total_t:.1f} ms ({total_j / total_t:.2f}x)')
  print(json.dumps({'size': args.size, 'batch': args.batch, 'torch': torch.__version__,
                    'jax': jax.__version__, 'layers': rows}))


if __name__ == '__main__':
  main()
