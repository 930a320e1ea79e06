"""Section 8: generalization to another net (Sec. 3.5).

The generator trained to invert one classifier's fc6 visualizes the classes of a classifier of
another family (same data): its images are judged by a third net, beside the images of the
generator's own classifier, same classes and seeds. The real-net case (the Tiny ImageNet generator
on EfficientNet-Lite1) comes from the real-ImageNet-nets report, quoted with its link.
"""

from __future__ import annotations

from experiments.paper import common


def run(cfg, ctx: common.Context) -> dict:
  settings = {'seeds': cfg.seeds, **({'iters': cfg.iters} if cfg.get('iters') else {})}
  units = ','.join(map(str, cfg.classes))
  _, test = ctx.dataset(cfg.data, cfg.get('cache_dir'))
  real = common.real_of_classes(test, cfg.classes)
  out, shown = {'nets': {}, 'judge': cfg.judge, 'classes': len(cfg.classes),
                'seeds': list(cfg.seeds)}, {}
  for tag, classifier in (('own', None), ('other', cfg.other_classifier)):
    r = ctx.sweep(tag, cfg.preset, units=units, classifier=classifier, **settings)
    meta = ctx.pair(r['config'].generator, r['config'].classifier)[3]
    judge = ctx.judge(cfg.judge, meta.get('class_names'))
    labels = common.labels_of(r['rows'])
    logits = common.judged(judge, r)
    top1, conv = common.worse_hits(logits, labels, 1)
    kid = common.kid_to_real(judge, r['photo'], real)
    out['nets'][tag] = {'classifier': r['config'].classifier, 'judge_top1': float(top1.mean()),
                        'convention': conv, 'kid': kid['kid'], 'kid_std': kid['kid_std'],
                        'images': len(labels),
                        'arch': (meta.get('architecture') or {}).get('arch', 'caffenet')}
    shown[tag] = r
  seed0 = list(cfg.seeds)[0]
  tiles, labels = [], []
  for u in cfg.classes:
    for tag, r in shown.items():
      i = next(i for i, row in enumerate(r['rows'])
               if int(row['unit']) == u and int(row['seed']) == seed0)
      tiles.append(r['photo'][i])
      labels.append(f'{u} {tag}')
  common.save_grid(ctx, 'own_vs_other.png', tiles, labels, cols=2 * min(5, len(cfg.classes)))
  out['real_net'] = dict(cfg.real_net) if cfg.get('real_net') else None
  return out


def verdict(res: dict) -> str:
  own, other = res['nets']['own'], res['nets']['other']
  recognized = other['judge_top1'] >= 0.8 * own['judge_top1']
  natural = other['kid'] <= 2 * max(own['kid'], 1e-6)
  return 'holds' if recognized and natural else 'partly' if recognized or natural else \
      'does not hold'


def describe(res: dict, link) -> str:
  rows = [[tag, f'`{v["classifier"]}` ({v["arch"]})', common.pct(v['judge_top1']),
           f'{v["kid"]:.4f} ± {v["kid_std"]:.4f}', v['images']]
          for tag, v in res['nets'].items()]
  text = (f'{res["classes"]} classes x seeds {common.span(res["seeds"])}, judged by `{res["judge"]}`:\n\n'
          + common.table(['visualized net', 'classifier', 'judge top-1 (worse)', 'KID (± std)',
                          'images'], rows)
          + f'\n\nSeed 0, the generator\'s own classifier beside the other net:\n\n'
          f'![own vs other]({link("own_vs_other.png")})')
  rn = res.get('real_net')
  if rn:
    text += (f'\n\n*Real net* ([{rn["report"]}]({rn["link"]}), its command there): {rn["text"]}')
  return text


SECTION = common.Section(
    number=8, name='transfer', title='Generalization to another net', figures='Sec. 3.5',
    claim='A generator trained to invert one network\'s features also produces good preferred '
          'images for networks it was not trained with (the paper: the CaffeNet fc6 generator '
          'for GoogLeNet and ResNet units).',
    rule='Holds if the other-family classifier\'s images reach >= 80 % of the own classifier\'s '
         'judge top-1 (worse display convention) and a KID <= 2x the own classifier\'s; partly '
         'if one of the two; does not hold otherwise (CIFAR-10; the real net is reported '
         'beside).',
    run=run, describe=describe, verdict=verdict)

