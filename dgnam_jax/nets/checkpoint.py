"""Checkpoints: an Orbax params tree plus a JSON sidecar (format in CHECKPOINTS.md).

A checkpoint directory holds ``params/`` (Orbax, numpy float32 leaves, so it restores on any
device topology), ``dgnam.json`` (everything needed to rebuild the module without the original
files) and optional ``mean.npy`` / ``bounds.npy`` (read with ``allow_pickle=False``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from dgnam_jax import images, nets
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.caffe.netdef import NetDef

FORMAT = 'dgnam_jax.checkpoint'
FORMAT_VERSION = 1
METADATA_FILE = 'dgnam.json'
PARAMS_DIR = 'params'


REGISTRY_PREFIX = 'registry:'


class CheckpointError(ValueError):
  """A checkpoint directory is missing, incomplete or inconsistent with its module."""


def resolve(path: str) -> str:
  """A checkpoint directory; ``registry:<net>`` (e.g. ``registry:efficientnet_lite2``) names a
  real net shipped by a registry package, converted on first use into the cache
  (:func:`dgnam_jax.nets.from_torch.cached_checkpoint`)."""
  if not str(path).startswith(REGISTRY_PREFIX):
    return path
  from dgnam_jax.nets import from_torch  # noqa: PLC0415 (it imports this module)
  name = path[len(REGISTRY_PREFIX):]
  if name not in from_torch.IMPORTABLE:
    raise CheckpointError(f'{path}: unknown registry net; valid: '
                          + ', '.join(REGISTRY_PREFIX + n for n in sorted(from_torch.IMPORTABLE)))
  return from_torch.cached_checkpoint(name)


def build_module(metadata: Mapping[str, Any], dtype=jnp.float32, precision=None):
  """The Flax module a checkpoint's metadata describes."""
  name = metadata['net']
  if name != 'prototxt' and nets.net_info(name).factory is not None:
    return nets.net_info(name).factory(dtype=dtype, precision=precision)
  return nets.CaffeGraph(netdef_of(metadata), dtype=dtype, precision=precision)


def netdef_of(metadata: Mapping[str, Any]) -> NetDef:
  """The parsed prototxt stored in a checkpoint's metadata."""
  return parse_prototxt(metadata['prototxt'], f'<{metadata["net"]} prototxt in checkpoint>')


def _umask_tree(root: str) -> None:
  """Gives every file and folder under ``root`` the user's umask mode (Orbax writes some 0600)."""
  for d, dirs, names in os.walk(root):
    for name in dirs:
      os.chmod(os.path.join(d, name), images.default_mode(directory=True))
    for name in names:
      os.chmod(os.path.join(d, name), images.default_mode())


def save(path: str, params: Mapping[str, Any], metadata: Mapping[str, Any],
         arrays: Mapping[str, np.ndarray] | None = None) -> str:
  """Writes a checkpoint atomically: to a temporary sibling directory, renamed at the end.

  Args:
    path: destination directory; must not exist.
    params: the Flax ``params`` tree (leaves are converted to numpy float32).
    metadata: JSON-serialisable metadata (see CHECKPOINTS.md); format fields are added.
    arrays: extra arrays saved as ``<name>.npy`` (e.g. ``mean``, ``bounds``).

  Returns:
    The absolute path written.
  """
  path = os.path.abspath(path)
  if os.path.exists(path):
    raise CheckpointError(f'{path} already exists; choose a new --out directory')
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(path) + '.tmp-', dir=parent)
  try:
    os.chmod(tmp, images.default_mode(directory=True))  # mkdtemp's 0700: not the user's umask
    tree = jax.tree.map(lambda a: np.asarray(a, np.float32), dict(params))
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(os.path.join(tmp, PARAMS_DIR), {'params': tree})
      ckptr.wait_until_finished()
    for name, arr in (arrays or {}).items():
      np.save(os.path.join(tmp, f'{name}.npy'), np.asarray(arr), allow_pickle=False)
    meta = {'format': FORMAT, 'format_version': FORMAT_VERSION, **metadata}
    with open(os.path.join(tmp, METADATA_FILE), 'w') as f:
      json.dump(meta, f, indent=1)
    _umask_tree(tmp)
    os.rename(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


def read_metadata(path: str) -> dict[str, Any]:
  """Reads and checks ``dgnam.json`` of a checkpoint directory (or ``registry:<net>``)."""
  path = resolve(path)
  meta_path = os.path.join(path, METADATA_FILE)
  if not os.path.isdir(path):
    hint = ''
    if os.path.basename(os.path.normpath(path)) in nets.NETS or 'deepsim' in path:
      hint = ('; the paper\'s nets are converted from the authors\' Caffe files first (README: '
              '"Using the original weights")')
    raise CheckpointError(f'checkpoint {path}: no such directory{hint}')
  if not os.path.isfile(meta_path):
    raise CheckpointError(f'{path} is not a dgnam_jax checkpoint (no {METADATA_FILE})')
  try:
    with open(meta_path, encoding='utf-8') as f:
      meta = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise CheckpointError(f'{meta_path}: not readable JSON ({e})') from None
  if meta.get('format') != FORMAT or meta.get('format_version', 0) > FORMAT_VERSION:
    raise CheckpointError(f'{meta_path}: unsupported format {meta.get("format")!r} '
                          f'version {meta.get("format_version")!r}')
  return meta


def load_array(path: str, name: str) -> np.ndarray | None:
  """An extra array (``mean``, ``bounds``, ...) of a checkpoint, or None if absent."""
  f = os.path.join(path, f'{name}.npy')
  return np.load(f, allow_pickle=False) if os.path.exists(f) else None


def load_checkpoint(path: str, dtype=jnp.float32, precision=None):
  """Loads a checkpoint back into ``(module, params, metadata)``.

  Args:
    path: checkpoint directory (as written by ``converters.caffe_to_orbax`` or :func:`save`), or
      ``registry:<net>`` for a registry net (:func:`resolve`).
    dtype: compute dtype of the returned module (parameters stay float32).
    precision: ``lax.Precision`` for the module's convolutions and matmuls.

  Returns:
    ``module`` (a Flax Linen module: ``module.apply({'params': params}, x)``), ``params`` (a
    nested dict of jax arrays named after the Caffe layers) and the metadata dict.

  Raises:
    CheckpointError: if the directory is not a checkpoint, or the stored parameter names or
      shapes do not match the module.
  """
  path = os.path.abspath(resolve(path))
  meta = read_metadata(path)
  module = build_module(meta, dtype, precision)
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(os.path.join(path, PARAMS_DIR))
  params = restored['params']
  expected = expected_param_shapes(module, meta)
  got = jax.tree.map(np.shape, params)
  if jax.tree.structure(got) != jax.tree.structure(expected) or got != expected:
    raise CheckpointError(f'{path}: stored parameters do not match net {meta["net"]!r}: '
                          f'{_tree_diff(expected, got)}')
  return module, jax.tree.map(jnp.asarray, params), meta


def expected_param_shapes(module, metadata: Mapping[str, Any]) -> dict:
  """Parameter shapes of ``module`` at the input described in the metadata."""
  inputs = {}
  for spec in metadata['inputs']:
    shape = (1,) + tuple(spec['shape'][1:])
    if len(shape) == 4:
      shape = (1, shape[2], shape[3], shape[1])
    inputs[spec['name']] = jax.ShapeDtypeStruct(shape, jnp.float32)
  arg = inputs if isinstance(module, nets.CaffeGraph) else next(iter(inputs.values()))
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), arg)
  return jax.tree.map(lambda s: tuple(s.shape), variables.get('params', {}))


def _tree_diff(expected: Mapping, got: Mapping) -> str:
  missing = sorted(set(expected) - set(got))
  extra = sorted(set(got) - set(expected))
  bad = [f'{k}: {got[k]} != {expected[k]}' for k in sorted(set(expected) & set(got))
         if got[k] != expected[k]]
  parts = ([f'missing layers {missing}'] if missing else []) + (
      [f'unexpected layers {extra}'] if extra else []) + bad[:5]
  return '; '.join(parts) or 'structure differs'
