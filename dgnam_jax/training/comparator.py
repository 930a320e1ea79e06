"""A real net's early blocks as the generator's feature loss (DeePSim's comparator).

DeePSim compares G(h) with x in the features of a fixed net. The project's small classifiers
give weak features; an imported ImageNet net (EfficientNet-Lite1) gives real ones. Its input is
another space and size: the training images (Caffe space: BGR minus the classifier's mean) are
turned back into RGB 0-255, resized bilinearly to ``size`` (<= 128 px keeps the CPU cost low;
the early blocks are convolutional, so any size runs) and put into the net's own space. The
forward stops after the deepest compared layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from dgnam_jax import files
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets.pipeline import ImageSpace, rgb255_to_space, space_from_metadata


@dataclasses.dataclass(frozen=True)
class Comparator:
  """A frozen net and the outputs compared (hashable: part of a compiled training step).

  Attributes:
    module: the net (Flax module returning named ``blobs``).
    space: its input space (channel order, scale, mean); ``size`` replaces the input size.
    layers: compared outputs, in forward order.
    size: the square side images are resized to.
  """
  module: Any
  space: ImageSpace
  layers: tuple[str, ...]
  size: int

  def features(self, params: Any, x_caffe: jax.Array, mean_bgr: jax.Array
               ) -> dict[str, jax.Array]:
    """Named outputs for Caffe-space images ``x_caffe`` (N, H, W, 3) of mean ``mean_bgr``."""
    rgb = (x_caffe + jnp.asarray(mean_bgr, jnp.float32))[..., ::-1]
    rgb = jax.image.resize(rgb, (rgb.shape[0], self.size, self.size, 3), 'bilinear')
    blobs = self.module.apply({'params': params}, rgb255_to_space(rgb, self.space),
                              end=self.layers[-1]).blobs
    return {name: blobs[name] for name in self.layers}


def load_comparator(path: str, layers: Sequence[str], size: int
                    ) -> tuple[Comparator, Any, dict[str, Any]]:
  """(comparator, its params, its description for the run's identity) of the checkpoint at
  ``path`` (``registry:<net>`` or a folder).

  Raises:
    ValueError: no layers, a layer the net does not have (the valid ones listed), a size < 8.
  """
  if not layers:
    raise ValueError(f'comparator {path}: name the layers to compare')
  if size < 8:
    raise ValueError(f'comparator {path}: size {size} is too small')
  module, params, meta = checkpoint.load_checkpoint(path)
  order = [b['name'] for b in meta.get('blobs') or []]
  missing = [name for name in layers if name not in order]
  if missing:
    raise ValueError(f'comparator {path} has no output(s) {missing}; it has: {", ".join(order)}')
  ordered = tuple(sorted(dict.fromkeys(layers), key=order.index))
  space = dataclasses.replace(space_from_metadata(meta), size=(size, size))
  try:  # nets with a fixed input (Caffe graphs) take only their own size
    jax.eval_shape(lambda p: module.apply({'params': p}, jnp.zeros((1, size, size, 3)),
                                          end=ordered[-1]).blobs, params)
  except ValueError as e:
    raise ValueError(f'comparator {path} cannot take {size} px images: {e}') from None
  hashes = files.checkpoint_hashes(path)
  desc = {'net': hashes['path'], 'layers': list(ordered), 'size': size,
          'net_hashes': {k: v for k, v in hashes.items() if k.endswith('sha256')}}
  return Comparator(module, space, ordered, size), params, desc

