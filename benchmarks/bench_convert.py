"""Times converting a CaffeNet-size caffemodel (random weights, ~233 MB) end to end.

  python benchmarks/bench_convert.py [--version=V1]

Writes a V1 caffemodel with legacy 4-D blob dims (the encoding of the real
bvlc_reference_caffenet.caffemodel) from random CaffeNet weights into a temporary directory, then
times ``convert_caffe`` (parse prototxt, decode caffemodel, map to Flax layouts, check against the
hand-written CaffeNet, write the Orbax checkpoint) and a reload. Not a test: it prints numbers.
"""

import argparse
import os
import tempfile
import time

import jax
import numpy as np

from dgnam_jax import load_checkpoint, nets
from dgnam_jax.nets import convert
from dgnam_jax.caffe import parse_prototxt, read_caffemodel, write_caffemodel
from dgnam_jax.nets.from_caffe import ConvertOptions, convert_caffe


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--version', default='V1', choices=['V1', 'V2'])
  args = parser.parse_args()
  text = nets.prototxt_text('caffenet')
  netdef = parse_prototxt(text, 'caffenet.prototxt')
  pshapes, _ = convert.shapes(netdef)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.standard_normal(s, np.float32), pshapes,
                        is_leaf=lambda s: isinstance(s, tuple))
  with tempfile.TemporaryDirectory() as tmp:
    proto, model = os.path.join(tmp, 'deploy.prototxt'), os.path.join(tmp, 'm.caffemodel')
    with open(proto, 'w') as f:
      f.write(text)
    t = time.perf_counter()
    write_caffemodel(model, netdef, convert.flax_to_caffe(netdef, params), version=args.version,
                     legacy_dims=args.version == 'V1')
    t_write = time.perf_counter() - t
    size = os.path.getsize(model)
    t = time.perf_counter()
    read_caffemodel(model)
    t_decode = time.perf_counter() - t
    t = time.perf_counter()
    ckpt = convert_caffe(proto, model, os.path.join(tmp, 'ckpt'), ConvertOptions(net='caffenet'))
    t_convert = time.perf_counter() - t
    t = time.perf_counter()
    _, restored, _ = load_checkpoint(ckpt)
    jax.block_until_ready(restored)
    t_load = time.perf_counter() - t
    ok = np.array_equal(np.asarray(restored['fc6']['kernel']), params['fc6']['kernel'])
  print(f'caffemodel {args.version}: {size / 1e6:.1f} MB, {convert.count_params(params):,} params')
  print(f'write (test helper)     {t_write:6.2f} s')
  print(f'decode only             {t_decode:6.2f} s')
  print(f'convert_caffe (total)   {t_convert:6.2f} s   (budget 15 s)')
  print(f'load_checkpoint         {t_load:6.2f} s   params identical: {ok}')


if __name__ == '__main__':
  main()
