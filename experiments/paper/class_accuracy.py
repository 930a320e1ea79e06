"""Section 4: class accuracy vs visualization (Fig. S10).

Per class: the visualized classifier's top-1 accuracy on the held-out images of the class, and
the recognizability of its synthesized images (the judge's top-5 hit rate over the seeds, worse
display convention). Spearman's rank correlation with a permutation p-value; a scatter plot.
"""

from __future__ import annotations

import numpy as np

from dgnam_jax.evaluation import scoring, stats
from dgnam_jax.training import charts
from dgnam_jax.sweeps.requests import short_class_name
from experiments.paper import common

WELL = 0.5  # a class "visualizes well": its images are in the judge's top 5 for >= half the seeds


def run(cfg, ctx: common.Context) -> dict:
  settings = {'seeds': cfg.seeds, **({'iters': cfg.iters} if cfg.get('iters') else {})}
  classes = list(cfg.classes)
  r = ctx.sweep('classes', cfg.preset, units=','.join(map(str, classes)), **settings)
  config = r['config']
  pipe, _, clf_params, meta = ctx.pair(config.generator, config.classifier)
  _, test = ctx.dataset(cfg.data, cfg.get('cache_dir'))
  specs = tuple((config.layer, False, int(u), -1, -1, False)
                for u in range(len(meta['class_names'])))
  logits = scoring.dataset_activations(pipe.classify, clf_params, test.images,
                                       meta['mean']['per_channel'], specs)
  correct = logits.argmax(1) == test.labels
  accuracy = np.array([correct[test.labels == c].mean() for c in classes])
  judge = ctx.judge(cfg.judge, meta.get('class_names'))
  labels = common.labels_of(r['rows'])
  judged = common.judged(judge, r)
  hits5, conv = common.worse_hits(judged, labels, 5)
  hits1, _ = common.worse_hits(judged, labels, 1)
  recog = np.array([hits5[labels == c].mean() for c in classes])
  corr = stats.spearman(accuracy, recog, seed=0)
  q = max(1, len(classes) // 4)
  order = np.argsort(accuracy, kind='stable')
  low, high = order[:q], order[-q:]
  kid = common.kid_to_real(judge, r['photo'], common.real_of_classes(test, classes))
  charts.plot_scatter(common.figure(ctx, 'accuracy_vs_recognizability.png'),
                      [('classes', accuracy.tolist(), recog.tolist())],
                      title=f'{len(classes)} classes: Spearman rho {corr["rho"]:.2f} '
                            f'(p {corr["p"]:.2g})',
                      x_label='classifier top-1 accuracy on the held-out images of the class',
                      y_label='judge top-5 hit rate of the synthesized images')
  _extremes(ctx, r, labels, classes, accuracy, recog, low, meta['class_names'])
  return {'classes': len(classes), 'seeds': list(cfg.seeds), 'judge': cfg.judge,
          'convention': conv, 'rho': corr['rho'], 'p': corr['p'],
          'accuracy_mean': float(accuracy.mean()), 'top5': float(hits5.mean()),
          'top1': float(hits1.mean()), 'kid': kid['kid'], 'kid_std': kid['kid_std'],
          'well_low_quartile': float((recog[low] >= WELL).mean()),
          'well_high_quartile': float((recog[high] >= WELL).mean()),
          'well_all': float((recog >= WELL).mean()), 'quartile': int(q),
          'low_accuracy_max': float(accuracy[low].max()),
          'high_accuracy_min': float(accuracy[high].min())}


def _extremes(ctx, r, labels, classes, accuracy, recog, low, names) -> None:
  """The lowest-accuracy classes that visualize best, seed by seed."""
  pick = sorted(low, key=lambda j: (-recog[j], accuracy[j]))[:8]
  seeds = list(r['config'].seeds)
  tiles, text = [], []
  for j in pick:
    for i in np.flatnonzero(labels == classes[j]):
      tiles.append(r['photo'][i])
      name = short_class_name(names[classes[j]])[0]
      text.append(f'{name} acc {accuracy[j]:.2f} rec {recog[j]:.2f}')
  common.save_grid(ctx, 'low_accuracy_classes.png', tiles, text, cols=len(seeds))


def verdict(res: dict) -> str:
  low, high = res['well_low_quartile'], res['well_high_quartile']
  if low > 0 and low >= 0.5 * high:
    return 'holds'
  return 'partly' if low > 0 else 'does not hold'


def describe(res: dict, link) -> str:
  rows = [['lowest-accuracy quarter', f'<= {res["low_accuracy_max"]:.2f}',
           common.pct(res['well_low_quartile'])],
          ['highest-accuracy quarter', f'>= {res["high_accuracy_min"]:.2f}',
           common.pct(res['well_high_quartile'])],
          ['all classes', f'mean {res["accuracy_mean"]:.3f}', common.pct(res['well_all'])]]
  return (f'{res["classes"]} classes x seeds {common.span(res["seeds"])}; judge `{res["judge"]}` (top-5 '
          f'{common.pct(res["top5"])}, top-1 {common.pct(res["top1"])}, worse convention '
          f'{res["convention"]}; KID {res["kid"]:.4f} ± {res["kid_std"]:.4f}). Spearman rho '
          f'between per-class accuracy and per-class top-5 hit rate: **{res["rho"]:.3f}** '
          f'(permutation p = {res["p"]:.3g}).\n\n'
          + common.table(['classes (by accuracy)', 'accuracy', f'visualize well (top-5 rate '
                          f'>= {WELL})'], rows)
          + f'\n\n![accuracy vs recognizability]({link("accuracy_vs_recognizability.png")})'
          f'\n\nThe lowest-accuracy classes that visualize best (every seed):\n\n'
          f'![low-accuracy classes]({link("low_accuracy_classes.png")})')


SECTION = common.Section(
    number=4, name='class_accuracy', title='Class accuracy vs visualization',
    figures='Fig. S10',
    claim='How well a class visualizes is not dictated by how well the classifier recognizes '
          'it: low-accuracy classes can still give recognizable preferred images.',
    rule=f'A class visualizes well when its images are in the judge\'s top 5 for >= {WELL:g} of '
         'the seeds (worse display convention). Holds if some of the lowest-accuracy quarter of '
         'the classes visualize well, at >= half the rate of the highest-accuracy quarter; '
         'partly if some do at a lower rate; does not hold if none does. Spearman\'s rho is '
         'reported beside.',
    run=run, describe=describe, verdict=verdict)
