"""Section 9: memorization and real vs synthetic (Figs. S22, S23).

Class images of each part (a default pair) are compared with the training images of their class:
the memorization ratio (distance to the nearest training image of the class over the median
nearest-neighbour distance among those training images; ~0 is a copy, >= 1 as novel as a new
photo) in pixels and in the classifier's fc6; beside each class's images, the real images that
drive its unit most (train and test).
"""

from __future__ import annotations

import functools

import numpy as np

from dgnam_jax import data
from dgnam_jax.evaluation import metrics, scoring
from experiments.paper import common


def _part(p, ctx: common.Context, tag: str) -> dict:
  settings = {'seeds': p.seeds, **({'iters': p.iters} if p.get('iters') else {})}
  r = ctx.sweep(tag, p.preset, units=','.join(map(str, p.classes)), **settings)
  config = r['config']
  pipe, _, clf_params, meta = ctx.pair(config.generator, config.classifier)
  mean = meta['mean']['per_channel']
  train, test = ctx.dataset(p.data, p.get('cache_dir'))
  labels = common.labels_of(r['rows'])
  codes_fn = functools.partial(scoring.layer_codes, pipe.classify, clf_params, mean_bgr=mean)
  summary, nearest = scoring.memorization(
      r['photo'], labels, train, lambda rgb, layers: codes_fn(rgb, layers=layers),
      layers=tuple(p.code_layers))
  judge = ctx.judge(p.judge, meta.get('class_names'))
  hits, conv = common.worse_hits(common.judged(judge, r), labels, 1)
  kid = common.kid_to_real(judge, r['photo'], common.real_of_classes(test, p.classes))
  everything = data.train_then_test(train, test)
  specs = tuple((config.layer, False, int(u), -1, -1, False) for u in p.classes)
  acts = scoring.dataset_activations(pipe.classify, clf_params, everything.images, mean, specs)
  top = metrics.top_k_indices(acts, 9)  # (units, 9)
  purity = float(np.mean([everything.labels[top[j]] == u for j, u in enumerate(p.classes)]))
  _figures(ctx, tag, r, labels, nearest, train, everything, top, p.classes)
  return {'preset': p.preset, 'classes': len(p.classes), 'seeds': list(p.seeds),
          'images': len(labels), 'pixel_ratio': summary['pixel_ratio'],
          'min_ratio': summary['min_ratio'], 'share_below_0.5': summary['share_below_0.5'],
          'code_ratios': {l: {**summary[f'{l}_ratio'], 'min': summary[f'{l}_min_ratio']}
                          for l in p.code_layers},
          'judge': p.judge, 'judge_top1': float(hits.mean()), 'convention': conv,
          'kid': kid['kid'], 'kid_std': kid['kid_std'], 'top9_purity': purity}


def _figures(ctx, tag, r, labels, nearest, train, everything, top, classes) -> None:
  seeds = list(r['config'].seeds)
  first = [np.flatnonzero(labels == u)[0] for u in classes[:20]]
  tiles, names = [], []
  for i in first:  # S22: each synthetic photo beside its nearest training image
    tiles += [r['photo'][i], train.images[nearest[i]]]
    names += [f'{labels[i]} synthetic', 'nearest train']
  common.save_grid(ctx, f'{tag}_nearest.png', tiles, names, cols=8)
  tiles, names = [], []
  shown = seeds[:3]
  for j, u in enumerate(classes[:10]):  # S23: synthetic images, then the top-9 real ones
    for s in shown:
      i = np.flatnonzero((labels == u) & (np.array([int(x['seed']) for x in r['rows']]) == s))
      tiles.append(r['photo'][i[0]])
      names.append(f'{u} seed {s}')
    for k in range(9):
      tiles.append(everything.images[top[j, k]])
      names.append(f'real #{k + 1}')
  common.save_grid(ctx, f'{tag}_real_vs_synthetic.png', tiles, names, cols=len(shown) + 9)


def run(cfg, ctx: common.Context) -> dict:
  unknown = [t for t in cfg.use if t not in cfg.parts]
  if unknown:
    raise ValueError(f'--config.use: no parts {unknown} (parts: {", ".join(cfg.parts)})')
  return {'parts': {tag: _part(cfg.parts[tag], ctx, tag) for tag in cfg.use}}


def verdict(res: dict) -> str:
  parts = res['parts'].values()
  novel = all(p['pixel_ratio']['median'] >= 0.7 for p in parts)
  no_copy = all(p['min_ratio'] >= 0.3 for p in parts)
  return 'holds' if novel and no_copy else 'partly' if novel else 'does not hold'


def describe(res: dict, link) -> str:
  rows, figs = [], []
  for tag, p in res['parts'].items():
    code = ', '.join(f'{k} {v["median"]:.2f} ({v["min"]:.2f})'
                     for k, v in p['code_ratios'].items())
    rows.append([tag, f'{p["classes"]} x seeds {common.span(p["seeds"])}',
                 f'{p["pixel_ratio"]["median"]:.2f} ({p["min_ratio"]:.2f})',
                 common.pct(p['share_below_0.5']), code or 'n/a',
                 f'{common.pct(p["judge_top1"])} (`{p["judge"]}`)',
                 f'{p["kid"]:.4f} ± {p["kid_std"]:.4f}', common.pct(p['top9_purity'])])
    figs.append(f'*{tag}*: each synthetic image beside its nearest training image (S22)\n\n'
                f'![{tag} nearest]({link(f"{tag}_nearest.png")})\n\n'
                f'*{tag}*: synthetic images, then the 9 real images that drive the unit most '
                f'(S23)\n\n![{tag} real vs synthetic]({link(f"{tag}_real_vs_synthetic.png")})')
  return (common.table(['part', 'classes x seeds', 'pixel ratio median (min)', 'ratio < 0.5',
                        'code-space ratio median (min)', 'judge top-1', 'KID (± std)',
                        'top-9 real of the class'], rows)
          + '\n\nRatio: nearest training image of the class over the median nearest-neighbour '
          'distance among that class\'s training images (0: a copy; ~1: as novel as a new '
          'photo).\n\n' + '\n\n'.join(figs))


SECTION = common.Section(
    number=9, name='memorization', title='Memorization and real vs synthetic',
    figures='Figs. S22, S23',
    claim='DGN-AM\'s images are not copies of training images: each differs from its nearest '
          'training image about as much as real photos differ from each other, while resembling '
          'the real images that drive the unit most.',
    rule='Holds if on every part the median pixel-space memorization ratio is >= 0.7 and no '
         'image is below 0.3 (no near-copy); partly if the medians are >= 0.7 but some image is '
         'below 0.3; does not hold otherwise.',
    run=run, describe=describe, verdict=verdict)
