"""Times read_caffemodel on a CaffeNet-size (~233 MB) random caffemodel.

The file is written with the project's encoder as V1 with legacy 4-D dims, the format of the real
bvlc_reference_caffenet.caffemodel. Run: ``python benchmarks/bench_caffe_decode.py``.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from dgnam_jax.caffe import netdef as nd
from dgnam_jax.caffe import read_caffemodel, write_caffemodel

# CaffeNet's learned layers: (name, type, weight shape); the groups are folded into the shapes.
_LAYERS = (
    ('conv1', 'Convolution', (96, 3, 11, 11)), ('conv2', 'Convolution', (256, 48, 5, 5)),
    ('conv3', 'Convolution', (384, 256, 3, 3)), ('conv4', 'Convolution', (384, 192, 3, 3)),
    ('conv5', 'Convolution', (256, 192, 3, 3)), ('fc6', 'InnerProduct', (4096, 9216)),
    ('fc7', 'InnerProduct', (4096, 4096)), ('fc8', 'InnerProduct', (1000, 4096)),
)


def caffenet_like() -> tuple[nd.NetDef, dict[str, list[np.ndarray]]]:
  """A chain with CaffeNet's learned-layer shapes and random float32 blobs."""
  rng = np.random.default_rng(0)
  layers = [nd.LayerDef('input', 'Input', (), ('data',),
                        nd.InputParam(shapes=((10, 3, 227, 227),)))]
  blobs, bottom = {}, 'data'
  for name, layer_type, shape in _LAYERS:
    if layer_type == 'Convolution':
      param = nd.ConvolutionParam(num_output=shape[0], kernel=shape[2:])
    else:
      param = nd.InnerProductParam(num_output=shape[0])
    layers.append(nd.LayerDef(name, layer_type, (bottom,), (name,), param))
    blobs[name] = [rng.standard_normal(shape, np.float32), rng.standard_normal(shape[:1],
                                                                               np.float32)]
    bottom = name
  return nd.NetDef('CaffeNet', tuple(layers)), blobs


def main() -> None:
  netdef, blobs = caffenet_like()
  n = sum(b.size for bs in blobs.values() for b in bs)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'caffenet_random.caffemodel')
    t0 = time.perf_counter()
    write_caffemodel(path, netdef, blobs, version='V1', legacy_dims=True)
    t_write = time.perf_counter() - t0
    size = os.path.getsize(path)
    read_caffemodel(path)  # warm the page cache so the timing measures decoding
    times = []
    for _ in range(3):
      t0 = time.perf_counter()
      out = read_caffemodel(path)
      times.append(time.perf_counter() - t0)
    for name, arrays in blobs.items():
      assert np.array_equal(out[name].blobs[0].reshape(arrays[0].shape), arrays[0])
  print(f'{n / 1e6:.1f}M floats, file {size / 1e6:.1f} MB (V1, legacy dims)')
  print(f'write_caffemodel: {t_write:.2f} s')
  print(f'read_caffemodel: best {min(times):.2f} s, runs {", ".join(f"{t:.2f}" for t in times)}')


if __name__ == '__main__':
  main()
