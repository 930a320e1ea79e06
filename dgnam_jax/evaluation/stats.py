"""Small statistical tests for the reports' verdicts (numpy and the standard library only).

Exact or permutation tests, deterministic for a given seed, so a rerun reports the same p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def ranks(x: Sequence[float]) -> np.ndarray:
  """1-based ranks with ties given their average rank (as Spearman's rho needs)."""
  x = np.asarray(x, np.float64)
  order = np.argsort(x, kind='stable')
  r = np.empty(len(x), np.float64)
  r[order] = np.arange(1, len(x) + 1)
  for v in np.unique(x):  # average the ranks of ties
    m = x == v
    if m.sum() > 1:
      r[m] = r[m].mean()
  return r


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
  a, b = a - a.mean(), b - b.mean()
  den = math.sqrt(float((a * a).sum() * (b * b).sum()))
  return float((a * b).sum() / den) if den > 0 else float('nan')


def spearman(x: Sequence[float], y: Sequence[float], permutations: int = 10000, seed: int = 0
             ) -> dict[str, float]:
  """Spearman's rank correlation and its two-sided permutation p-value.

  p = (1 + #{|rho of y permuted| >= |rho|}) / (1 + permutations): exact in expectation, valid
  with ties, no distributional approximation. Returns {'rho', 'p', 'n', 'permutations'}.
  """
  rx, ry = ranks(x), ranks(y)
  if len(rx) != len(ry) or len(rx) < 3:
    raise ValueError(f'spearman needs two equal-length samples of >= 3, got {len(rx)}, {len(ry)}')
  rho = _pearson(rx, ry)
  if not np.isfinite(rho):
    return {'rho': float('nan'), 'p': 1.0, 'n': len(rx), 'permutations': 0}
  rng = np.random.default_rng(seed)
  cx = rx - rx.mean()
  cy = ry - ry.mean()
  norm = math.sqrt(float((cx * cx).sum() * (cy * cy).sum()))
  perms = np.stack([rng.permutation(cy) for _ in range(permutations)])
  null = perms @ cx / norm
  extreme = int((np.abs(null) >= abs(rho) - 1e-12).sum())
  return {'rho': rho, 'p': (1 + extreme) / (1 + permutations), 'n': len(rx),
          'permutations': permutations}


def _log_hypergeom(k: int, n1: int, n2: int, t: int) -> float:
  """log P(K = k) for K successes in n1 draws of a 2 x 2 table with t successes in all."""
  return (math.lgamma(n1 + 1) - math.lgamma(k + 1) - math.lgamma(n1 - k + 1)
          + math.lgamma(n2 + 1) - math.lgamma(t - k + 1) - math.lgamma(n2 - t + k + 1)
          - math.lgamma(n1 + n2 + 1) + math.lgamma(t + 1) + math.lgamma(n1 + n2 - t + 1))


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
  """Two-sided p-value of Fisher's exact test that k1/n1 and k2/n2 share one rate (the sum of
  the probabilities of all tables with the same margins no more likely than the one seen)."""
  if not (0 <= k1 <= n1 and 0 <= k2 <= n2) or n1 == 0 or n2 == 0:
    raise ValueError(f'bad counts {k1}/{n1}, {k2}/{n2}')
  t = k1 + k2
  lo, hi = max(0, t - n2), min(t, n1)
  seen = _log_hypergeom(k1, n1, n2, t)
  p = sum(math.exp(_log_hypergeom(k, n1, n2, t)) for k in range(lo, hi + 1)
          if _log_hypergeom(k, n1, n2, t) <= seen + 1e-9)
  return min(1.0, p)
