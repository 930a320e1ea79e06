"""Scoring helpers: judge top-k, seed diversity."""

import numpy as np
import pytest

from dgnam_jax.evaluation import judging


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
