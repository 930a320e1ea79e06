"""The evaluation stage of ``experiments.imagenet_efficientnet``: metrics, grids and the report.

Every table is split into the classes the generator saw in training (Tiny ImageNet's) and those
it never saw. Recognizability is the judge's 1000-way top-1/top-5 under the worse of the two
display conventions (the sweep's stretched PNG and the photographic one); KID is in the judge's
pooled features against real Tiny val photos of the seen classes; M1 divides the unit's logit on
the synthetic image by its maximum over the Tiny val images.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from PIL import Image

from dgnam_jax import cli, data, files
from dgnam_jax.evaluation import judging, metrics
from dgnam_jax.evaluation.runs import methods_grid
from dgnam_jax.nets import imagenet
from dgnam_jax.nets.loading import load_classifier_pipeline, load_pair
from dgnam_jax.sweeps import outputs

TIMINGS = 'timings.json'  # synthesis wall times per sweep, beside the sweeps
TILE = 96  # grid tiles (the nets' 240/260 px images would make a 40-row grid 10k px tall)


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
  return np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.BILINEAR))
                   for x in rgb])


def unit_maxima(target: str, val: data.ImageSet, units: Sequence[int], batch: int = 100
                ) -> dict[int, float]:
  """Each unit's largest logit of ``target`` over the real images (M1's denominator)."""
  judge = judging.Judge(f'registry:{target}')
  cols = np.asarray(sorted(set(units)))
  best = np.full(len(cols), -np.inf)
  for i in range(0, len(val.images), batch):
    best = np.maximum(best, judge.logits(val.images[i:i + batch])[:, cols].max(0))
  return dict(zip(cols.tolist(), best.tolist()))


def _render(run: str, target: str, generator: str | None):
  manifest = outputs.finished_manifest(run)
  if manifest['settings'].get('method', 'dgnam') == 'dgnam':
    pipe, gen_params, clf_params, _, _ = load_pair(generator, f'registry:{target}')
  else:
    pipe, clf_params, _ = load_classifier_pipeline(f'registry:{target}')
    gen_params = None
  return judging.render_sweep(run, pipe, gen_params, (0.0, 0.0, 0.0)), pipe, clf_params


def record_time(root: str, name: str, seconds: float, requests: int) -> None:
  """Adds one stretch of synthesis to ``<root>/timings.json`` (sessions of a resumed sweep add
  up), with the machine it ran on: the report's wall times."""
  path = os.path.join(root, TIMINGS)
  timings = {}
  if os.path.exists(path):
    with open(path) as f:
      timings = json.load(f)
  entry = timings.setdefault(name, {'seconds': 0.0, 'requests': 0, 'machines': []})
  entry['seconds'] = round(entry['seconds'] + seconds, 1)
  entry['requests'] += requests
  machine = cli.machine()
  if machine not in entry['machines']:
    entry['machines'].append(machine)
  files.atomic_write_text(path, json.dumps(timings, indent=1) + '\n')


def _split_scores(hits: Mapping[str, np.ndarray], mask: np.ndarray) -> dict:
  """Per split: each convention's accuracy and the worse (lower) of the two."""
  out = {'images': int(mask.sum())}
  for k, v in hits.items():
    out[k] = float(v[mask].mean()) if mask.any() else float('nan')
  for k in ('top1', 'top5'):
    out[f'{k}_worse'] = min(out[f'{k}_original'], out[f'{k}_photo'])
  return out


def evaluate_run(run: str, *, target: str, judge: judging.Judge, tiny_judge: judging.Judge,
                 seen: set[int], wnid_to_tiny: Mapping[str, int], real_feats: np.ndarray,
                 maxima: Mapping[int, float], generator: str | None) -> tuple[dict, dict]:
  """Metrics of one sweep (split seen/unseen) and its displayed images (for the grids)."""
  rendered, pipe, clf_params = _render(run, target, generator)
  rows = rendered['rows']
  units = np.asarray([r['unit'] for r in rows])
  classes = imagenet.imagenet_classes()
  hits = {}
  for conv in judging.CONVENTIONS:
    logits = judge.logits(rendered[conv])
    hits[f'top1_{conv}'] = judging.topk_hits(logits, units, 1)
    hits[f'top5_{conv}'] = judging.topk_hits(logits, units, 5)
  fn = jax.jit(lambda p, x: pipe.classify(p, x).layers['_fc'])
  acts = np.concatenate([np.asarray(fn(clf_params, rendered['raw'][i:i + 20]))
                         for i in range(0, len(rows), 20)])
  best = np.asarray([maxima[u] for u in units])
  # M1 needs a positive reference; a unit whose logit never exceeds 0 on the real images has none.
  m1 = np.where(best > 0, acts[np.arange(len(rows)), units] / np.where(best > 0, best, 1), np.nan)
  is_seen = np.isin(units, list(seen))
  res = {'seen': _split_scores(hits, is_seen), 'unseen': _split_scores(hits, ~is_seen)}
  for split, mask in (('seen', is_seen), ('unseen', ~is_seen)):
    res[split]['m1_median'] = float(np.nanmedian(m1[mask])) if mask.any() else float('nan')
  if is_seen.any():
    tiny_labels = np.asarray([wnid_to_tiny[classes[u][0]] for u in units[is_seen]])
    for conv in judging.CONVENTIONS:
      small = _resize(rendered[conv][is_seen], tiny_judge.size[0])
      logits = tiny_judge.logits(small)
      res['seen'][f'tiny_judge_top1_{conv}'] = float(
          judging.topk_hits(logits, tiny_labels, 1).mean())
      res['seen'][f'tiny_judge_top5_{conv}'] = float(
          judging.topk_hits(logits, tiny_labels, 5).mean())
    from dgnam_jax.evaluation.scoring import judge_features  # noqa: PLC0415
    for conv in judging.CONVENTIONS:
      syn = judge_features(judge, rendered[conv][is_seen])
      if min(len(syn), len(real_feats)) >= 2:  # KID's unbiased estimate needs two of each
        res['seen'][f'kid_{conv}'] = metrics.kid(syn, real_feats)
  res['per_image'] = [{'unit': int(u), 'top1_stretch': bool(a), 'top1_photo': bool(b),
                       'm1': float(m)} for u, a, b, m in zip(units, hits['top1_original'],
                                                              hits['top1_photo'], m1)]
  return res, {'rows': rows, 'original': _resize(rendered['original'], TILE)}


def evaluate_and_report(runs: Mapping[str, str], *, seen: Sequence[int], unseen: Sequence[int],
                        out: str, data_path: str, report: str | None, target: str, judge: str,
                        tiny_judge: str, cache_dir: str | None, log: Callable[[str], None],
                        command: str, val_images: int = 0,
                        extra_md: Sequence[str] = ()) -> dict:
  """Evaluates the real-net sweeps, writes ``<out>/metrics.json``, grids and the report.

  ``val_images``: use an evenly strided subset of the Tiny val images (0: all; smoke tests).
  """
  if target == judge:
    raise ValueError(f'the judge must not be the visualized net ({target})')
  t0 = time.time()
  val = data.load_npz(data_path, 'val', cache_dir)
  if val_images:
    val = val.subset(np.arange(0, len(val), max(1, len(val) // val_images))[:val_images])
  wnid_to_tiny = {n.split()[0]: i for i, n in enumerate(val.class_names)}
  generator = _generator()
  judges = {target: judging.Judge(f'registry:{judge}'), judge: judging.Judge(f'registry:{target}')}
  tiny = judging.Judge(tiny_judge)
  seen_set = set(seen)
  index = imagenet.wnid_index()
  seen_val = np.isin(np.asarray([index[n.split()[0]] for n in val.class_names])[val.labels],
                     list(seen_set))
  record = {'command': command, 'seen': list(seen), 'unseen': list(unseen), 'runs': {},
            'judges': {t: f'registry:{j}' for t, j in ((target, judge), (judge, target))},
            'tiny_judge': files.relative_path(tiny_judge), 'data': files.relative_path(data_path)}
  feats, maxima, shown = {}, {}, {}
  from dgnam_jax.evaluation.scoring import judge_features  # noqa: PLC0415
  for name, run in runs.items():
    net = target if name.startswith(target) else judge
    if net not in maxima:
      log(f'{net}: maximum of each unit over {len(val.images)} real val images')
      maxima[net] = unit_maxima(net, val, list(seen) + list(unseen))
    if net not in feats:
      log(f'judge features of {int(seen_val.sum())} real val photos of the seen classes')
      feats[net] = judge_features(judges[net], val.images[seen_val])
    t = time.time()
    res, disp = evaluate_run(run, target=net, judge=judges[net], tiny_judge=tiny,
                             seen=seen_set, wnid_to_tiny=wnid_to_tiny, real_feats=feats[net],
                             maxima=maxima[net], generator=generator)
    res['eval_s'] = round(time.time() - t, 1)
    record['runs'][name] = res
    shown[name] = disp
    log(f'{name}: evaluated in {res["eval_s"]:.0f} s')
  fig_dir = (os.path.splitext(report)[0] + '_figures') if report else os.path.join(out, 'figures')
  os.makedirs(fig_dir, exist_ok=True)
  main = {n: (d['rows'], d['original']) for n, d in shown.items() if n.startswith(target)}
  for split, units in (('seen', seen), ('unseen', unseen)):
    keep = set(units)
    sub = {n: ([r for r in rows if r['unit'] in keep],
               imgs[[i for i, r in enumerate(rows) if r['unit'] in keep]])
           for n, (rows, imgs) in main.items()}
    if all(len(v[0]) for v in sub.values()) and sub:
      methods_grid(os.path.join(fig_dir, f'grid_{split}.png'), sub, output_layer='_fc',
                   seeds=(0,), scale=1, max_classes=25)
  record['eval_s'] = round(time.time() - t0, 1)
  timings = os.path.join(out, TIMINGS)  # written by the synthesis stage
  if os.path.exists(timings):
    with open(timings) as f:
      record['synthesis'] = {n: t for n, t in json.load(f).items() if n in runs}
  files.atomic_write_text(os.path.join(out, 'metrics.json'), json.dumps(record, indent=1) + '\n')
  if report:
    write_report(record, report, fig_dir, extra_md)
  return record


def _generator() -> str:
  from dgnam_jax.sweeps import run as sweep  # noqa: PLC0415
  return sweep.preset_settings('efficientnet_lite1')['generator']


def _pct(v) -> str:
  return 'n/a' if v is None or v != v else f'{100 * v:.1f} %'


def verdict(record: Mapping) -> list[str]:
  """Which method wins, per pairing (runs named ``<target>_<method>``) and split: the judge's
  top-5 and top-1 under the worse convention, and KID (seen classes; lower is better)."""
  lines = []
  for target, judge in record['judges'].items():
    runs = {n[len(target) + 1:]: r for n, r in record['runs'].items()
            if n.startswith(target + '_')}
    if len(runs) < 2:
      continue
    for split in ('seen', 'unseen'):
      rs = {m: r[split] for m, r in runs.items() if r[split]['images']}
      if len(rs) < 2:
        continue
      parts = []
      for key, label in (('top5_worse', 'top-5'), ('top1_worse', 'top-1')):
        ranked = sorted(rs, key=lambda m: -rs[m][key])
        best, second = ranked[0], ranked[1]
        if rs[best][key] == rs[second][key]:
          parts.append(f'{label}: a tie at {_pct(rs[best][key])}')
        else:
          parts.append(f'{label}: **{best}** ({_pct(rs[best][key])} vs '
                       f'{second} {_pct(rs[second][key])})')
      kids = {m: r['kid_photo']['kid'] for m, r in rs.items() if 'kid_photo' in r}
      if len(kids) >= 2:
        best = min(kids, key=kids.get)
        others = ', '.join(f'{m} {v:.3f}' for m, v in kids.items() if m != best)
        parts.append(f'KID (photo, lower is better): **{best}** ({kids[best]:.3f} vs {others})')
      n = next(iter(rs.values()))['images']
      lines.append(f'- {target} judged by {judge.split(":")[-1]}, {split} classes ({n}): '
                   + '; '.join(parts) + '.')
  return lines


def _timings(record: Mapping) -> list[str]:
  syn = record.get('synthesis') or {}
  if not syn:
    return []
  lines = ['| sweep | requests | wall s | s per request | machine |', '|---|---|---|---|---|']
  for name, t in syn.items():
    lines.append(f'| {name} | {t["requests"]} | {t["seconds"]:.0f} | '
                 f'{t["seconds"] / max(1, t["requests"]):.1f} | {", ".join(t["machines"])} |')
  return ['## Synthesis wall times', '', *lines, '',
          'Sweeps resumed over several runs add their stretches; a shared CPU makes a stretch '
          'slower.', '']


def write_report(record: Mapping, path: str, fig_dir: str, extra_md: Sequence[str] = ()) -> str:
  """The Markdown report (its figures are already in ``fig_dir``, beside it); ``extra_md``
  files are appended verbatim (notes by eye, commands)."""
  rel = os.path.basename(fig_dir)
  lines = ['# DGN-AM on real ImageNet nets (EfficientNet-Lite)', '',
           f'Produced by `{record["command"]}`; evaluation {record["eval_s"]:.0f} s on this CPU.',
           '', '## Which method wins under the real judge', '', *verdict(record), '',
           '## Every number', '', '| run | split | images | judge top-1 (worse) | judge top-5 (worse) | top-1 stretch '
           '| top-1 photo | Tiny judge top-1 / top-5 (photo) | KID photo (seen) | M1 median |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for name, res in record['runs'].items():
    for split in ('seen', 'unseen'):
      r = res[split]
      if not r['images']:
        continue
      tiny_j = (f'{_pct(r.get("tiny_judge_top1_photo"))} / {_pct(r.get("tiny_judge_top5_photo"))}'
                if 'tiny_judge_top1_photo' in r else '—')
      kid = f'{r["kid_photo"]["kid"]:.3f}' if 'kid_photo' in r else '—'
      lines.append(f'| {name} | {split} | {r["images"]} | {_pct(r["top1_worse"])} | '
                   f'{_pct(r["top5_worse"])} | {_pct(r["top1_original"])} | '
                   f'{_pct(r["top1_photo"])} | {tiny_j} | {kid} | {r["m1_median"]:.2f} |')
  lines += ['', 'Recognizability: the judge\'s 1000-way top-1/top-5 under the worse (lower) of the '
            'two display conventions (the sweep\'s stretched PNG, the photographic mean + clip). '
            'KID: in the judge\'s pooled features against real Tiny ImageNet val photos of the '
            'seen classes (64 px photos resized to the judge\'s input, as DGN-AM\'s 64 px '
            'images are; Fourier images are drawn at the target\'s full resolution). M1: the '
            'unit\'s logit over its largest logit on the Tiny val photos (for unseen classes '
            'those photos show other classes, so their M1 is not comparable with the seen '
            'classes\').']
  lines += ['', *_timings(record), '## Grids', '',
            'One row per class (25 of each split, evenly spaced over the label range), one column '
            'per method of the target net, seed 0, each image as its sweep saved it.', '',
            f'![seen classes]({rel}/grid_seen.png)', '',
            f'![unseen classes]({rel}/grid_unseen.png)', '']
  for extra in extra_md:
    with open(extra) as f:
      lines += [f.read().strip(), '']
  files.atomic_write_text(path, '\n'.join(lines) + '\n')
  return path
