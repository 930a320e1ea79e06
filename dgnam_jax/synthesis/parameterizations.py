"""Parameterizations: what the optimizer changes, and how it becomes an image.

A parameterization is a frozen dataclass (static, hashable) with

* ``uses_generator``: whether it draws through the pipeline's generator (then the code box,
  ``--init`` and the generator's checkpoint apply);
* ``shape(pipe)``: one request's parameter shape;
* ``initial(pipe, seeds, units)``: default starts, row i from ``fold_in(key(seeds[i]),
  units[i])`` only, so a request's start never depends on its batch;
* ``render(pipe, gen_params, p)``: one request's image in the classifier's space (cropped);
* ``render_batch(pipe, gen_params, ps)``: the same for a batch (how results are drawn).

Three are built in: :class:`GeneratorCode` (DGN-AM: codes through G), :class:`Pixels` and
:class:`FourierSpectrum` (Lucid's decorrelated spectrum).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax.nets.pipeline import Pipeline, rgb255_to_space
from dgnam_jax.synthesis import codes as codes_lib

# Square root of ImageNet's RGB colour covariance (as Lucid's color_correlation_svd_sqrt),
# normalised by its largest column norm; maps decorrelated channels to RGB.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]],
                       np.float32)
_COLOR_SQRT = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))


@functools.lru_cache(maxsize=8)
def batch_renderer(parameterization, pipe: Pipeline):
  """Jitted ``(gen_params, params) -> images``: draws saved parameters (GIF frames, judging)."""
  return jax.jit(lambda gp, ps: parameterization.render_batch(pipe, gp, ps))


def _noise(seeds: Sequence[int], units: Sequence[int], shape, std: float) -> np.ndarray:
  out = [np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(s), u), shape))
         for s, u in zip(seeds, units)]
  return (np.stack(out) * std).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class GeneratorCode:
  """DGN-AM: the parameters are the generator's input code; the image is G(code), cropped."""
  uses_generator = True

  def shape(self, pipe: Pipeline) -> tuple[int, ...]:
    return tuple(pipe.code_shape)

  def initial(self, pipe: Pipeline, seeds, units) -> np.ndarray:
    return codes_lib.seeded_codes(seeds, units, pipe.code_shape)

  def render(self, pipe: Pipeline, gen_params, p: jax.Array) -> jax.Array:
    return pipe.to_classifier(pipe.generate(gen_params, p[None])[0])

  def render_batch(self, pipe: Pipeline, gen_params, ps: jax.Array) -> jax.Array:
    return jax.vmap(pipe.to_classifier)(pipe.generate(gen_params, ps))


@dataclasses.dataclass(frozen=True)
class Pixels:
  """The image itself, in the classifier's space; starts as faint noise N(0, init_std^2)."""
  init_std: float = 10.0  # pixel units (0-255 scale) around the mean image
  uses_generator = False

  def shape(self, pipe: Pipeline) -> tuple[int, ...]:
    return (*pipe.classifier_space.size, 3)

  def initial(self, pipe: Pipeline, seeds, units) -> np.ndarray:
    self.check_space(pipe)
    return _noise(seeds, units, self.shape(pipe), self.init_std)

  def check_space(self, pipe: Pipeline) -> None:
    """The pixel-space regularizers (range clip, decay, blur) are in Caffe's units."""
    space = pipe.classifier_space
    if space.channel_order != 'BGR' or space.pixel_scale != 255.0:
      raise ValueError('the pixel-space methods work in Caffe\'s input space (BGR, 0-255); this '
                       f'classifier takes {space.channel_order} at scale {space.pixel_scale:g}: '
                       'use `fourier` or DGN-AM')

  def render(self, pipe: Pipeline, gen_params, p: jax.Array) -> jax.Array:
    del pipe, gen_params
    return p

  def render_batch(self, pipe: Pipeline, gen_params, ps: jax.Array) -> jax.Array:
    return jax.vmap(lambda p: self.render(pipe, gen_params, p))(ps)


def _spectrum_scale(h: int, w: int, power: float) -> np.ndarray:
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  freq = np.sqrt(fx * fx + fy * fy)
  return (1.0 / np.maximum(freq, 1.0 / max(h, w)) ** power).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class FourierSpectrum(Pixels):
  """Lucid's parameterization: a real spectrum (H, W//2+1, 3, re/im) scaled by 1/f^power,
  ImageNet colour decorrelation, and a sigmoid to an RGB image in [0, 1], drawn in the
  classifier's input space (channel order, pixel scale, mean): any space, unlike the pixel
  methods."""
  init_std: float = 0.01
  decay_power: float = 1.0

  def check_space(self, pipe: Pipeline) -> None:
    del pipe  # the sigmoid image is converted into any space

  def shape(self, pipe: Pipeline) -> tuple[int, ...]:
    h, w = pipe.classifier_space.size
    return (h, w // 2 + 1, 3, 2)

  def render(self, pipe: Pipeline, gen_params, p: jax.Array) -> jax.Array:
    del gen_params
    h, w = pipe.classifier_space.size  # not 2 (W//2 + 1 - 1): odd widths (227) lose a column
    spec = (p[..., 0] + 1j * p[..., 1]) * _spectrum_scale(h, w, self.decay_power)[..., None]
    img = jnp.fft.irfft2(spec, s=(h, w), axes=(0, 1)) * np.sqrt(h * w) / 4.0
    rgb = jax.nn.sigmoid(img @ jnp.asarray(_COLOR_SQRT.T))
    return rgb255_to_space(rgb * 255.0, pipe.classifier_space)
