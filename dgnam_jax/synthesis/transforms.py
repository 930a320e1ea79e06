"""Update rules as optax transformations.

The engine *ascends*: a transformation receives the objective's gradient and its updates are
added (``optax.apply_updates``). Everything here is a plain ``optax.GradientTransformation``, so
any optax transformation (or chain) can replace it.

DGN-AM's step (``act_max.py``, ``reference/original.md`` §2.4) is, in these terms,

* on the image gradient, before it is pulled back through G:
  ``chain(scale_by_mean_abs(), scale_by_schedule(linear_lr(lr, lr_end, iters)))``;
* on the code gradient: the same chain (:func:`dgnam_update`);
* then the projections of :mod:`dgnam_jax.synthesis.regularizers`: the code box, the L2 factor.

An :class:`UpdateRule` binds a rule to a request's traced settings (``lr``, ``lr_end``), so one
compiled program serves rows with different learning rates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def normalized(g: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(g / mean|g|, ||g||), with 0 for a NaN or zero gradient (no step, as the original)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(g)))
  ok = jnp.isfinite(norm) & (norm > 0)
  scaled = g / jnp.where(ok, jnp.mean(jnp.abs(g)), 1.0)
  return jnp.where(ok, scaled, 0.0), norm


def scale_by_mean_abs() -> optax.GradientTransformation:
  """Divides each leaf by its mean absolute value (0 for a NaN or all-zero leaf): act_max.py's
  step normalization, which makes the step size independent of the gradient's scale."""

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda g: normalized(g)[0], updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def linear_lr(lr, lr_end, iters: int) -> Callable[[jax.Array], jax.Array]:
  """act_max.py's schedule ``lr_i = lr + (lr_end - lr) * i / iters``; ``lr_end < 0`` is ``lr``.

  ``i`` is the update count (0 for the first update), as optax schedules take it.
  """

  def schedule(count):
    end = jnp.where(lr_end < 0, lr, lr_end)
    return lr + (end - lr) * jnp.asarray(count).astype(jnp.float32) / iters

  return schedule


def dgnam_update(lr, lr_end, iters: int) -> optax.GradientTransformation:
  """The DGN-AM step: normalize by mean |g|, then scale by the linear schedule."""
  return optax.chain(scale_by_mean_abs(), optax.scale_by_schedule(linear_lr(lr, lr_end, iters)))


def adam_update(lr, lr_end, iters: int, b1: float = 0.9, b2: float = 0.999,
                eps: float = 1e-8) -> optax.GradientTransformation:
  """Adam (bias-corrected) with the same linear step-size schedule, as an ascent."""
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
                     optax.scale_by_schedule(linear_lr(lr, lr_end, iters)))


@dataclasses.dataclass(frozen=True)
class UpdateRule:
  """A hashable recipe for a transformation, built per request from its traced settings.

  Attributes:
    build: ``build(lr, lr_end, iters) -> optax.GradientTransformation``: a module-level function
      (it is part of the compiled program's static key), e.g. :func:`dgnam_update`,
      :func:`adam_update`, or a user's own.
    name: shown in manifests and errors.
  """
  build: Callable[..., optax.GradientTransformation]
  name: str

  def make(self, hyper, iters: int) -> optax.GradientTransformation:
    """The transformation for one request (``hyper``: that row's traced settings)."""
    return self.build(hyper.lr, hyper.lr_end, iters)


NORMALIZED = UpdateRule(dgnam_update, 'normalized')
ADAM = UpdateRule(adam_update, 'adam')
