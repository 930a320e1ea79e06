"""Section 7: two-neuron blends (Figs. S11, S12).

Every pair of ``classes`` is synthesized as a blend (objective a1 + a2 - gamma (a1 - a2)^2) for
each ``gammas``; each image's two logits (what was optimized, on the raw output) give its balance
min(a1, a2) / max(a1, a2), activations clipped at 0 (1: equal, 0: one unit silent). The judge
says whether it sees both classes (both in its top 2, worse display convention).
"""

from __future__ import annotations

import itertools

import numpy as np

from dgnam_jax.evaluation import scoring
from dgnam_jax.sweeps.requests import short_class_name
from experiments.paper import common


def balance(a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
  """min / max of the two activations clipped at 0 (0 where both are <= 0)."""
  a1, a2 = np.maximum(a1, 0), np.maximum(a2, 0)
  hi = np.maximum(a1, a2)
  return np.where(hi > 0, np.minimum(a1, a2) / np.maximum(hi, 1e-12), 0.0)


def run(cfg, ctx: common.Context) -> dict:
  classes = [int(c) for c in cfg.classes]
  pairs = list(itertools.combinations(classes, 2))
  seeds = cfg.seeds
  settings = dict(seeds=seeds, iters=cfg.iters) if cfg.iters else dict(seeds=seeds)
  single = ctx.sweep('singles', cfg.preset, units=','.join(map(str, classes)), **settings)
  config = single['config']
  pipe, _, clf_params, meta = ctx.pair(config.generator, config.classifier)
  names = meta.get('class_names') or [str(c) for c in range(max(classes) + 1)]
  judge = ctx.judge(cfg.judge, meta.get('class_names'))
  _, test = ctx.dataset(cfg.data, cfg.cache_dir)
  real = common.real_of_classes(test, classes)
  result = {'classes': classes, 'seeds': list(seeds), 'gammas': {}, 'judge': cfg.judge}
  for gamma in cfg.gammas:
    units = ','.join(f'{a}+{b}' for a, b in pairs)
    r = ctx.sweep(f'blend_g{gamma:g}', cfg.preset, units=units, gamma=float(gamma), **settings)
    specs = tuple((config.layer, False, u, -1, -1, False) for u in classes)
    acts = scoring.unit_activations(pipe.classify, clf_params, r['raw'], specs)
    col = {u: j for j, u in enumerate(classes)}
    rows = r['rows']
    a1 = np.array([acts[i, col[int(row['unit'])]] for i, row in enumerate(rows)])
    a2 = np.array([acts[i, col[int(row['blend_unit'])]] for i, row in enumerate(rows)])
    b = balance(a1, a2)
    logits = common.judged(judge, r)
    both = {}
    for conv, v in logits.items():
      top2 = np.argsort(-v, axis=1)[:, :2]
      both[conv] = np.array([{int(row['unit']), int(row['blend_unit'])} == set(t.tolist())
                             for row, t in zip(rows, top2)])
    worst = min(both, key=lambda c: (both[c].mean(), c))
    kid = common.kid_to_real(judge, r['photo'], real)
    result['gammas'][f'{gamma:g}'] = {
        'balance_median': float(np.median(b)), 'balance_mean': float(b.mean()),
        'balanced_share': float((b >= 0.7).mean()), 'sum_median': float(np.median(a1 + a2)),
        'judge_both_top2': float(both[worst].mean()), 'convention': worst,
        'kid': kid['kid'], 'kid_std': kid['kid_std'], 'images': len(rows)}
    _grid(ctx, gamma, classes, names, single, r, b)
  best = max(result['gammas'].items(),
             key=lambda kv: (kv[1]['balance_median'], kv[1]['sum_median']))
  result['best_gamma'] = best[0]
  return result


def _grid(ctx, gamma, classes, names, single, blends, b) -> None:
  """Class x class montage of seed 0: blends off the diagonal, the single class on it."""
  seed0 = blends['config'].seeds[0]
  tiles, labels = [], []
  blend = {}
  for i, row in enumerate(blends['rows']):
    if int(row['seed']) == seed0:
      blend[frozenset((int(row['unit']), int(row['blend_unit'])))] = i
  alone = {int(row['unit']): i for i, row in enumerate(single['rows'])
           if int(row['seed']) == seed0}
  for a in classes:
    for c in classes:
      if a == c:
        tiles.append(single['photo'][alone[a]])
        labels.append(short_class_name(names[a])[0])
      else:
        i = blend[frozenset((a, c))]
        tiles.append(blends['photo'][i])
        labels.append(f'b {b[i]:.2f}')
  common.save_grid(ctx, f'blends_gamma_{gamma:g}.png', tiles, labels, cols=len(classes))


def verdict(res: dict) -> str:
  g = res['gammas']
  best = g[res['best_gamma']]
  zero = g.get('0')
  balanced = best['balance_median'] >= 0.7 and (zero is None or res['best_gamma'] == '0' or
                                                best['balance_median'] > zero['balance_median'])
  seen = best['judge_both_top2'] >= 0.5
  return 'holds' if balanced and seen else 'partly' if balanced or seen else 'does not hold'


def describe(res: dict, link) -> str:
  rows = [[g, f'{v["balance_median"]:.2f}', common.pct(v['balanced_share']),
           f'{v["sum_median"]:.1f}', common.pct(v['judge_both_top2']),
           f'{v["kid"]:.4f} ± {v["kid_std"]:.4f}', v['images']]
          for g, v in res['gammas'].items()]
  figs = '\n\n'.join(f'![blends, gamma {g}]({link(f"blends_gamma_{g}.png")})'
                     for g in res['gammas'])
  return (f'{len(res["classes"])} classes, every pair blended, seeds {common.span(res["seeds"])}; judge '
          f'`{res["judge"]}`.\n\n'
          + common.table(['gamma', 'median balance', 'balance >= 0.7', 'median a1 + a2',
                          'judge: both classes in top 2', 'KID (± std)', 'images'], rows)
          + f'\n\nThe gamma that balances best: **{res["best_gamma"]}**. Grids (seed 0; the '
          'diagonal is the single class, each blend labelled with its balance):\n\n' + figs)


SECTION = common.Section(
    number=7, name='blends', title='Two-neuron blends', figures='Figs. S11, S12',
    claim='Maximizing two units at once with the penalty a1 + a2 - gamma (a1 - a2)^2 gives '
          'images in which both units fire about equally and that show features of both '
          'classes.',
    rule='Holds if, at the gamma with the highest median balance min(a1, a2) / max(a1, a2) '
         '(activations clipped at 0), that median is >= 0.7 and above gamma = 0\'s, and >= 50 % '
         'of the blends have both classes in the judge\'s top 2 (worse display convention); '
         'partly if one of the two; does not hold otherwise.',
    run=run, describe=describe, verdict=verdict)
