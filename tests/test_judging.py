"""Scoring helpers (judge top-k, seed diversity) and the pixel-space baselines."""

import dataclasses

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


@pytest.mark.parametrize('name', sorted(pixel.METHODS))
def test_every_pixel_method_raises_its_target(name):
  pipe, _, clf_params = tiny_pipeline()
  method = pixel.METHODS[name]
  units, seeds = [0, 3, 7], [0, 0, 1]
  p0 = pixel.initial_params(method, seeds, units, (14, 14))
  obj, tgts = targets.Objective('fc8'), targets.make_targets(units)
  mean = (100.0, 110.0, 120.0)
  lr = 0.05 if method.fourier else 4.0
  x, acts = pixel.optimize_pixels(pipe.classify, clf_params, p0, tgts, obj, iters=12, lr=lr,
                                  mean_bgr=mean, batch=4, method=name, seeds=seeds)
  x_start = np.stack([np.asarray(pixel.render(method, jnp.asarray(p), jnp.asarray(mean)))
                      for p in p0])
  before = [float(targets.activation(pipe.classify(clf_params, jnp.asarray(v)[None]),
                                     jax_row(tgts, i), obj)) for i, v in enumerate(x_start)]
  assert x.shape == (3, 14, 14, 3) and np.all(acts > np.array(before)), (acts, before)
  m = np.array(mean)
  assert x.min() >= -m.max() - 1e-3 and (x + m).max() <= 255 + 1e-3  # valid pixels
  # The returned activation is that of the returned (untransformed) image.
  again = [float(targets.activation(pipe.classify(clf_params, jnp.asarray(v)[None]),
                                    jax_row(tgts, i), obj)) for i, v in enumerate(x)]
  np.testing.assert_allclose(acts, again, rtol=1e-4, atol=1e-4)


def _high_freq(x):
  return float(np.mean(np.square(np.diff(x, axis=0))) + np.mean(np.square(np.diff(x, axis=1))))


def test_blur_and_tv_reduce_high_frequencies():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(0, 50, (16, 16, 3)), jnp.float32)
  assert _high_freq(np.asarray(pixel.gaussian_blur(x, 1.0))) < 0.2 * _high_freq(np.asarray(x))
  np.testing.assert_allclose(float(pixel.total_variation(x)), _high_freq(np.asarray(x)) / 1.0,
                             rtol=1e-5)
  # The TV method's images are smoother than plain ascent's for the same budget.
  pipe, _, clf_params = tiny_pipeline()
  obj, tgts = targets.Objective('fc8'), targets.make_targets([0, 3])
  p0 = pixel.initial_params(pixel.METHODS['pixel'], [0, 0], [0, 3], (14, 14))
  run = lambda m: pixel.optimize_pixels(pipe.classify, clf_params, p0, tgts, obj, iters=15,
                                        lr=8.0, mean_bgr=(100.0, 110.0, 120.0), method=m)[0]
  tv_method = dataclasses.replace(pixel.METHODS['pixel_tv'], tv=5.0, jitter=0)
  blur_method = dataclasses.replace(pixel.METHODS['pixel_blur'], blur_every=1, blur_sigma=1.0,
                                    jitter=0)
  plain = np.mean([_high_freq(v) for v in run('pixel')])
  assert np.mean([_high_freq(v) for v in run(tv_method)]) < 0.5 * plain
  assert np.mean([_high_freq(v) for v in run(blur_method)]) < 0.5 * plain


def test_jitter_transform_moves_the_image_and_fourier_renders_valid_pixels():
  method = pixel.METHODS['fourier']
  x = jnp.asarray(np.random.default_rng(1).normal(size=(12, 12, 3)), jnp.float32)
  moved = [np.asarray(pixel._transform(method, x, jax.random.key(k))) for k in range(4)]
  assert any(not np.allclose(m, x) for m in moved)
  p = pixel.initial_params(method, [0], [0], (12, 12))[0] * 100
  img = np.asarray(pixel.render(method, jnp.asarray(p), jnp.zeros(3)))
  assert img.shape == (12, 12, 3) and img.min() >= 0 and img.max() <= 255 and img.std() > 1


def test_method_args_override_fields():
  m = pixel.with_args(pixel.METHODS['pixel_blur'], 'blur_sigma=1.0, blur_every=2,jitter=0')
  assert (m.blur_sigma, m.blur_every, m.jitter) == (1.0, 2, 0) and isinstance(m.blur_every, int)
  for bad in ('nope=1', 'tv', 'tv=abc'):
    with pytest.raises(ValueError, match='--method_args'):
      pixel.with_args(pixel.METHODS['pixel_tv'], bad)
