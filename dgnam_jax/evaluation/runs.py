"""Evaluating finished sweeps end to end: metrics.json, figure sheets, annotated galleries.

:func:`evaluate_runs` is what ``experiments.evaluate`` (and the preset evaluation driver) run: for
each ``synthesize`` output directory it renders the images under both display conventions, runs
:func:`dgnam_jax.evaluation.scoring.evaluate_sweep`, writes a top-real sheet and a memorization
sheet, and rewrites the run's gallery with M1 and the judge's verdict on every card.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

import numpy as np

from dgnam_jax import data, files, images
from dgnam_jax.sweeps import outputs
from dgnam_jax.evaluation import scoring as evaluation
from dgnam_jax.evaluation import judging
from dgnam_jax.nets.loading import load_pair


def evaluate_runs(runs: Sequence[str], *, generator: str, classifier: str, judge_path: str,
                  data_path: str, out: str, cache_dir: str | None = None,
                  output_layer: str = 'fc8', subset_budget: int = 1000,
                  memo_layers: Sequence[str] = ('pool5', 'fc6', 'fc7'), command: str = '',
                  extra_judge_paths: Sequence[str] = (), log=None) -> dict:
  """Evaluates ``runs`` and writes ``<out>/metrics.json``; returns the record written.

  ``log`` receives one line per stage and per run (the runner's progress; the library never
  prints).

  ``extra_judge_paths``: further judge checkpoints, named by their folder names, that score the
  class images too (recognizability only; the realism metrics use ``judge_path``).
  """
  t0 = time.time()
  log = log or (lambda message: None)
  names = [os.path.basename(os.path.normpath(run)) for run in runs]
  if len(set(names)) != len(names):
    raise ValueError(f'runs need distinct folder names (they name the results): {list(runs)}')
  hashes: dict = {}
  gens = {run: run_generator(run, generator, hashes) for run in runs}  # checked before any work
  log(f'loading the nets and {1 + len(extra_judge_paths)} judge(s)')
  pipe, gen_params, clf_params, _, clf_meta = load_pair(generator, classifier)
  pairs = {generator: (pipe, gen_params)}
  mean = clf_meta['mean']['per_channel']
  judge = judging.task_judge(judge_path, clf_meta.get('class_names'))
  extra_paths = {os.path.basename(os.path.normpath(p)): files.relative_path(p)
                 for p in extra_judge_paths}
  if len(extra_paths) != len(extra_judge_paths):
    raise ValueError(f'further judges need distinct folder names: {list(extra_judge_paths)}')
  extra = {n: judging.task_judge(p, clf_meta.get('class_names')) for n, p in extra_paths.items()}
  log(f'reading {data_path}' + (f' (decoded-image cache {cache_dir})' if cache_dir else ''))
  train, test = data.load_dataset(data_path, cache_dir)
  everything = data.train_then_test(train, test)
  out = os.path.abspath(out)
  os.makedirs(out, exist_ok=True)
  record = {'command': command, 'generator': files.relative_path(generator),
            'classifier': files.relative_path(classifier), 'judge': files.relative_path(judge_path),
            'data': files.relative_path(data_path), 'runs': {},
            'judge_classes': judge.description, 'judge_features': judge.features_layer,
            **({'extra_judges': extra_paths} if extra_paths else {})}
  if judge.resize or tuple(test.images.shape[1:3]) == tuple(judge.size):
    record['judge_on_real'] = judge_on_real(judge, test)
    log(f'the judge on {record["judge_on_real"]["images"]} real held-out images: top-1 '
        f'{record["judge_on_real"]["top1"]:.3f}, top-5 {record["judge_on_real"]["top5"]:.3f}')
  cache: dict = {}  # dataset activations, training codes, real distances: shared by the runs
  log(f'one pass over {len(everything)} dataset images for the {len(runs)} runs ...')
  t = time.time()
  _prefill(cache, runs, pipe, clf_params, mean, everything, train, output_layer, memo_layers)
  record['dataset_pass_s'] = round(time.time() - t, 1)
  log(f'one pass over {len(everything)} dataset images for every run: '
      f'{record["dataset_pass_s"]:.0f} s')
  class_runs = {}  # run name -> (rows, displayed images) for the side-by-side methods grid
  for run in runs:
    t = time.time()
    if gens[run] not in pairs:  # a run made with another generator is shown through it
      p_, g_, *_ = load_pair(gens[run], classifier)
      pairs[gens[run]] = (p_, g_)
    rendered = judging.render_sweep(run, *pairs[gens[run]], mean)
    rows = rendered['rows']
    res = evaluation.evaluate_sweep(
        rows=rows, rendered=rendered, classify=pipe.classify, clf_params=clf_params,
        clf_mean=mean, judge=judge, dataset=everything, real_for_kid=test, train=train,
        output_layer=output_layer, subset_budget=subset_budget, memo_layers=memo_layers,
        cache=cache, extra_judges=extra)
    arrays = res['_arrays']
    name = os.path.basename(os.path.normpath(run))
    _sheet(os.path.join(out, f'{name}_top_real.png'), rows, rendered, arrays['top_real'],
           everything.images)
    _annotate_gallery(run, rows, arrays, judge, rendered, output_layer)
    if 'nearest_train' in arrays:
      _memorization_sheet(os.path.join(out, f'{name}_memorization.png'), rows, rendered,
                          arrays['nearest_train'], train.images, output_layer)
    if any(r['layer'] == output_layer for r in rows):
      class_runs[name] = (rows, rendered['original'])
    res['wall_s'] = round(time.time() - t, 1)
    if gens[run] != generator:
      res['generator'] = files.relative_path(gens[run])
    record['runs'][name] = res
    log(f'{name}: {json.dumps(_jsonable(_headline(res)))} ({res["wall_s"]:.0f} s)')
  if class_runs:
    methods_grid(os.path.join(out, 'methods_grid.png'), class_runs, output_layer)
  record['wall_s'] = round(time.time() - t0, 1)
  files.atomic_write_text(os.path.join(out, 'metrics.json'),
                           json.dumps(_jsonable(record), indent=1))
  return _jsonable(record)


def run_generator(run: str, generator: str, hashes: dict | None = None) -> str:
  """The generator checkpoint a sweep was made with: ``generator`` when the run's manifest records
  that one (by content hashes) or none (pixel methods), else the path it records (relative to the
  working directory, as written), which must still hold the same files.

  Raises:
    ValueError: naming the run, when the recorded generator is not found or has changed.
  """
  manifest = outputs.finished_manifest(run)
  rec = ((manifest.get('provenance') or {}).get('checkpoints') or {}).get('generator')
  if not rec:
    return generator
  # The parameters decide the images (code_bounds may rewrite dgnam.json, not the net).
  sha = rec.get('params_sha256')
  hashes = {} if hashes is None else hashes  # path -> checkpoint_hashes, across runs

  def same(path):
    if path not in hashes:
      hashes[path] = files.checkpoint_hashes(path)
    return sha is None or hashes[path].get('params_sha256') == sha

  if same(generator):
    return generator
  path = rec.get('path')
  found = path and (path.startswith('registry:') or os.path.isdir(path))
  if not found or not same(path):
    raise ValueError(f'{run} was made with the generator {path} (params sha256 '
                     f'{(sha or "?")[:16]}), which is neither --generator '
                     'nor found with the same parameters')
  return path


def judge_on_real(judge: judging.Judge, test: data.ImageSet, max_images: int = 2000) -> dict:
  """The judge's top-1/top-5 on real held-out images (an evenly strided subset of at most
  ``max_images``): the scale its verdicts on synthetic images live on."""
  idx = np.arange(0, len(test), max(1, -(-len(test) // max_images)))
  logits = judge.logits(test.images[idx])
  labels = test.labels[idx]
  k5 = min(5, logits.shape[1])
  return {'images': int(len(idx)), 'top1': float(judging.topk_hits(logits, labels, 1).mean()),
          'top5': float(judging.topk_hits(logits, labels, k5).mean()),
          'classes': judge.description}


def _prefill(cache, runs, pipe, clf_params, mean, everything, train, output_layer, memo_layers):
  """Every run's units and the memorization codes of every class in one dataset pass."""
  rows = [r for run in runs for r in outputs.finished_manifest(run)['rows']]
  classes = sorted({int(r['unit']) for r in rows if r['layer'] == output_layer})
  evaluation.prefill_cache(
      cache, classify=pipe.classify, params=clf_params, mean_bgr=mean, dataset=everything,
      specs=evaluation.unit_specs(rows, output_layer), train=train, memo_classes=classes,
      memo_layers=memo_layers)


def _jsonable(v):
  if isinstance(v, dict):
    return {str(k): _jsonable(x) for k, x in v.items() if not str(k).startswith('_')}
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  if isinstance(v, (np.floating, np.integer)):
    return v.item()
  return v


def _sheet(out_png: str, rows, rendered, top_real, real_images, scale: int | None = None,
           max_lines: int = 20) -> None:
  """Fig. S23: one line per unit (its first seed; at most ``max_lines``): the synthetic image as
  saved, then the real images that drive the unit most (the same for every seed)."""
  scale = scale or _sheet_scale(real_images)
  tiles, labels, seen = [], [], set()
  for i, r in enumerate(rows):
    if (r['layer'], r['unit']) in seen or len(seen) >= max_lines:
      continue
    seen.add((r['layer'], r['unit']))
    tiles.append(images.enlarge(rendered['original'][i], scale))
    labels.append(f'{r.get("class_name") or r["layer"] + " " + str(r["unit"])} s{r["seed"]}')
    for j in top_real[i]:
      tiles.append(images.enlarge(real_images[j], scale))
      labels.append('real top')
  images.save_image(out_png, images.grid(tiles, labels, 1 + top_real.shape[1]))


def methods_grid(out_png: str, class_runs: dict, output_layer: str = 'fc8',
                 seeds: Sequence[int] | None = None, scale: int | None = None,
                 max_classes: int = 20) -> str:
  """Fig. S17 layout: one line per (class, seed), one column per run (method), as displayed.

  ``class_runs`` maps a run name to (manifest rows, displayed images); a (class, seed) missing
  from a run leaves a blank tile, so runs with different seed sets still line up. ``seeds``:
  those shown (default: the two lowest any run has). At most ``max_classes`` classes, evenly
  spaced; tiles enlarged ``scale``x (default: to ~96 px).
  """
  names = list(class_runs)
  index = {n: {(r['unit'], r['seed']): i for i, r in enumerate(rows) if r['layer'] == output_layer}
           for n, (rows, _) in class_runs.items()}
  if seeds is None:
    seeds = sorted({k[1] for ix in index.values() for k in ix})[:2]
  keys = sorted({k for ix in index.values() for k in ix if k[1] in seeds})
  if not keys:
    raise ValueError(f'methods_grid: no {output_layer} rows with seeds {list(seeds)}')
  units = sorted({u for u, _ in keys})
  shown = set(units[::-(-len(units) // max_classes)])
  keys = [k for k in keys if k[0] in shown]
  scale = scale or _sheet_scale(class_runs[names[0]][1], 96)
  class_name = {r['unit']: r.get('class_name') for rows, _ in class_runs.values() for r in rows}
  # evaluate_preset names runs '<preset>_<method>_classes'; other names are shown whole.
  methods = {n: n.split('_classes')[0].split('_', 1)[-1] if '_classes' in n else n
             for n in names}
  blank = np.full_like(class_runs[names[0]][1][0], 255)
  tiles, labels = [], []
  for unit, seed in keys:
    for n in names:
      i = index[n].get((unit, seed))
      tiles.append(images.enlarge(blank if i is None else class_runs[n][1][i], scale))
      labels.append(f'{class_name.get(unit) or unit} s{seed}: {methods[n]}')
  return images.save_image(out_png, images.grid(tiles, labels, len(names)))


def _sheet_scale(images_: np.ndarray, tile_px: int = 64) -> int:
  """The enlargement that shows ``images_`` as tiles of about ``tile_px`` (at least 1x): sheets
  use 64 px (32 px images twice as large, 64 px ones as they are)."""
  return max(1, tile_px // images_.shape[1])


def _memorization_sheet(out_png, rows, rendered, nearest, train_images, output_layer,
                        per_class: int = 2, scale: int | None = None, max_classes: int = 20
                        ) -> None:
  """Pairs (synthetic photo, its nearest training image of the class), two per class, for the
  first ``max_classes`` classes (the metric covers all; a figure of 200 classes is unreadable)."""
  scale = scale or _sheet_scale(train_images)
  cls = [i for i, r in enumerate(rows) if r['layer'] == output_layer]
  tiles, labels, seen = [], [], {}
  for k, i in enumerate(cls):
    unit = rows[i]['unit']
    if seen.get(unit, 0) >= per_class or (unit not in seen and len(seen) >= max_classes):
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
  outputs.write_gallery(run, cards, title=f'{os.path.basename(os.path.normpath(run))}: '
                       'M1 and judge verdicts', scale=4, columns=10)
