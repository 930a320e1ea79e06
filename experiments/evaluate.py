r"""Evaluates finished ``synthesize`` runs: every metric of the evaluation suite, in one command.

  python -m experiments.evaluate --runs=out/eval/cifar10_classes,out/eval/cifar10_conv5 \
      --data=/work/shared/data/cifar10_jpeg.npz --judge=checkpoints/cifar10/judge \
      --out=out/eval/cifar10_metrics

For each run (a ``synthesize`` output directory, whose manifest names its layer and units) it
computes relative activation M1 (raw generator output and the uint8 photo, against each unit's
maximum over all train + test images), the judge's top-1/top-5 under both display conventions (all
images and distinct images only), KID and FID in the judge's pool5 features against held-out real
images of the same classes, seed diversity (judge features and pixels) and the pixel-space
memorization ratio. Output rows (classes) need the classifier's logit layer (``--output_layer``).
The generator and classifier are the ones the run used (``--generator`` / ``--classifier``, or
the run's preset). Writes ``<out>/metrics.json``, a top-k sheet per run (synthetic images next
to the 5 real images that drive the unit most) and rewrites each run's ``index.html`` with M1 and
the judge's verdict on every card.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

from dgnam_jax import data, evaluation, images, judging, report, sweep
from dgnam_jax.sweep_plan import load_pair

_RUNS = flags.DEFINE_list('runs', None, 'synthesize output directories.')
_DATA = flags.DEFINE_string('data', None, 'The dataset (JPEG-pack .npz or folder).')
_JUDGE = flags.DEFINE_string('judge', None, 'Independent classifier checkpoint.')
_OUT = flags.DEFINE_string('out', None, 'Directory for metrics.json and sheets.',
                           allow_override=True)
_PRESET = flags.DEFINE_string('preset', 'cifar10', 'Preset naming the generator/classifier.')
_GENERATOR = flags.DEFINE_string('generator', None, 'Generator checkpoint (default: preset\'s).')
_CLASSIFIER = flags.DEFINE_string('classifier', None, 'Classifier checkpoint (default: '
                                  'preset\'s).')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Decoded-image cache.')
_OUTPUT_LAYER = flags.DEFINE_string('output_layer', 'fc8', 'The classifier\'s logit layer.')
_MEMO_LAYERS = flags.DEFINE_list('memo_layers', ['pool5', 'fc6', 'fc7'], 'Classifier blobs whose '
                                  'code space the memorization check also uses.')
_BUDGET = flags.DEFINE_integer('subset_budget', 1000, 'N of the expected-max-of-N-real-images '
                               'baseline.')


def _jsonable(v):
  if isinstance(v, dict):
    return {str(k): _jsonable(x) for k, x in v.items() if not str(k).startswith('_')}
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  if isinstance(v, (np.floating, np.integer)):
    return v.item()
  return v


def _sheet(out_png: str, rows, rendered, top_real, real_images, scale: int = 2) -> None:
  """One line per row: its synthetic photo, then the 5 real images that drive its unit most."""
  tiles, labels = [], []
  for i, r in enumerate(rows):
    tiles.append(images.enlarge(rendered['original'][i], scale))
    labels.append(f'{r.get("class_name") or r["layer"] + " " + str(r["unit"])} s{r["seed"]}')
    for j in top_real[i]:
      tiles.append(images.enlarge(real_images[j], scale))
      labels.append('real top')
  images.save_image(out_png, images.grid(tiles, labels, 1 + top_real.shape[1]))


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  t0 = time.time()
  preset = sweep.PRESETS.get(_PRESET.value, {})
  gen = _GENERATOR.value or preset.get('generator')
  clf = _CLASSIFIER.value or preset.get('classifier')
  pipe, gen_params, clf_params, _, clf_meta = load_pair(gen, clf)
  mean = clf_meta['mean']['per_channel']
  judge = judging.Judge(_JUDGE.value)
  train, test = data.load_dataset(_DATA.value, _CACHE_DIR.value)
  everything = data.ImageSet(np.concatenate([train.images, test.images]),
                             np.concatenate([train.labels, test.labels]), train.class_names, [])
  out = os.path.abspath(_OUT.value)
  os.makedirs(out, exist_ok=True)
  record = {'command': 'python -m experiments.evaluate ' + ' '.join(sys.argv[1:]),
            'generator': os.path.abspath(gen), 'classifier': os.path.abspath(clf),
            'judge': os.path.abspath(_JUDGE.value), 'data': os.path.abspath(_DATA.value),
            'runs': {}}
  for run in _RUNS.value:
    t = time.time()
    rendered = judging.render_sweep(run, pipe, gen_params, mean)
    rows = rendered['rows']
    res = evaluation.evaluate_sweep(
        rows=rows, rendered=rendered, classify=pipe.classify, clf_params=clf_params,
        clf_mean=mean, judge=judge, dataset=everything, real_for_kid=test, train=train,
        output_layer=_OUTPUT_LAYER.value, subset_budget=_BUDGET.value,
        memo_layers=_MEMO_LAYERS.value)
    arrays = res['_arrays']
    name = os.path.basename(os.path.normpath(run))
    _sheet(os.path.join(out, f'{name}_top_real.png'), rows, rendered, arrays['top_real'],
           everything.images)
    _annotate_gallery(run, rows, arrays, judge, rendered, _OUTPUT_LAYER.value)
    if 'nearest_train' in arrays:
      _memorization_sheet(os.path.join(out, f'{name}_memorization.png'), rows, rendered,
                          arrays['nearest_train'], train.images, _OUTPUT_LAYER.value)
    res['wall_s'] = round(time.time() - t, 1)
    record['runs'][name] = res
    print(f'{name}: {json.dumps(_jsonable(_headline(res)))} ({res["wall_s"]:.0f} s)')
  record['wall_s'] = round(time.time() - t0, 1)
  report.atomic_write_text(os.path.join(out, 'metrics.json'),
                           json.dumps(_jsonable(record), indent=1))
  print(f'wrote {os.path.join(out, "metrics.json")} in {record["wall_s"]:.0f} s')
  return 0


def _memorization_sheet(out_png, rows, rendered, nearest, train_images, output_layer,
                        per_class: int = 2, scale: int = 2) -> None:
  """Pairs (synthetic photo, its nearest training image of the class), two per class."""
  cls = [i for i, r in enumerate(rows) if r['layer'] == output_layer]
  tiles, labels, seen = [], [], {}
  for k, i in enumerate(cls):
    unit = rows[i]['unit']
    if seen.get(unit, 0) >= per_class:
      continue
    seen[unit] = seen.get(unit, 0) + 1
    tiles += [images.enlarge(rendered['photo'][i], scale),
              images.enlarge(train_images[nearest[k]], scale)]
    labels += [f'{rows[i].get("class_name") or unit} s{rows[i]["seed"]}', 'nearest train']
  images.save_image(out_png, images.grid(tiles, labels, 2 * per_class))


def _headline(res):
  keys = ('m1_output', 'm1_hidden')
  out = {k: {p: res[k][p]['median'] for p in ('raw', 'photo')} for k in keys if k in res}
  if 'judge' in res:
    out['judge_top1'] = {c: res['judge'][f'top1_{c}'] for c in judging.CONVENTIONS}
    out['kid'] = {c: res['kid_fid'][c]['kid'] for c in judging.CONVENTIONS}
  return out


def _annotate_gallery(run, rows, arrays, judge, rendered, output_layer) -> None:
  """Rewrites the run's index.html with M1 and (for class rows) the judge's verdict per card."""
  verdicts = {}
  cls_idx = [i for i, r in enumerate(rows) if r['layer'] == output_layer]
  if cls_idx:
    logits = judge.logits(rendered['original'][cls_idx])
    names = judge.class_names or []
    for i, l in zip(cls_idx, logits):
      k = int(np.argmax(l))
      verdicts[i] = names[k] if k < len(names) else str(k)
  cards = []
  for i, r in enumerate(rows):
    label = f'M1 {arrays["rel_raw"][i]:.2f} raw / {arrays["rel_photo"][i]:.2f} photo'
    if i in verdicts:
      label += f'; judge: {verdicts[i]}'
    cards.append(dict(r, label=label))
  report.write_gallery(run, cards, title=f'{os.path.basename(os.path.normpath(run))}: '
                       'M1 and judge verdicts', scale=4, columns=10)


if __name__ == '__main__':
  flags.mark_flags_as_required(['runs', 'data', 'judge', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
