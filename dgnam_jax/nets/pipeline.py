"""Generator -> (crop, colour space) -> classifier, as one static, hashable description.

The original feeds the generator's 256x256 output, centre-cropped to the classifier's input (offset
14 for 227, 16 for 224), to the classifier unchanged: both live in Caffe space (BGR, 0-255, mean
subtracted). For a classifier in another space (a user's Flax net) an :class:`ImageSpace` pair
describes the conversion; it is linear, so gradients flow back exactly as through a crop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax.nets import NetOutputs


@dataclasses.dataclass(frozen=True)
class ImageSpace:
  """How a net's images are encoded.

  Attributes:
    channel_order: 'BGR' or 'RGB'.
    pixel_scale: the value of white before mean subtraction (255 for Caffe nets, 1 for [0, 1]).
    mean: per-channel mean (in ``channel_order``) subtracted from the pixels, in pixel units.
    size: (H, W) of the images.
  """
  channel_order: str = 'BGR'
  pixel_scale: float = 255.0
  mean: tuple[float, ...] = (0.0, 0.0, 0.0)
  size: tuple[int, int] = (227, 227)


def crop_offset(src: int, dst: int) -> int:
  """The original's centre-crop offset: (256 - 227) // 2 = 14, (256 - 224) // 2 = 16."""
  return (src - dst) // 2


def convert_image(x: jax.Array, src: ImageSpace, dst: ImageSpace,
                  same_space: bool) -> jax.Array:
  """Maps one (H, W, C) image from ``src`` to ``dst``: crop (or resize), then colour space.

  With ``same_space`` the pixels are passed unchanged after the crop, as the original does even
  when the two nets were trained with different means (Places205, GoogLeNet).
  """
  h, w = x.shape[:2]
  th, tw = dst.size
  if h >= th and w >= tw:
    oy, ox = crop_offset(h, th), crop_offset(w, tw)
    x = x[oy:oy + th, ox:ox + tw]
  else:
    x = jax.image.resize(x, (th, tw, x.shape[2]), 'bilinear')
  if same_space:
    return x
  x = x + jnp.asarray(src.mean, x.dtype)
  if src.channel_order != dst.channel_order and x.shape[-1] == 3:
    x = x[..., ::-1]
  x = x * (dst.pixel_scale / src.pixel_scale)
  return x - jnp.asarray(dst.mean, x.dtype)


@dataclasses.dataclass(frozen=True)
class Pipeline:
  """A generator/classifier pair for DGN-AM. Hashable: it is a static argument of the jit.

  Attributes:
    generator: Flax module mapping codes (N, *code_shape) to images or :class:`NetOutputs`.
    classifier: Flax module, or any hashable ``apply(params, x) -> NetOutputs | mapping`` callable
      (the adapter for a user's own Flax classifier: return named intermediates).
    code_shape: the generator's input shape without batch, in its own (NHWC) layout.
    generator_space, classifier_space: image encodings (sizes included).
    output_blob: the generator blob holding the image (DeePSim: 'deconv0').
    same_space: feed the cropped image unchanged (the original's behaviour for Caffe-space
      pairs). False converts with the two ImageSpaces.
  """
  generator: Any
  classifier: Any
  code_shape: tuple[int, ...]
  generator_space: ImageSpace = ImageSpace(size=(256, 256))
  classifier_space: ImageSpace = ImageSpace()
  output_blob: str = 'deconv0'
  same_space: bool = True

  def generate(self, gen_params, codes: jax.Array) -> jax.Array:
    """Images (N, H, W, C) in the generator's space for codes (N, *code_shape)."""
    out = self.generator.apply({'params': gen_params}, codes)
    if isinstance(out, NetOutputs):
      out = out.blobs[self.output_blob]
    return out.astype(jnp.float32)

  def to_classifier(self, image: jax.Array) -> jax.Array:
    """One generator image (H, W, C) -> the classifier's input (crop / colour conversion)."""
    return convert_image(image, self.generator_space, self.classifier_space, self.same_space)

  def classify(self, clf_params, x: jax.Array):
    """Classifier outputs for a batch of classifier-space images."""
    if hasattr(self.classifier, 'apply'):
      return self.classifier.apply({'params': clf_params}, x)
    return self.classifier(clf_params, x)


def to_caffe_space(x, space: ImageSpace):
  """Images (..., H, W, 3) in ``space`` -> Caffe's display space (BGR, 0-255, mean subtracted),
  and that space's per-channel BGR mean: what ``images.caffe_to_rgb_original`` /
  ``caffe_to_rgb_mean`` draw. Caffe-space images come back unchanged (same bits)."""
  mean = np.asarray(space.mean, np.float32) * (255.0 / space.pixel_scale)
  if space.channel_order == 'BGR' and space.pixel_scale == 255.0:
    return x, mean
  x = np.asarray(x, np.float32) * np.float32(255.0 / space.pixel_scale)
  if space.channel_order == 'RGB':
    x, mean = x[..., ::-1], mean[::-1]
  return x, mean


def rgb_to_input(rgb: jax.Array, space: ImageSpace, resize: str | None = None) -> jax.Array:
  """uint8 (or float 0-255) RGB images (N, H, W, 3) -> a net's input in ``space``.

  Images of another size than ``space.size`` are resized with ``resize`` (a ``jax.image.resize``
  method, e.g. 'bilinear' for imported nets whose metadata asks for it); without it they are an
  error. Caffe-space nets get exactly ``data.to_net_input``'s values (BGR minus the mean).
  """
  x = jnp.asarray(rgb).astype(jnp.float32)
  if tuple(x.shape[1:3]) != tuple(space.size):
    if not resize:
      raise ValueError(f'images are {tuple(x.shape[1:3])}, the net takes {tuple(space.size)}')
    x = jax.image.resize(x, (x.shape[0], *space.size, x.shape[3]), resize)
  return rgb255_to_space(x, space)


def rgb255_to_space(x: jax.Array, space: ImageSpace) -> jax.Array:
  """Float RGB images (..., 3) in 0-255 -> ``space`` (channel order, pixel scale, mean)."""
  if space.channel_order == 'BGR':
    x = x[..., ::-1]
  if space.pixel_scale != 255.0:
    x = x * (space.pixel_scale / 255.0)
  return x - jnp.asarray(space.mean, jnp.float32)


def space_from_metadata(meta: Mapping[str, Any], size: tuple[int, int] | None = None
                        ) -> ImageSpace:
  """The :class:`ImageSpace` a checkpoint's metadata describes (CHECKPOINTS.md)."""
  mean = meta.get('mean') or {}
  per_channel = tuple(float(v) for v in mean.get('per_channel', (0.0,) * 3))
  return ImageSpace(channel_order=meta.get('channel_order', 'BGR'),
                    pixel_scale=float(meta.get('pixel_scale', 255.0)), mean=per_channel,
                    size=tuple(size or meta.get('input_size', (227, 227))))


def code_shape_internal(caffe_shape: tuple[int, ...]) -> tuple[int, ...]:
  """Caffe (C, H, W) code shape -> the generator's NHWC input shape (fc codes unchanged)."""
  caffe_shape = tuple(caffe_shape)
  return (caffe_shape[1], caffe_shape[2], caffe_shape[0]) if len(caffe_shape) == 3 else caffe_shape


def codes_to_caffe(codes: np.ndarray) -> np.ndarray:
  """(N, *internal) -> (N, *Caffe order): conv codes go NHWC -> NCHW."""
  codes = np.asarray(codes)
  return codes.transpose(0, 3, 1, 2) if codes.ndim == 4 else codes


def codes_from_caffe(codes: np.ndarray) -> np.ndarray:
  """(N, *Caffe order) -> (N, *internal)."""
  codes = np.asarray(codes)
  return codes.transpose(0, 2, 3, 1) if codes.ndim == 4 else codes


ApplyFn = Callable[..., Any]
