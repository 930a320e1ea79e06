"""The reports' statistical tests against brute force and textbook values."""

import itertools
import math

import numpy as np
import pytest

from dgnam_jax.evaluation import stats


def test_ranks_average_ties():
  np.testing.assert_array_equal(stats.ranks([10, 30, 20, 20]), [1, 4, 2.5, 2.5])


def test_spearman_matches_the_exact_permutation_distribution():
  x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
  y = [2.0, 1.0, 4.0, 3.0, 6.0, 5.0]
  res = stats.spearman(x, y, permutations=20000, seed=1)
  d2 = sum((a - b) ** 2 for a, b in zip(stats.ranks(x), stats.ranks(y)))
  rho = 1 - 6 * d2 / (6 * (36 - 1))  # no ties: the textbook formula
  assert res['rho'] == pytest.approx(rho)
  # Exact two-sided p over all 720 orderings of y.
  rx = stats.ranks(x)
  rhos = [np.corrcoef(rx, p)[0, 1] for p in itertools.permutations(stats.ranks(y))]
  exact = np.mean(np.abs(rhos) >= abs(rho) - 1e-12)
  assert res['p'] == pytest.approx(exact, abs=0.01)
  assert stats.spearman(x, y, permutations=500, seed=3) == stats.spearman(x, y, 500, seed=3)
  assert stats.spearman(x, x[::-1], permutations=200)['rho'] == pytest.approx(-1.0)
  with pytest.raises(ValueError, match='equal-length'):
    stats.spearman([1, 2, 3], [1, 2])


def test_fisher_exact_matches_a_direct_sum_and_the_tea_tasting_value():
  # Fisher's lady tasting tea: 3 of 4 right in each group -> one-sided 17/70; two-sided 34/70.
  assert stats.fisher_exact(3, 4, 1, 4) == pytest.approx(34 / 70)
  assert stats.fisher_exact(4, 4, 0, 4) == pytest.approx(2 / 70)
  k1, n1, k2, n2 = 7, 20, 15, 20
  t = k1 + k2
  prob = {k: math.comb(n1, k) * math.comb(n2, t - k) / math.comb(n1 + n2, t)
          for k in range(max(0, t - n2), min(t, n1) + 1)}
  want = sum(p for p in prob.values() if p <= prob[k1] * (1 + 1e-9))
  assert stats.fisher_exact(k1, n1, k2, n2) == pytest.approx(want)
  assert stats.fisher_exact(5, 10, 5, 10) == pytest.approx(1.0)
  with pytest.raises(ValueError, match='bad counts'):
    stats.fisher_exact(5, 4, 1, 4)
