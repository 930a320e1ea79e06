"""Image-space regularizers that compose with any parameterization (the lucid view).

Three roles, each a small frozen dataclass (static: part of the compiled program):

* a *transform* changes the image the classifier sees (random jitter, scale, rotation:
  transformation robustness); the image returned is the untransformed one;
* a *penalty* is subtracted from the objective (total variation);
* a *projection* maps the parameters after each update (the code box, the L2 factor, a Gaussian
  blur every few steps, zeroing weak pixels). Projections run in the order given.

A regularizer implements only its role's method; the loop calls :func:`transform`,
:func:`penalty` and :func:`project` on a method's tuple of regularizers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class Context:
  """What a projection may read besides the parameters (all traced).

  Attributes:
    hyper: the request's settings row (``lr``, ``lr_end``, ``l2``).
    bounds: the code box (``lower``, ``upper``), broadcastable to the parameters.
    grad: the gradient of the objective w.r.t. the parameters at this step.
    iteration: the step index (0-based).
    mean: the classifier's per-channel mean (pixel range ``[-mean, 255 - mean]``).
  """
  hyper: Any
  bounds: Any
  grad: Any
  iteration: jax.Array
  mean: jax.Array


class Regularizer:
  """Base class: every role's method is a no-op unless a subclass overrides it."""
  role = 'none'


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian blur of an (H, W, C) image (edges repeated)."""
  radius = max(1, int(np.ceil(3 * sigma)))
  t = np.arange(-radius, radius + 1, dtype=np.float32)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  k = jnp.asarray(k / k.sum())
  xp = jnp.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode='edge')
  n = 2 * radius + 1
  y = sum(k[i] * xp[i:i + x.shape[0]] for i in range(n))
  return sum(k[i] * y[:, i:i + x.shape[1]] for i in range(n))


def total_variation(x: jax.Array) -> jax.Array:
  """Mean squared difference between neighbouring pixels (TV with beta = 2)."""
  return (jnp.mean(jnp.square(x[1:] - x[:-1])) + jnp.mean(jnp.square(x[:, 1:] - x[:, :-1])))


@dataclasses.dataclass(frozen=True)
class RandomTransform(Regularizer):
  """Random jitter (a roll of up to ``jitter`` pixels), scale in ``[1 - scale, 1 + scale]`` and
  rotation in ``[-rotate_deg, rotate_deg]`` about the centre, drawn anew every step."""
  jitter: int = 0
  scale: float = 0.0
  rotate_deg: float = 0.0
  role = 'transform'

  def apply(self, x: jax.Array, key: jax.Array) -> jax.Array:
    k1, k2, k3 = jax.random.split(key, 3)
    if self.jitter:
      dy, dx = jax.random.randint(k1, (2,), -self.jitter, self.jitter + 1)
      x = jnp.roll(x, (dy, dx), axis=(0, 1))
    if self.scale or self.rotate_deg:
      h, w = x.shape[:2]
      s = 1.0 + jax.random.uniform(k2, (), minval=-self.scale, maxval=self.scale)
      a = jnp.deg2rad(jax.random.uniform(k3, (), minval=-self.rotate_deg,
                                         maxval=self.rotate_deg))
      yy, xx = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2,
                            indexing='ij')
      # Per-image scalars first, behind a barrier: left to XLA, `grid / s` becomes a multiply
      # by 1/s under shard_map but not under jit, and results would depend on the device count.
      cos, sin = jax.lax.optimization_barrier((jnp.cos(a) / s, jnp.sin(a) / s))
      src_y = cos * yy - sin * xx + (h - 1) / 2
      src_x = sin * yy + cos * xx + (w - 1) / 2
      x = jnp.stack([jax.scipy.ndimage.map_coordinates(x[..., c], [src_y, src_x], order=1,
                                                       mode='nearest')
                     for c in range(x.shape[-1])], axis=-1)
    return x


@dataclasses.dataclass(frozen=True)
class TotalVariation(Regularizer):
  """Mahendran & Vedaldi's penalty: ``weight`` times :func:`total_variation` of the image."""
  weight: float
  role = 'penalty'

  def value(self, x: jax.Array) -> jax.Array:
    return self.weight * total_variation(x)


@dataclasses.dataclass(frozen=True)
class CodeBox(Regularizer):
  """Clip the parameters to the request's bounds (DGN-AM: [0, mean + k std] of real codes;
  mean -/+ k std for a generator of signed codes)."""
  role = 'projection'

  def project(self, p, ctx: Context):
    return jnp.clip(p, ctx.bounds.lower, ctx.bounds.upper)


@dataclasses.dataclass(frozen=True)
class PixelRange(Regularizer):
  """Clip pixels to the valid range ``[-mean, 255 - mean]`` (Caffe space)."""
  role = 'projection'

  def project(self, p, ctx: Context):
    return jnp.clip(p, -ctx.mean, 255.0 - ctx.mean)


@dataclasses.dataclass(frozen=True)
class Decay(Regularizer):
  """Multiply by a factor when it lies strictly in (0, 1) (the L2 prior).

  ``factor=None`` reads the request's traced ``l2`` setting (DGN-AM's ``--l2``).
  """
  factor: float | None = None
  role = 'projection'

  def project(self, p, ctx: Context):
    if self.factor is None:
      l2 = ctx.hyper.l2
      return jnp.where((l2 > 0) & (l2 < 1), p * l2, p)
    return p * self.factor if 0 < self.factor < 1 else p


@dataclasses.dataclass(frozen=True)
class Shrink(Regularizer):
  """Soft thresholding, ``sign(p) max(|p| - amount, 0)``: the proximal step of an L1 (Laplace)
  prior on the code. Real post-ReLU codes are sparse (most units 0 for any one image); codes
  optimized inside the box alone are dense and leave the generator's range."""
  amount: float
  role = 'projection'

  def project(self, p, ctx: Context):
    del ctx
    return jnp.sign(p) * jnp.maximum(jnp.abs(p) - self.amount, 0.0)


def _keep_top(v: jax.Array, pct: float) -> jax.Array:
  return v >= jnp.percentile(v, pct)


@dataclasses.dataclass(frozen=True)
class ZeroWeakPixels(Regularizer):
  """Yosinski et al.: zero pixels whose channel norm, or whose contribution ``sum_c |x g|``, is
  below the given percentile of the image's (0: that test off)."""
  norm_pct: float = 0.0
  contrib_pct: float = 0.0
  role = 'projection'

  def project(self, p, ctx: Context):
    if self.norm_pct:
      p = p * _keep_top(jnp.linalg.norm(p, axis=-1), self.norm_pct)[..., None]
    if self.contrib_pct:
      p = p * _keep_top(jnp.sum(jnp.abs(p * ctx.grad), axis=-1), self.contrib_pct)[..., None]
    return p


@dataclasses.dataclass(frozen=True)
class BlurEvery(Regularizer):
  """A Gaussian blur of the image after every ``every``-th update."""
  every: int
  sigma: float
  role = 'projection'

  def project(self, p, ctx: Context):
    if not self.every:
      return p
    return jnp.where((ctx.iteration + 1) % self.every == 0, gaussian_blur(p, self.sigma), p)


def _of(role: str, regs: Sequence[Regularizer]) -> list:
  return [r for r in regs if r.role == role]


def transform(regs: Sequence[Regularizer], x: jax.Array, key: jax.Array) -> jax.Array:
  """The image the classifier sees: every transform applied in order."""
  for r in _of('transform', regs):
    x = r.apply(x, key)
  return x


def has_penalty(regs: Sequence[Regularizer]) -> bool:
  """Whether any regularizer subtracts a penalty from the objective."""
  return bool(_of('penalty', regs))


def penalty(regs: Sequence[Regularizer], x: jax.Array) -> jax.Array:
  """The sum of the penalties on the (untransformed) image."""
  return sum(r.value(x) for r in _of('penalty', regs))


def project(regs: Sequence[Regularizer], p, ctx: Context):
  """The parameters after every projection, in order."""
  for r in _of('projection', regs):
    p = r.project(p, ctx)
  return p
