"""Metrics of the evaluation suite on cases with a known answer."""

import itertools

import numpy as np
import pytest

from dgnam_jax.evaluation import metrics


def _feats(seed, n=120, d=16, shift=0.0):
  return np.random.default_rng(seed).normal(shift, 1.0, (n, d))


def test_kid_and_fid_vanish_on_identical_sets_and_grow_with_a_shift():
  x = _feats(0)
  same = metrics.kid(x, x, subsets=20, subset_size=60)
  near, far = metrics.kid(x, _feats(1)), metrics.kid(x, _feats(1, shift=1.0))
  assert same['subset_size'] == 60 and far['subset_size'] == 100
  # Zero in expectation for one distribution (subsets of one set share rows, which pulls the
  # estimate slightly below 0), against 7.3 for a unit shift of the mean.
  assert abs(same['kid']) < 0.02 * far['kid'] and abs(near['kid']) < 0.02 * far['kid']
  assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-6)
  # Gaussians N(0, I) vs N(1, I) in 16-d: FID = |mu1 - mu2|^2 = 16 plus sampling noise.
  assert metrics.fid(_feats(2, n=4000), _feats(3, n=4000, shift=1.0)) == pytest.approx(16, rel=0.1)


def test_fid_matches_closed_form_for_scaled_gaussians():
  # N(0, I) vs N(0, 4 I) in d dims: tr(I + 4I - 2 * 2I) = d.
  x = _feats(4, n=20000, d=4)
  assert metrics.fid(x, 2 * _feats(5, n=20000, d=4)) == pytest.approx(4, rel=0.05)


def test_relative_activation_of_the_argmax_image_is_one():
  acts = np.random.default_rng(0).normal(size=(50, 6))
  acts[:, 5] = -1.0  # a unit no image drives
  best = acts.max(0)
  rel = metrics.relative_activation(best, acts.max(0))
  np.testing.assert_allclose(rel[:5], 1.0)
  assert np.isnan(rel[5])
  top = metrics.top_k_indices(acts, 3)
  assert top.shape == (6, 3) and np.array_equal(top[:, 0], acts.argmax(0))
  assert all(acts[top[u, 0], u] >= acts[top[u, 1], u] >= acts[top[u, 2], u] for u in range(5))


def test_expected_max_of_random_subset_matches_enumeration():
  acts = np.array([[3.0], [1.0], [4.0], [1.5], [9.0]])
  for n in (1, 2, 3, 5):
    want = np.mean([max(acts[list(c), 0]) for c in itertools.combinations(range(5), n)])
    assert metrics.expected_max_of_random_subset(acts, n)[0] == pytest.approx(want)


def test_memorization_flags_a_planted_training_image():
  rng = np.random.default_rng(0)
  real = rng.uniform(0, 255, (200, 8, 8, 3))
  synthetic = rng.uniform(0, 255, (10, 8, 8, 3))
  synthetic[4] = real[123] + rng.normal(0, 1.0, (8, 8, 3))  # a near-copy
  m = metrics.memorization_ratio(synthetic, real)
  assert m['nearest'][4] == 123 and m['ratio'][4] < 0.1
  assert np.all(np.delete(m['ratio'], 4) > 0.8)


def test_mean_pairwise_distance_per_group():
  f = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [7.0, 7.0]])
  d = metrics.mean_pairwise_distance(f, ['a', 'a', 'b', 'b', 'c'])
  assert d == {'mean': pytest.approx(3.0), 'groups': 2}  # (5 + 1) / 2; 'c' has one image


def test_checkerboard_energy_sees_strided_artifacts():
  rng = np.random.default_rng(0)
  # A smooth random field (1/f amplitude, like natural images) against the same with a period-2
  # and period-4 pattern added, as stride-2 deconvolutions leave.
  f = np.fft.fftfreq(64)
  amp = 1 / np.maximum(np.hypot(f[:, None], f[None, :]), 1 / 64)
  def field():
    spec = amp * np.exp(2j * np.pi * rng.random((64, 64)))
    img = np.real(np.fft.ifft2(spec))
    return (img - img.min()) / np.ptp(img) * 200 + 20
  smooth = np.stack([np.repeat(field()[..., None], 3, -1) for _ in range(8)])
  yy, xx = np.mgrid[:64, :64]
  pattern = 6 * ((yy % 2) ^ (xx % 2)) + 4 * ((yy // 2 % 2) & (xx // 2 % 2))
  checkered = smooth + pattern[None, :, :, None]
  base = metrics.checkerboard_energy(smooth, 16)
  assert 0.5 < base < 2
  assert metrics.checkerboard_energy(checkered, 16) > 2 * base
  mask = metrics.upsampling_frequencies(64, 16)
  assert mask.sum() == 16 * 16 - 1 and mask[0, 4] and mask[32, 32] and not mask[0, 2]
  with pytest.raises(ValueError, match='divide'):
    metrics.upsampling_frequencies(64, 3)
  with pytest.raises(ValueError, match='square RGB'):
    metrics.checkerboard_energy(smooth[..., 0], 16)


def test_repetition_score_separates_a_tiled_pattern_from_one_object():
  rng = np.random.default_rng(0)
  tile = rng.integers(0, 256, (8, 8, 3))
  tiled = np.tile(tile, (4, 4, 1))  # period 8 on a 32 px image
  blob = np.zeros((32, 32, 3))
  yy, xx = np.mgrid[:32, :32]
  blob[(yy - 16) ** 2 + (xx - 16) ** 2 < 64] = 255  # one disc
  noise = rng.integers(0, 256, (32, 32, 3))
  s = metrics.repetition_score(np.stack([tiled, blob, noise, np.zeros((32, 32, 3))]))
  assert s[0] == pytest.approx(1.0)
  assert s[1] < 0.3 and abs(s[2]) < 0.3 and s[3] == 0.0
  # Shifts under min_shift do not count: a smooth gradient is its own near neighbour.
