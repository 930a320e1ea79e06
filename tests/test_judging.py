"""Scoring helpers (judge top-k, seed diversity) and the pixel-space ascent baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgnam_jax import judging, pixel, targets
from tests.tiny_nets import tiny_pipeline


def test_topk_hits():
  logits = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6]])
  np.testing.assert_array_equal(judging.topk_hits(logits, [1, 2, 0], 1), [True, False, False])
  np.testing.assert_array_equal(judging.topk_hits(logits, [1, 2, 0], 2), [True, True, True])


def test_pairwise_mad_and_diversity():
  a = np.zeros((4, 4, 3), np.uint8)
  b = np.full((4, 4, 3), 51, np.uint8)  # MAD 0.2 from a
  c = np.full((4, 4, 3), 10, np.uint8)  # MAD 10/255 from a: below 20/255
  d = judging.pairwise_mad(np.stack([a, b, c]))
  np.testing.assert_allclose(d, [[0, 0.2, 10 / 255], [0.2, 0, 41 / 255], [10 / 255, 41 / 255, 0]],
                             rtol=1e-6)
  imgs = np.stack([a, b, c, a, a])
  div = judging.seed_diversity(imgs, ['x', 'x', 'x', 'y', 'y'])
  assert div['per_group'] == {'x': pytest.approx(2 / 3), 'y': 0.0}
  assert div['mean'] == pytest.approx(1 / 3) and div['min'] == 0.0
  assert div['distinct_images'] == 1  # only b is far from all others of its class


def test_pixel_ascent_raises_each_target():
  pipe, _, clf_params = tiny_pipeline()
  units = [0, 3, 7, 3]
  seeds = [0, 0, 0, 1]
  x0 = pixel.initial_images(seeds, units, (14, 14, 3))
  assert not np.array_equal(x0[1], x0[3])  # the seed matters
  obj = targets.Objective('fc8')
  tgts = targets.make_targets(units)
  x, acts = pixel.optimize_pixels(pipe.classify, clf_params, x0, tgts, obj, iters=20, lr=4.0,
                                  mean_bgr=(100.0, 110.0, 120.0), batch=3)
  before = [float(targets.activation(pipe.classify(clf_params, jnp.asarray(v)[None]), t, obj))
            for v, t in zip(x0, [jax_row(tgts, i) for i in range(4)])]
  assert x.shape == x0.shape and np.all(acts > np.array(before) + 1e-3)
  mean = np.array([100.0, 110.0, 120.0])
  assert x.min() >= -mean.max() - 1e-4 and (x + mean).max() <= 255 + 1e-4  # valid pixels
  # A request's result does not depend on its batch: rerun unit 7 alone.
  x1, _ = pixel.optimize_pixels(pipe.classify, clf_params, x0[2:3], targets.make_targets([7]),
                                obj, iters=20, lr=4.0, mean_bgr=(100.0, 110.0, 120.0), batch=3)
  np.testing.assert_allclose(x1[0], x[2], rtol=1e-5, atol=1e-4)


def jax_row(tree, i):
  return jax.tree.map(lambda a: a[i], tree)
