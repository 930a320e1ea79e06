r"""Converts a Caffe net (prototxt + caffemodel) into a dgnam_jax checkpoint directory.

Reads every Caffe encoding (V0, V1, V2; legacy or BlobShape blob dims) without Caffe, and writes
an Orbax params tree named after the Caffe layers plus ``dgnam.json`` (see CHECKPOINTS.md).

  python -m converters.caffe_to_orbax \
      --prototxt=deploy.prototxt --caffemodel=bvlc_reference_caffenet.caffemodel \
      --mean=imagenet_mean.binaryproto --net=caffenet --out=checkpoints/caffenet

``--net=auto`` runs the generic prototxt net; a named net uses the hand-written module (or, for
GoogLeNet/ResNet-50, checks the prototxt against the project's) and checks every layer and blob
shape. On any error nothing is written and the exit status is 1.
"""

from __future__ import annotations

import hashlib
import os
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax import checkpoint, convert, nets
from dgnam_jax.caffe import read_caffemodel, read_mean_binaryproto, read_prototxt
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.caffe.netdef import CaffeFormatError, NetDef

_NET_CHOICES = ['auto'] + sorted(nets.NETS)

_PROTOTXT = flags.DEFINE_string('prototxt', None, 'Deploy prototxt (V0, V1 or V2 text).')
_CAFFEMODEL = flags.DEFINE_string('caffemodel', None, 'Trained weights (.caffemodel).')
_OUT = flags.DEFINE_string('out', None, 'Checkpoint directory to create (must not exist).')
_NET = flags.DEFINE_enum('net', 'auto', _NET_CHOICES,
                         'auto: generic net built from the prototxt. A paper net name: build '
                         'its hand-written module and check every layer/blob against it.')
_MEAN = flags.DEFINE_string('mean', None, 'Optional mean: Caffe mean.binaryproto or a .npy '
                            '(C,H,W) array, in the net\'s channel order.')
_CLASS_NAMES = flags.DEFINE_string('class_names', None, 'Optional text file, one class name per '
                                   'line in output order (e.g. synset_words.txt).')
_BOUNDS = flags.DEFINE_string('bounds', None, 'Generators only: per-unit upper bounds of the code '
                              '(e.g. act_range/3x/fc6.txt, whitespace-separated numbers).')
_CHANNEL_ORDER = flags.DEFINE_enum('channel_order', 'BGR', ['BGR', 'RGB', 'GRAY'],
                                   'Channel order of the net\'s image input/output.')
_PIXEL_SCALE = flags.DEFINE_float('pixel_scale', 255.0, 'Pixel value of white in the net\'s '
                                  'input space (Caffe nets: 255, before mean subtraction).')


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 24), b''):
      h.update(chunk)
  return h.hexdigest()


def _check_named_net(name: str, netdef: NetDef, params: dict, blob_shapes: dict) -> None:
  """Checks a converted net against the paper net ``name`` (layers, parameter and blob shapes)."""
  info = nets.net_info(name)
  ref = parse_prototxt(nets.prototxt_text(name), info.prototxt)
  want_params, want_blobs = convert.shapes(ref, batch=1)
  if info.factory is not None:
    module = info.factory()
    (inp_name, inp_shape), = ref.inputs
    shape = (1,) + tuple(inp_shape[1:])
    x = jax.ShapeDtypeStruct(shape if len(shape) == 2 else
                             (1, shape[2], shape[3], shape[1]), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    want_params = jax.tree.map(lambda s: tuple(s.shape), variables['params'])
    outs = jax.eval_shape(module.apply, variables, x)
    want_blobs = {k: convert._caffe_shape(v.shape) for k, v in outs.blobs.items()}
  got_params = jax.tree.map(np.shape, params)
  for layer in sorted(set(want_params) | set(got_params)):
    if layer not in got_params:
      raise CaffeFormatError(f'{_PROTOTXT.value}: net {name} needs layer {layer!r}, which the '
                             'prototxt does not define')
    if layer not in want_params:
      raise CaffeFormatError(f'{_PROTOTXT.value}: layer {layer!r} is not part of net {name}')
    if got_params[layer] != want_params[layer]:
      raise CaffeFormatError(f'{_PROTOTXT.value}: layer {layer!r} has parameter shapes '
                             f'{got_params[layer]}, net {name} expects {want_params[layer]}')
  for blob, shape in want_blobs.items():
    got = blob_shapes.get(blob)
    if got is None or tuple(got[1:]) != tuple(shape[1:]):
      raise CaffeFormatError(f'{_PROTOTXT.value}: blob {blob!r} has shape {got}, net {name} '
                             f'expects {shape}')


def _read_mean(path: str) -> np.ndarray:
  if path.endswith('.npy'):
    mean = np.load(path, allow_pickle=False)
  else:
    mean = read_mean_binaryproto(path)
  mean = np.asarray(mean, np.float32)
  if mean.ndim == 4 and mean.shape[0] == 1:
    mean = mean[0]
  if mean.ndim != 3:
    raise CaffeFormatError(f'{path}: a mean must be (C, H, W); got shape {mean.shape}')
  return mean


def build_metadata(netdef: NetDef, blob_shapes: dict, prototxt_text: str) -> tuple[dict, dict]:
  """Metadata dict and extra arrays (mean, bounds) from the flags and the parsed net."""
  name = _NET.value
  info = nets.net_info(name) if name != 'auto' else None
  inputs = [{'name': n, 'shape': list(s)} for n, s in netdef.inputs]
  kind = info.kind if info else 'classifier'
  meta = {
      'net': name if info else 'prototxt',
      'kind': kind,
      'prototxt': prototxt_text,
      'inputs': inputs,
      'channel_order': _CHANNEL_ORDER.value,
      'pixel_scale': _PIXEL_SCALE.value,
      'input_size': list(info.input_size) if info and kind == 'classifier' else
                    list(inputs[0]['shape'][2:]),
      'blobs': [{'name': k, 'shape': list(v)} for k, v in blob_shapes.items()],
      'layers': [{'name': l.name, 'type': l.type, 'bottoms': list(l.bottoms),
                  'tops': list(l.tops)} for l in netdef.layers],
      'mean': None, 'class_names': None, 'generator': None,
      'source': {'prototxt': {'path': os.path.abspath(_PROTOTXT.value),
                              'sha256': _sha256(_PROTOTXT.value)},
                 'caffemodel': {'path': os.path.abspath(_CAFFEMODEL.value),
                                'sha256': _sha256(_CAFFEMODEL.value)}},
  }
  arrays = {}
  if _MEAN.value:
    mean = _read_mean(_MEAN.value)
    arrays['mean'] = mean
    meta['mean'] = {'file': 'mean.npy', 'shape': list(mean.shape),
                    'per_channel': [float(v) for v in mean.reshape(mean.shape[0], -1).mean(1)]}
    meta['source']['mean'] = {'path': os.path.abspath(_MEAN.value),
                              'sha256': _sha256(_MEAN.value)}
  if _CLASS_NAMES.value:
    with open(_CLASS_NAMES.value) as f:
      names = [line.rstrip('\n') for line in f if line.strip()]
    last = list(blob_shapes.values())[-1]
    if len(names) != last[-1]:
      raise CaffeFormatError(f'{_CLASS_NAMES.value}: {len(names)} names, but the net has '
                             f'{last[-1]} outputs')
    meta['class_names'] = names
  if kind == 'generator':
    code_shape = list(inputs[0]['shape'][1:])
    meta['generator'] = {'code_layer': info.code_layer, 'code_shape': code_shape,
                         'output_blob': info.output_blob, 'bounds_file': None}
    if _BOUNDS.value:
      bounds = np.loadtxt(_BOUNDS.value, dtype=np.float32).reshape(-1)
      if bounds.size != int(np.prod(code_shape)):
        raise CaffeFormatError(f'{_BOUNDS.value}: {bounds.size} bounds for a code of shape '
                               f'{code_shape}')
      arrays['bounds'] = bounds.reshape(code_shape)
      meta['generator']['bounds_file'] = 'bounds.npy'
  elif _BOUNDS.value:
    raise CaffeFormatError('--bounds is only meaningful for a generator (--net=deepsim_*)')
  return meta, arrays


def convert_files() -> str:
  """Runs the conversion described by the flags; returns the checkpoint path."""
  netdef = read_prototxt(_PROTOTXT.value)
  with open(_PROTOTXT.value) as f:
    text = f.read()
  blobs = read_caffemodel(_CAFFEMODEL.value)
  params = convert.caffe_to_flax(netdef, blobs, source=_CAFFEMODEL.value)
  _, blob_shapes = convert.shapes(netdef, batch=1)
  if _NET.value != 'auto':
    _check_named_net(_NET.value, netdef, params, blob_shapes)
  meta, arrays = build_metadata(netdef, blob_shapes, text)
  return checkpoint.save(_OUT.value, params, meta, arrays)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    path = convert_files()
  except (CaffeFormatError, checkpoint.CheckpointError, OSError, ValueError) as e:
    print(f'caffe_to_orbax: error: {e}', file=sys.stderr)
    return 1
  print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  flags.mark_flags_as_required(['prototxt', 'caffemodel', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
