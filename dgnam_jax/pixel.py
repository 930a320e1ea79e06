"""Pixel-space activation maximization: the no-prior baseline DGN-AM is compared with.

The same objective (:mod:`dgnam_jax.targets`), the same normalized step and the same linear
learning-rate decay as DGN-AM's code update, applied to the classifier's input image instead of a
generator code: ``x <- clip(x + lr_i * g / mean|g|)``, with the image kept in the valid pixel
range ``[-mean, 255 - mean]`` (Caffe space) and an optional decay factor ``l2`` per step (the L2
prior of Simonyan et al. / Yosinski et al.). Everything is per image and ``jax.vmap``-ed, so a
batch of (unit, seed) requests runs in one compiled call, as in :mod:`dgnam_jax.optimize`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax import targets as targets_lib
from dgnam_jax.optimize import normalized

INIT_STD = 10.0  # pixel units (0-255 scale): faint noise around the mean image


def initial_images(seeds: Sequence[int], units: Sequence[int], shape: Sequence[int],
                   std: float = INIT_STD) -> np.ndarray:
  """(N, *shape) start images N(0, std^2), each from ``fold_in(key(seed), unit)``."""
  out = [np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(s), u), tuple(shape)))
         for s, u in zip(seeds, units)]
  return (np.stack(out) * std).astype(np.float32)


def pixel_step(classify, clf_params, objective, x, target, lr_i, l2, lower, upper):
  """One ascent step for ONE image ``x`` (H, W, C): (new image, activation of ``x``)."""
  act, g = jax.value_and_grad(
      lambda v: targets_lib.activation(classify(clf_params, v[None]), target, objective))(x)
  step, _ = normalized(g)
  new = jnp.clip(x + lr_i * step, lower, upper)
  return jnp.where((l2 > 0) & (l2 < 1), new * l2, new), act


@functools.lru_cache(maxsize=None)
def _runner(classify, objective, iters: int):
  def run(clf_params, x0, tgt, lr, lr_end, l2, lower, upper):
    def one(x, t, lr_, end_, l2_):
      def body(i, carry):
        x, _ = carry
        lr_i = lr_ + (end_ - lr_) * i.astype(jnp.float32) / iters
        return pixel_step(classify, clf_params, objective, x, t, lr_i, l2_, lower, upper)
      x, _ = jax.lax.fori_loop(0, iters, body, (x, jnp.zeros((), jnp.float32)))
      final = targets_lib.activation(classify(clf_params, x[None]), t, objective)
      return x, final
    return jax.vmap(one)(x0, tgt, lr, lr_end, l2)
  return jax.jit(run)


def optimize_pixels(classify, clf_params, x0, tgts, objective, *, iters: int, lr: float,
                    lr_end: float = 1e-10, l2: float = 1.0, mean_bgr=(0.0, 0.0, 0.0),
                    batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-space ascent for N requests.

  Args:
    classify: ``(params, x) -> outputs`` (e.g. ``Pipeline.classify``); hashable.
    clf_params: the classifier's parameters.
    x0: (N, H, W, C) start images in the classifier's space (see :func:`initial_images`).
    tgts: N stacked targets (:func:`dgnam_jax.targets.make_targets`).
    objective: the static objective.
    iters, lr, lr_end, l2: as DGN-AM's (lr in pixel units per step).
    mean_bgr: the classifier's mean: pixels stay in ``[-mean, 255 - mean]``.
    batch: images per compiled call (the last one padded).

  Returns:
    (final images (N, H, W, C), their activations (N,)).
  """
  n = len(x0)
  mean = jnp.asarray(mean_bgr, jnp.float32)
  run = _runner(classify, objective, iters)
  images, acts = [], []
  for lo in range(0, n, batch):
    idx = np.minimum(np.arange(lo, lo + batch), n - 1)  # pad with the last row
    full = lambda v: jnp.full((batch,), v, jnp.float32)
    x, a = run(clf_params, jnp.asarray(x0)[idx], jax.tree.map(lambda t: t[idx], tgts),
               full(lr), full(lr_end), full(l2), -mean, 255.0 - mean)
    keep = min(batch, n - lo)
    images.append(np.asarray(x)[:keep])
    acts.append(np.asarray(a)[:keep])
  return np.concatenate(images), np.concatenate(acts)
