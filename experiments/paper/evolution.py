"""Section 3: training evolution and overfitting (Figs. S6, S9).

The CIFAR-10 classifier is trained again with the default's recipe and seed, saving a deploy
snapshot every ``snapshot_every_epochs``; two more classifiers learn 10 % and 25 % of the
training images (a seeded choice) without augmentation until they fit them (~100 % train
accuracy). Each net is visualized through the CIFAR-10 generator on the same (class, seed)
requests: recognizability by the independent judge and KID against each snapshot's held-out
accuracy, and one animated GIF per class over the snapshots.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from dgnam_jax.evaluation import stats
from dgnam_jax.nets import checkpoint, small
from dgnam_jax.sweeps import outputs
from dgnam_jax.training import charts
from dgnam_jax.training import classifier as classifier_lib
from experiments.paper import common


def _net(cfg):
  return small.SmallNetConfig(num_classes=10, input_size=32, width=cfg.width,
                              fc_width=cfg.fc_width)


def _train_full(cfg, ctx, train, test) -> list[str]:
  tcfg = dataclasses.replace(classifier_lib.TrainConfig(), epochs=cfg.epochs, seed=cfg.seed,
                             batch_size=cfg.batch_size)
  snaps = os.path.join(ctx.runs, 'snapshots')
  spe = len(train) // tcfg.batch_size
  every = max(1, int(round(cfg.snapshot_every_epochs * spe)))
  classifier_lib.train_classifier(train, test, _net(cfg), tcfg, os.path.join(ctx.runs, 'full'),
                                  os.path.join(ctx.runs, 'full_export'),
                                  run_info={'data': cfg.data}, snapshot_every_steps=every,
                                  snapshot_dir=snaps)
  return [os.path.join(snaps, n) for n in sorted(os.listdir(snaps))]


def _train_subset(cfg, ctx, train, test, fraction, epochs) -> str:
  rng = np.random.default_rng(cfg.seed)
  idx = np.sort(rng.permutation(len(train))[:int(round(fraction * len(train)))])
  tcfg = dataclasses.replace(classifier_lib.TrainConfig(), epochs=epochs, seed=cfg.seed,
                             batch_size=cfg.batch_size, pad=0, flip=False, dropout=0.0,
                             label_smoothing=0.0)
  name = f'subset_{round(100 * fraction)}'
  out = os.path.join(ctx.runs, f'{name}_export')
  classifier_lib.train_classifier(train.subset(idx), test, _net(cfg), tcfg,
                                  os.path.join(ctx.runs, name), out,
                                  run_info={'data': cfg.data, 'fraction': fraction})
  return out


def _visualize(cfg, ctx, name, clf, judge, real, settings) -> tuple[dict, dict]:
  r = ctx.sweep(name, cfg.preset, classifier=clf, units=','.join(map(str, cfg.classes)),
                **settings)
  labels = common.labels_of(r['rows'])
  top1, conv = common.worse_hits(common.judged(judge, r), labels, 1)
  kid = common.kid_to_real(judge, r['photo'], real)
  info = checkpoint.read_metadata(clf)['training']
  hist = info.get('history') or [{}]
  return ({'test_accuracy': info['test_accuracy'],
           'train_accuracy': info.get('train_acc', hist[-1].get('train_acc')),
           'epoch': info.get('epoch', info.get('epochs')), 'judge_top1': float(top1.mean()),
           'convention': conv, 'kid': kid['kid'], 'kid_std': kid['kid_std']}, r)


def run(cfg, ctx: common.Context) -> dict:
  train, test = ctx.dataset(cfg.data, cfg.get('cache_dir'))
  snaps = _train_full(cfg, ctx, train, test)
  subsets = {f'{f:g}': _train_subset(cfg, ctx, train, test, f, e) for f, e in cfg.subsets}
  settings = {'seeds': cfg.seeds, **({'iters': cfg.iters} if cfg.get('iters') else {})}
  judge = ctx.judge(cfg.judge, None)
  real = common.real_of_classes(test, cfg.classes)
  out = {'snapshots': {}, 'subsets': {}, 'classes': list(cfg.classes),
         'seeds': list(cfg.seeds), 'judge': cfg.judge}
  frames = {u: [] for u in cfg.classes}
  for path in snaps:
    name = os.path.basename(path)
    out['snapshots'][name], r = _visualize(cfg, ctx, name, path, judge, real, settings)
    for u in cfg.classes:
      i = next(i for i, row in enumerate(r['rows']) if int(row['unit']) == u)
      frames[u].append(r['photo'][i])
  for fraction, path in subsets.items():
    out['subsets'][fraction], _ = _visualize(cfg, ctx, f'subset_{fraction}', path, judge, real,
                                             settings)
  for u, fr in frames.items():
    outputs.write_gif(common.figure(ctx, f'class_{u}.gif'), [np.kron(f, np.ones((2, 2, 1),
                                                                               np.uint8))
                                                             for f in fr], duration_ms=300)
  acc = [v['test_accuracy'] for v in out['snapshots'].values()]
  top1 = [v['judge_top1'] for v in out['snapshots'].values()]
  kid = [v['kid'] for v in out['snapshots'].values()]
  out['rho_top1'] = stats.spearman(acc, top1)['rho'] if len(acc) >= 3 else None
  out['rho_kid'] = stats.spearman(acc, kid)['rho'] if len(acc) >= 3 else None
  charts.plot_scatter(common.figure(ctx, 'quality_vs_accuracy.png'),
                      [('judge top-1', acc, top1), ('KID x 10', acc, [10 * k for k in kid])],
                      title='snapshots of the CIFAR-10 classifier',
                      x_label='held-out top-1 accuracy of the snapshot',
                      y_label='judge top-1 and KID x 10 of its images')
  return out


def verdict(res: dict) -> str:
  tracks = res['rho_top1'] is not None and res['rho_top1'] >= 0.5
  full = res['snapshots'][max(res['snapshots'])]
  sensible = all(v['judge_top1'] >= 0.5 * full['judge_top1'] and v['kid'] <= 2 * full['kid']
                 for v in res['subsets'].values())
  return 'holds' if tracks and sensible else 'partly' if tracks or sensible else \
      'does not hold'


def describe(res: dict, link) -> str:
  def row(name, v):
    train_acc = 'n/a' if v['train_accuracy'] is None else common.pct(v['train_accuracy'])
    return [name, common.pct(v['test_accuracy']), train_acc, common.pct(v['judge_top1']),
            f'{v["kid"]:.4f} ± {v["kid_std"]:.4f}']
  rows = [row(n, v) for n, v in res['snapshots'].items()]
  rows += [row(f'{100 * float(f):g} % of the data', v) for f, v in res['subsets'].items()]
  rho = 'n/a' if res['rho_top1'] is None else f'{res["rho_top1"]:.2f}'
  rho_kid = 'n/a' if res['rho_kid'] is None else f'{res["rho_kid"]:.2f}'
  gifs = ' '.join(f'![class {u}]({link(f"class_{u}.gif")})'
                  for u in res['classes'])
  return (f'{len(res["classes"])} classes x seeds {common.span(res["seeds"])}; judge '
          f'`{res["judge"]}`. Spearman rho over the snapshots: held-out accuracy vs judge top-1 '
          f'**{rho}**, vs KID {rho_kid}.\n\n'
          + common.table(['net', 'held-out top-1', 'train accuracy (last epoch)', 'judge top-1',
                          'KID (± std)'], rows)
          + f'\n\n![quality vs accuracy]({link("quality_vs_accuracy.png")})\n\n'
          'One GIF per class over the snapshots (seed 0):\n\n' + gifs)


SECTION = common.Section(
    number=3, name='evolution', title='Training evolution and overfitting',
    figures='Figs. S6, S9',
    claim='The visualizations improve as the classifier learns, tracking its validation '
          'accuracy; nets that overfit a small training set still give sensible images.',
    rule='Holds if Spearman\'s rho between the snapshots\' held-out accuracy and their images\' '
         'judge top-1 (worse display convention) is >= 0.5, and the 10 % and 25 % nets\' images '
         'reach >= half the final net\'s judge top-1 with a KID <= 2x its KID; partly if one of '
         'the two; does not hold otherwise.',
    run=run, describe=describe, verdict=verdict)
