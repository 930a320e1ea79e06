"""Caffe files -> dgnam_jax checkpoint, and running a checkpoint the way Caffe would.

The library side of ``converters.caffe_to_orbax`` and ``converters.caffe_forward``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax import files, nets
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets import convert
from dgnam_jax.nets import layers
from dgnam_jax.caffe import parse_prototxt, read_caffemodel, read_mean_binaryproto
from dgnam_jax.caffe.netdef import CaffeFormatError, NetDef


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
  """Optional inputs of a conversion (see ``converters.caffe_to_orbax --help``)."""
  net: str = 'auto'
  mean: str | None = None
  class_names: str | None = None
  bounds: str | None = None
  bounds_k: float = 3.0  # the multiple of std the bounds file encodes (act_range/3x: 3)
  channel_order: str = 'BGR'
  pixel_scale: float = 255.0
  strict: bool = False  # NaN/Inf weights are an error instead of a warning


sha256 = files.sha256_file


def convert_caffe(prototxt: str, caffemodel: str, out: str,
                  options: ConvertOptions = ConvertOptions(),
                  log: Callable[[str], None] | None = None) -> str:
  """Converts a prototxt + caffemodel into a checkpoint directory ``out``; returns its path.

  ``log`` receives one line per stage (the runner's progress; the library never prints).

  Raises:
    CaffeFormatError: a file cannot be read or does not fit the net; the message names the file
      and layer. Nothing is written in that case.
    checkpoint.CheckpointError: ``out`` already exists.
  """
  if os.path.exists(out):
    raise checkpoint.CheckpointError(f'{out} already exists; choose a new output directory')
  try:
    with open(prototxt, encoding='utf-8') as f:
      text = f.read()
  except UnicodeDecodeError as e:
    raise CaffeFormatError(f'{prototxt}: not a UTF-8 text prototxt (byte {e.start}: '
                           f'{e.reason})') from None
  netdef = parse_prototxt(text, prototxt)
  log = log or (lambda message: None)
  log(f'{prototxt}: {len(netdef.layers)} layers; reading {caffemodel} '
      f'({os.path.getsize(caffemodel) / 2**20:.1f} MiB)')
  params = convert.caffe_to_flax(netdef, read_caffemodel(caffemodel), source=caffemodel)
  check_finite(params, caffemodel, options.strict)
  log(f'converted {sum(np.asarray(a).size for a in jax.tree.leaves(params)):,} parameters; '
      f'writing {out}')
  _, blob_shapes = convert.shapes(netdef, batch=1)
  if options.net != 'auto':
    check_named_net(options.net, params, blob_shapes, prototxt)
  meta, arrays = _metadata(netdef, blob_shapes, text, prototxt, caffemodel, options)
  return checkpoint.save(out, params, meta, arrays)


def check_finite(params, source: str, strict: bool = False) -> list[str]:
  """Names ('layer/blob') of weights holding NaN or Inf: a warning, or with ``strict`` a
  :class:`CaffeFormatError` naming the file, layer and blob."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    arr = np.asarray(leaf)
    if not np.isfinite(arr).all():
      name = '/'.join(str(getattr(k, 'key', k)) for k in path)
      bad.append(f'{name} ({int((~np.isfinite(arr)).sum())} of {arr.size} values NaN/Inf)')
  if bad and strict:
    raise CaffeFormatError(f'{source}: non-finite weights: {"; ".join(bad)}')
  for item in bad:
    logging.getLogger(__name__).warning('%s: non-finite weights in %s', source, item)
  return bad


def _module_shapes(name: str):
  """(param shapes, Caffe-order blob shapes) of the paper net ``name`` at batch 1."""
  info = nets.net_info(name)
  ref = parse_prototxt(nets.prototxt_text(name), info.prototxt)
  if info.factory is None:
    return convert.shapes(ref, batch=1)
  (_, shape), = ref.inputs
  x = jax.ShapeDtypeStruct(layers.to_nhwc(np.empty((1,) + shape[1:], np.uint8)).shape,
                           jnp.float32)
  module = info.factory()
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
  outs = jax.eval_shape(module.apply, variables, x)
  blobs = {k: layers.to_nchw(np.empty(v.shape, np.uint8)).shape for k, v in outs.blobs.items()}
  return jax.tree.map(lambda s: tuple(s.shape), variables.get('params', {})), blobs


def check_named_net(name: str, params: dict, blob_shapes: dict, source: str) -> None:
  """Checks converted ``params``/blobs against paper net ``name``; raises naming the layer."""
  want_params, want_blobs = _module_shapes(name)
  got_params = jax.tree.map(np.shape, params)
  for layer in sorted(set(want_params) | set(got_params)):
    if layer not in got_params:
      raise CaffeFormatError(f'{source}: net {name} needs layer {layer!r}, which is not defined')
    if layer not in want_params:
      raise CaffeFormatError(f'{source}: layer {layer!r} is not part of net {name}')
    if got_params[layer] != want_params[layer]:
      raise CaffeFormatError(f'{source}: layer {layer!r} has parameter shapes '
                             f'{got_params[layer]}, net {name} expects {want_params[layer]}')
  for blob, shape in want_blobs.items():
    got = blob_shapes.get(blob)
    if got is None or tuple(got[1:]) != tuple(shape[1:]):
      raise CaffeFormatError(f'{source}: blob {blob!r} has shape {got}, net {name} expects '
                             f'{shape}')


def read_mean(path: str) -> np.ndarray:
  """A (C, H, W) float32 mean from a Caffe ``mean.binaryproto`` or a ``.npy`` file."""
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


def _metadata(netdef: NetDef, blob_shapes: dict, text: str, prototxt: str, caffemodel: str,
              o: ConvertOptions) -> tuple[dict, dict]:
  info = nets.net_info(o.net) if o.net != 'auto' else None
  kind = info.kind if info else 'classifier'
  inputs = [{'name': n, 'shape': list(s)} for n, s in netdef.inputs]
  meta = {
      'net': o.net if info else 'prototxt', 'kind': kind, 'prototxt': text, 'inputs': inputs,
      'channel_order': o.channel_order, 'pixel_scale': o.pixel_scale,
      'input_size': list(info.input_size if info and kind == 'classifier'
                         else inputs[0]['shape'][2:]),
      'blobs': [{'name': k, 'shape': list(v)} for k, v in blob_shapes.items()],
      'layers': [{'name': l.name, 'type': l.type, 'bottoms': list(l.bottoms),
                  'tops': list(l.tops)} for l in netdef.layers],
      'mean': None, 'class_names': None, 'generator': None,
      'source': {'prototxt': {'path': files.relative_path(prototxt), 'sha256': sha256(prototxt)},
                 'caffemodel': {'path': files.relative_path(caffemodel),
                                'sha256': sha256(caffemodel)}},
  }
  arrays = {}
  if o.mean:
    mean = arrays['mean'] = read_mean(o.mean)
    meta['mean'] = {'file': 'mean.npy', 'shape': list(mean.shape),
                    'per_channel': [float(v) for v in mean.reshape(len(mean), -1).mean(1)]}
    meta['source']['mean'] = {'path': files.relative_path(o.mean), 'sha256': sha256(o.mean)}
  if o.class_names:
    with open(o.class_names) as f:
      names = [line.rstrip('\n') for line in f if line.strip()]
    outputs = list(blob_shapes.values())[-1][-1]
    if len(names) != outputs:
      raise CaffeFormatError(f'{o.class_names}: {len(names)} class names, but the net has '
                             f'{outputs} outputs')
    meta['class_names'] = names
  if kind == 'generator':
    code_shape = list(inputs[0]['shape'][1:])
    meta['generator'] = {'code_layer': info.code_layer, 'code_shape': code_shape,
                         'output_blob': info.output_blob, 'bounds_file': None}
    if o.bounds:
      bounds = np.loadtxt(o.bounds, dtype=np.float32).reshape(-1)
      if bounds.size != int(np.prod(code_shape)):
        raise CaffeFormatError(f'{o.bounds}: {bounds.size} bounds for a code of shape '
                               f'{code_shape}')
      arrays['bounds'] = bounds.reshape(code_shape)
      meta['generator'].update(bounds_file='bounds.npy', bounds_kind='upper',
                               bounds_k=o.bounds_k)
  elif o.bounds:
    raise CaffeFormatError(f'{o.bounds}: bounds only apply to a generator (--net=deepsim_*)')
  return meta, arrays


def caffe_forward(ckpt: str, inputs: dict[str, np.ndarray], precision: str = 'highest'
                  ) -> dict[str, np.ndarray]:
  """Every blob (Caffe NCHW layout, float32) of checkpoint ``ckpt`` on ``inputs``.

  Args:
    ckpt: checkpoint directory.
    inputs: input blob name -> Caffe-layout float array, any batch size.
    precision: 'default', 'high' or 'highest' matmul/conv precision.
  """
  module, params, meta = checkpoint.load_checkpoint(
      ckpt, precision=jax.lax.Precision[precision.upper()])
  declared = [spec['name'] for spec in meta['inputs']]
  missing, extra = sorted(set(declared) - set(inputs)), sorted(set(inputs) - set(declared))
  if missing or extra:
    raise ValueError(f'inputs must be exactly {declared}: missing {missing}, unexpected {extra}')
  x = {k: layers.to_nhwc(np.asarray(v, np.float32)) for k, v in inputs.items()}
  arg = x if isinstance(module, nets.CaffeGraph) else x[declared[0]]
  outs = jax.jit(module.apply)({'params': params}, arg)
  return {k: np.asarray(layers.to_nchw(v)) for k, v in outs.blobs.items()}
