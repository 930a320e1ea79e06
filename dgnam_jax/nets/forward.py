"""One forward pass of any classifier checkpoint on uint8 RGB images (``converters.forward``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from dgnam_jax.nets import checkpoint
from dgnam_jax.nets.pipeline import rgb_to_input, space_from_metadata


def logits_layer(meta: Mapping[str, Any]) -> str:
  """The classifier's pre-softmax layer: the metadata's, else the bottom of its last Softmax,
  else its last layer."""
  pre = meta.get('preprocessing') or {}
  if pre.get('logits_layer'):
    return pre['logits_layer']
  layers = meta.get('layers') or []
  for layer in reversed(layers):
    if layer.get('type') == 'Softmax' and layer.get('bottoms'):
      return layer['bottoms'][0]
  if not layers:
    raise ValueError('the checkpoint metadata lists no layers')
  return layers[-1]['name']


def rgb_net(path: str) -> tuple[Callable, Any, dict, Any, Any]:
  """(apply, params, metadata, space, resize) of the checkpoint at ``path``, where
  ``apply(params, uint8 RGB)`` runs the net under the checkpoint's own preprocessing and returns
  the module's output (``.layers`` per layer, ``.blobs`` after the whole forward)."""
  module, params, meta = checkpoint.load_checkpoint(path)
  space = space_from_metadata(meta)
  resize = (meta.get('preprocessing') or {}).get('resize')

  def apply(p, rgb):
    return module.apply({'params': p}, rgb_to_input(rgb, space, resize))

  return apply, params, meta, space, resize


def forward_rgb(path: str, rgb: np.ndarray, batch: int = 32, where: str = 'images'
                ) -> dict[str, np.ndarray]:
  """Named outputs (float32) of the classifier at ``path`` for uint8 RGB ``rgb`` plus ``logits``.

  Raises:
    ValueError: images that are not uint8 (N, H, W, 3), or of the wrong size for a net that does
      not resize; a checkpoint that is not a classifier.
  """
  rgb = np.asarray(rgb)
  if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3 or not len(rgb):
    raise ValueError(f'{where}: `images` must be uint8 RGB (N, H, W, 3), got {rgb.dtype} '
                     f'{rgb.shape}')
  apply, params, meta, space, resize = rgb_net(path)
  if meta.get('kind') != 'classifier':
    raise ValueError(f'{path} is not a classifier checkpoint (kind {meta.get("kind")!r})')
  if tuple(rgb.shape[1:3]) != tuple(space.size) and not resize:
    raise ValueError(f'{where}: images are {rgb.shape[1:3]}, {path} takes {tuple(space.size)}')
  logits = logits_layer(meta)
  fn = jax.jit(lambda p, x: apply(p, x).layers)
  parts = [jax.tree.map(np.asarray, fn(params, rgb[i:i + batch]))
           for i in range(0, len(rgb), batch)]
  out = {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in parts[0]}
  out['logits'] = out[logits]
  return out
