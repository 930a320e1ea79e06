"""Initial codes and code bounds for DGN-AM.

Initial codes:
  * :func:`seeded_codes`: N(0, 1) per request from ``fold_in(key(seed), unit)``, so a unit's start
    does not depend on which batch or chunk it runs in.
  * :func:`original_codes`: the authors' start, ``np.random.seed(seed)`` then one
    ``np.random.normal(0, 1, (1, 4096))`` code shared by every unit (float64, cast to float32).
  * :func:`encode_images`: the code of real images (``--init_file``; ``get_code`` in act_max.py).

Bounds: the original clips codes to [0, ub] with ub read from ``act_range/3x/fc6.txt``
(per-unit mean + 3 std of post-ReLU fc6 codes). A generator checkpoint stores either those upper
bounds (``bounds_kind: upper``) or the per-unit mean and std (``mean_std``, upper = mean + k std;
for a generator of signed codes, ``code_signed``, the box is mean -/+ k std).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from dgnam_jax.nets import checkpoint
from dgnam_jax.nets.pipeline import code_shape_internal, codes_from_caffe


def seeded_codes(seeds: Sequence[int], units: Sequence[int], code_shape: Sequence[int]
                 ) -> np.ndarray:
  """(N, *code_shape) float32 N(0, 1) codes; row i depends only on (seeds[i], units[i])."""

  def one(seed, unit):
    return jax.random.normal(jax.random.fold_in(jax.random.key(seed), unit), tuple(code_shape))

  return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(seeds, jnp.uint32),
                                             jnp.asarray(units, jnp.uint32)))


def original_codes(seed: int, n: int, caffe_code_shape: Sequence[int]) -> np.ndarray:
  """The authors' initial code for ``seed`` (shared by all ``n`` rows), in internal layout."""
  state = np.random.RandomState(seed)  # same stream as np.random.seed(seed); np.random.normal
  code = state.normal(0, 1, (1, int(np.prod(caffe_code_shape)))).astype(np.float32)
  code = codes_from_caffe(code.reshape((1,) + tuple(caffe_code_shape)))
  return np.repeat(code, n, axis=0)


def load_image(path: str, size: Sequence[int], mean: np.ndarray | Sequence[float] | None,
               channel_order: str = 'BGR', pixel_scale: float = 255.0) -> np.ndarray:
  """An image file as a net input (H, W, C) float32, the way act_max.py's ``get_code`` does it.

  The whole image is resized to ``size`` (bilinear, no crop, no aspect ratio), converted to the
  channel order, scaled, and the mean subtracted: a (C, H, W) mean image is centre-cropped to
  ``size`` (act_max.py crops the 256x256 ImageNet mean to [14:241, 14:241]).
  """
  if not os.path.isfile(path):
    raise ValueError(f'init image {path} does not exist')
  img = Image.open(path).convert('RGB').resize((int(size[1]), int(size[0])), Image.BILINEAR)
  x = np.asarray(img, np.float32) * (pixel_scale / 255.0)
  if channel_order == 'BGR':
    x = x[..., ::-1]
  if mean is not None:
    mean = np.asarray(mean, np.float32)
    if mean.ndim == 3:
      oy, ox = (mean.shape[1] - size[0]) // 2, (mean.shape[2] - size[1]) // 2
      mean = mean[:, oy:oy + size[0], ox:ox + size[1]].transpose(1, 2, 0)
    x = x - mean
  return np.ascontiguousarray(x)


def encode_images(encoder, params, images: np.ndarray, blob: str) -> np.ndarray:
  """Codes of images: the encoder's ``blob`` (Caffe's blob, so fc6 is post-ReLU as in get_code)."""
  out = jax.jit(encoder.apply)({'params': params}, jnp.asarray(images, jnp.float32))
  if blob not in out.blobs:
    raise ValueError(f'the encoder has no blob {blob!r}')
  return np.asarray(out.blobs[blob])


def read_bounds_file(path: str, caffe_code_shape: Sequence[int]) -> np.ndarray:
  """Upper bounds from an ``act_range/*.txt`` file (space-separated numbers) or a ``.npy``."""
  if not os.path.isfile(path):
    raise ValueError(f'bounds file {path} does not exist')
  if path.endswith('.npy'):
    try:
      values = np.load(path, allow_pickle=False).astype(np.float32)
    except (ValueError, OSError) as e:  # a pickled or corrupt file: never unpickled
      raise ValueError(f'bounds file {path}: not a numeric .npy ({e})') from None
  else:
    try:
      values = np.loadtxt(path, dtype=np.float32, ndmin=1)
    except ValueError as e:
      raise ValueError(f'bounds file {path}: not space-separated numbers ({e})') from None
  size = int(np.prod(caffe_code_shape))
  if values.size != size:
    raise ValueError(f'bounds file {path} holds {values.size} values; the code has {size} '
                     f'(shape {tuple(caffe_code_shape)})')
  if not np.isfinite(values).all():
    raise ValueError(f'bounds file {path} contains NaN or inf')
  return values.reshape(caffe_code_shape)


def generator_bounds(ckpt: str, meta: Mapping[str, Any], k: float = 3.0) -> np.ndarray | None:
  """Upper bounds (Caffe order) stored with a generator checkpoint, or None if it has none."""
  box = generator_box(ckpt, meta, k)
  return None if box is None else box[1]


def generator_box(ckpt: str, meta: Mapping[str, Any], k: float = 3.0
                  ) -> tuple[np.ndarray, np.ndarray] | None:
  """(lower, upper) code box (Caffe order) stored with a generator checkpoint, or None.

  Post-ReLU codes (the paper's fc6) get [0, mean + k std]; a generator of signed codes
  (``code_signed``: a block output of a real net) gets [mean - k std, mean + k std].
  """
  gen = meta.get('generator') or {}
  if not gen.get('bounds_file'):
    return None
  stored = checkpoint.load_array(ckpt, gen['bounds_file'].removesuffix('.npy'))
  if gen.get('bounds_kind', 'upper') == 'mean_std':
    upper = (stored[0] + k * stored[1]).astype(np.float32)
    lower = ((stored[0] - k * stored[1]).astype(np.float32) if gen.get('code_signed')
             else np.zeros_like(upper))
    return lower, upper
  if k != gen.get('bounds_k', k):
    raise ValueError(f'{ckpt} stores upper bounds for k={gen["bounds_k"]}; it cannot give k={k}')
  upper = stored.astype(np.float32)
  return np.zeros_like(upper), upper


def bounds_internal(upper_caffe: np.ndarray | None, caffe_code_shape: Sequence[int],
                    lower_caffe: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(lower, upper) in the generator's layout: [lower or 0, ub], or (-inf, inf) when ``upper``
  is None."""
  shape = code_shape_internal(tuple(caffe_code_shape))
  if upper_caffe is None:
    return np.full(shape, -np.inf, np.float32), np.full(shape, np.inf, np.float32)
  upper = codes_from_caffe(np.asarray(upper_caffe, np.float32)[None])[0]
  if lower_caffe is None:
    return np.zeros(shape, np.float32), upper
  return codes_from_caffe(np.asarray(lower_caffe, np.float32)[None])[0], upper
