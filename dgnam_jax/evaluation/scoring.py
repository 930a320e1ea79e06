"""The evaluation pass over a dataset and a finished sweep (issue: evaluation suite).

:func:`unit_activations` reads, for every manifest row, the activation of the row's unit on a
batch of images: the pre-softmax logit for output units and Caffe's blob (post-ReLU) for hidden
units, as XDream's relative activation does. One pass over a dataset with it gives each unit's
maximum (the denominator of M1), its top images, and the expected maximum of random subsets.
:func:`evaluate_sweep` combines that with the judge (:mod:`dgnam_jax.evaluation.judging`) and the
set metrics (:mod:`dgnam_jax.evaluation.metrics`) into one JSON-able record.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax import data
from dgnam_jax.evaluation import judging
from dgnam_jax.evaluation import metrics
from dgnam_jax.nets.pipeline import rgb_to_input

UnitSpec = tuple[str, bool, int, int, int, bool]  # layer, use blob, unit, y, x, channel mean


def unit_specs(rows: Sequence[Mapping[str, Any]], output_layer: str = 'fc8') -> tuple[UnitSpec]:
  """One static spec per manifest row: logits for ``output_layer``, post-ReLU blobs elsewhere."""
  specs = []
  for r in rows:
    y, x = r.get('position') or (-1, -1)
    specs.append((r['layer'], r['layer'] != output_layer, int(r['unit']), int(y), int(x),
                  r.get('kind') == 'channel_mean'))
  return tuple(specs)


def _columns(out, specs: tuple[UnitSpec, ...], n: int):
  cols = []
  for layer, blob, unit, y, xx, mean in specs:
    v = (out.blobs if blob else out.layers)[layer].astype(jnp.float32)
    if v.ndim == 2:
      cols.append(v[:, unit])
    elif mean:
      cols.append(v[..., unit].mean(axis=(1, 2)))
    else:
      cols.append(v[:, y, xx, unit])
  return jnp.stack(cols, axis=1) if cols else jnp.zeros((n, 0), jnp.float32)


@functools.lru_cache(maxsize=16)
def _reader(classify, specs: tuple[UnitSpec, ...], layers: tuple[str, ...] = (),
            rgb_input: bool = False):
  """jit: (params, x, mean) -> ((N, len(specs)) unit activations, {layer: (N, D) flat blob}).

  ``rgb_input``: x is uint8 RGB, converted with ``mean`` inside (4x fewer bytes to move)."""
  def fn(params, x, mean):
    if rgb_input:
      x = data.to_net_input(x, mean)
    out = classify(params, x)
    return (_columns(out, specs, x.shape[0]),
            {l: out.blobs[l].reshape(x.shape[0], -1) for l in layers})
  return jax.jit(fn)


def unit_activations(classify, params, x: np.ndarray, specs: tuple[UnitSpec, ...],
                     batch: int = 500) -> np.ndarray:
  """(N, len(specs)) activations of the spec'd units on classifier-space images ``x``."""
  fn = _reader(classify, specs)
  out = [np.asarray(fn(params, jnp.asarray(x[i:i + batch], jnp.float32), None)[0])
         for i in range(0, len(x), batch)]
  return np.concatenate(out)


def dataset_activations(classify, params, images: np.ndarray, mean_bgr, specs, batch: int = 500
                        ) -> np.ndarray:
  """(N, units) activations over uint8 RGB dataset images (converted to the net's input)."""
  return dataset_pass(classify, params, images, mean_bgr, specs, batch=batch)[0]


def dataset_pass(classify, params, images: np.ndarray, mean_bgr, specs, layers=(),
                 keep: np.ndarray | None = None, batch: int = 500
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """One forward pass over uint8 RGB ``images``: the spec'd units' activations for every image,
  and the flattened ``layers`` blobs for the images where ``keep`` (default: all) is true."""
  keep = np.ones(len(images), bool) if keep is None else np.asarray(keep, bool)
  layers = tuple(layers) if keep.any() else ()
  fn = _reader(classify, tuple(specs), layers, rgb_input=True)
  mean = np.asarray(mean_bgr, np.float32)
  acts, codes = [], {l: [] for l in layers}
  for i in range(0, len(images), batch):
    a, c = fn(params, jnp.asarray(images[i:i + batch]), mean)
    acts.append(np.asarray(a))
    k = keep[i:i + batch]
    if k.any():
      for l in layers:
        codes[l].append(np.asarray(c[l])[k])
  return np.concatenate(acts), {l: np.concatenate(v) for l, v in codes.items()}


def prefill_cache(cache: dict, *, classify, params, mean_bgr, dataset: data.ImageSet, specs,
                  train: data.ImageSet, memo_classes=(), memo_layers: Sequence[str] = (),
                  batch: int = 500) -> None:
  """Fills :func:`evaluate_sweep`'s ``cache`` for many sweeps in one pass over ``dataset``.

  ``dataset`` must begin with ``train``'s images (as ``evaluate_runs`` builds it): the same
  forward pass then gives every unit's dataset activations (M1) and the memorization check's
  training codes of ``memo_classes``, which separate passes per sweep computed again and again.
  """
  specs = tuple(sp for sp in dict.fromkeys(specs) if ('acts', sp) not in cache)
  layers = tuple(memo_layers)
  classes = [int(c) for c in dict.fromkeys(memo_classes)
             if layers and ('codes', int(c), layers) not in cache]
  keep = np.zeros(len(dataset), bool)
  keep[:len(train)] = np.isin(train.labels, classes)
  if not specs and not keep.any():
    return
  acts, codes = dataset_pass(classify, params, dataset.images, mean_bgr, specs, layers, keep,
                             batch)
  cache.update({('acts', sp): acts[:, j] for j, sp in enumerate(specs)})
  kept_labels = train.labels[keep[:len(train)]]
  for c in classes:
    m = kept_labels == c
    cache[('codes', c, layers)] = {l: codes[l][m] for l in layers}


def photo_to_input(photo: np.ndarray, mean_bgr) -> np.ndarray:
  """uint8 RGB photos -> classifier input (BGR minus mean): XDream's quantised protocol."""
  return data.to_net_input(photo, mean_bgr)


def relative_activations(classify, params, rendered: Mapping[str, np.ndarray], specs,
                         dataset_max: np.ndarray, mean_bgr) -> dict[str, np.ndarray]:
  """M1 per row for the raw generator output and for the uint8 photo (``dataset_max``: each
  row's unit maximum over the dataset)."""
  idx = np.arange(len(specs))
  best = np.asarray(dataset_max)
  raw = unit_activations(classify, params, rendered['raw'], specs)[idx, idx]
  photo = unit_activations(classify, params, photo_to_input(rendered['photo'], mean_bgr),
                           specs)[idx, idx]
  return {'act_raw': raw, 'act_photo': photo, 'dataset_max': best,
          'rel_raw': metrics.relative_activation(raw, best),
          'rel_photo': metrics.relative_activation(photo, best)}


def _summary(v: np.ndarray) -> dict[str, float]:
  v = np.asarray(v, np.float64)
  v = v[np.isfinite(v)]
  if not len(v):
    return {'median': float('nan'), 'mean': float('nan'), 'share_above_1': float('nan'), 'n': 0}
  return {'median': float(np.median(v)), 'mean': float(v.mean()),
          'share_above_1': float((v > 1).mean()), 'n': int(len(v))}


def distinct_rows(imgs: np.ndarray, groups: Sequence | None = None,
                  threshold: float = 20 / 255) -> np.ndarray:
  """Indices kept when near-duplicates (MAD < threshold to a kept image of the same group, e.g.
  the seeds of one class) are dropped; the first of each set of duplicates is kept."""
  groups = np.zeros(len(imgs)) if groups is None else np.asarray(groups)
  flat = np.asarray(imgs, np.float32).reshape(len(imgs), -1) / 255.0
  keep: list[int] = []
  for i in range(len(flat)):
    same = [j for j in keep if groups[j] == groups[i]]
    if all(np.abs(flat[i] - flat[j]).mean() >= threshold for j in same):
      keep.append(i)
  return np.asarray(keep, np.int64)


def judge_scores(judge: judging.Judge, rendered, labels) -> dict[str, Any]:
  """Judge top-1/top-5 for both conventions, over all images and over distinct images only."""
  labels = np.asarray(labels)
  out = judging.score_class_images(judge, rendered, labels)
  for conv in judging.CONVENTIONS:
    keep = distinct_rows(rendered[conv], labels)
    logits = judge.logits(rendered[conv][keep])
    out[f'distinct_{conv}'] = {
        'images': int(len(keep)),
        'top1': float(judging.topk_hits(logits, labels[keep], 1).mean()),
        'top5': float(judging.topk_hits(logits, labels[keep], 5).mean())}
  return out


def evaluate_sweep(*, rows, rendered, classify, clf_params, clf_mean, judge: judging.Judge,
                   dataset: data.ImageSet, real_for_kid: data.ImageSet, train: data.ImageSet,
                   features_fn=None, output_layer: str = 'fc8', subset_budget: int | None = None,
                   memo_layers: Sequence[str] = ('pool5', 'fc6', 'fc7'),
                   cache: dict | None = None,
                   extra_judges: Mapping[str, judging.Judge] | None = None) -> dict[str, Any]:
  """Every metric of one sweep (see the module docstring); arrays for figures under '_arrays'.

  Args:
    rows, rendered: :func:`judging.render_sweep`'s rows and images.
    classify, clf_params, clf_mean: the visualized classifier (``Pipeline.classify``).
    judge: the independent judge (class rows only: units of ``output_layer``).
    dataset: all real images for the M1 maxima (train + test).
    real_for_kid: real images of the same classes for KID/FID (held-out split).
    train: training images for the memorization check (same class as each class row).
    features_fn: uint8 RGB -> (N, D) judge features (default: the judge's pool5).
    output_layer: the classifier's logit layer.
    subset_budget: N of the "expected max over N random images" baseline (default 1000).
    memo_layers: classifier blobs whose code space the memorization check also uses.
    cache: a dict reused across runs on the same dataset (dataset activations per unit spec,
      training codes, real-real distances).
    extra_judges: further judges by name; their top-1/top-5 (both conventions, distinct images)
      go to ``out['extra_judges'][name]``. The realism metrics use ``judge`` only.
  """
  cache = {} if cache is None else cache
  t0 = time.time()
  specs = unit_specs(rows, output_layer)
  missing = [sp for sp in dict.fromkeys(specs) if ('acts', sp) not in cache]
  if missing:
    got = dataset_activations(classify, clf_params, dataset.images, clf_mean, tuple(missing))
    cache.update({('acts', sp): got[:, j] for j, sp in enumerate(missing)})
  # The seeds of a unit share its dataset column: statistics once per distinct unit.
  pos = {sp: i for i, sp in enumerate(dict.fromkeys(specs))}
  col = np.asarray([pos[sp] for sp in specs])
  uniq = np.stack([cache[('acts', sp)] for sp in pos], axis=1)
  best = uniq.max(0)[col]
  rel = relative_activations(classify, clf_params, rendered, specs, best, clf_mean)
  out: dict[str, Any] = {'rows': len(rows), 'dataset_images': len(dataset)}
  is_out = np.asarray([s[0] == output_layer for s in specs])
  budget = min(subset_budget or 1000, len(dataset))
  exp_max = metrics.expected_max_of_random_subset(uniq, budget)[col]
  baseline = metrics.relative_activation(exp_max, best)
  for name, mask in (('output', is_out), ('hidden', ~is_out)):
    if mask.any():
      out[f'm1_{name}'] = {'raw': _summary(rel['rel_raw'][mask]),
                           'photo': _summary(rel['rel_photo'][mask]),
                           f'expected_max_of_{budget}_real': _summary(baseline[mask])}
  arrays: dict[str, Any] = {'rel_raw': rel['rel_raw'], 'rel_photo': rel['rel_photo'],
                            'top_real': metrics.top_k_indices(uniq, 5)[col]}
  if is_out.any():
    labels = np.asarray([r['unit'] for r in rows])[is_out]
    cls_rendered = {k: rendered[k][is_out] for k in ('original', 'photo')}
    out['judge'] = judge_scores(judge, cls_rendered, labels)
    if extra_judges:
      out['extra_judges'] = {k: judge_scores(j, cls_rendered, labels)
                             for k, j in extra_judges.items()}
    feats = features_fn or (lambda rgb: judge_features(judge, rgb))
    real_mask = np.isin(real_for_kid.labels, labels)
    key = ('real_feats', tuple(sorted(set(labels.tolist()))))
    if key not in cache or features_fn is not None:
      cache[key] = feats(real_for_kid.images[real_mask])
    real_feats = cache[key]
    out['kid_fid'] = {}
    for conv in judging.CONVENTIONS:
      syn = feats(cls_rendered[conv])
      out['kid_fid'][conv] = {**metrics.kid(syn, real_feats), 'fid': metrics.fid(syn, real_feats),
                              'n_synthetic': len(syn), 'n_real': int(real_mask.sum())}
      out[f'diversity_judge_features_{conv}'] = metrics.mean_pairwise_distance(syn, labels)
      out[f'diversity_pixels_{conv}'] = metrics.mean_pairwise_distance(
          cls_rendered[conv].astype(np.float32) / 255.0, labels)
    out['checkerboard'] = checkerboard(cls_rendered, real_for_kid.images[real_mask], cache,
                                       key[1])
    codes_fn = lambda rgb, ls: layer_codes(classify, clf_params, rgb, clf_mean, ls)
    out['memorization'], arrays['nearest_train'] = memorization(
        cls_rendered['photo'], labels, train, codes_fn, memo_layers, cache)
  out['wall_s'] = round(time.time() - t0, 1)
  out['_arrays'] = arrays
  return out


def checkerboard(rendered: Mapping[str, np.ndarray], real: np.ndarray, cache: dict,
                 real_key: Any = None) -> dict[str, Any] | None:
  """:func:`metrics.checkerboard_energy` of each convention's images and of the real images of
  the same classes at the upsampling factor of the project's generators (side / 4: they grow a
  4 x 4 map by stride-2 steps), with each ratio to the real images'; None when the images are
  not the real ones' size (Fourier at a real net's resolution) or their side is not a multiple
  of 4 (no such generator)."""
  side = rendered['photo'].shape[1]
  if real.shape[1:3] != (side, side) or side < 8 or side % 4:
    return None
  up = side // 4
  key = ('checker_real', up, real.shape, real_key)  # real_key: which real images (classes)
  if key not in cache or real_key is None:
    cache[key] = metrics.checkerboard_energy(real, up)
  out = {'upsampling': up, 'real': cache[key]}
  for conv in judging.CONVENTIONS:
    e = metrics.checkerboard_energy(rendered[conv], up)
    out[conv] = {'energy': e, 'ratio_to_real': e / cache[key]}
  return out


def judge_features(judge: judging.Judge, rgb: np.ndarray, layer: str | None = None,
                   batch: int = 100) -> np.ndarray:
  """(N, D) flattened ``layer`` blob of the judge (default: its pooled penultimate features,
  ``pool5`` / ``_avg_pooling``) for uint8 RGB images, preprocessed as the judge's logits are."""
  fn = _feature_fn(judge.module, layer or judge.features_layer, judge.space, judge.resize)
  out = [np.asarray(fn(judge.params, rgb[i:i + batch])) for i in range(0, len(rgb), batch)]
  return np.concatenate(out).reshape(len(rgb), -1)


@functools.lru_cache(maxsize=8)
def _feature_fn(module, layer, space, resize):
  return jax.jit(lambda p, x: module.apply({'params': p}, rgb_to_input(x, space, resize)
                                           ).blobs[layer])


def layer_codes(classify, params, rgb: np.ndarray, mean_bgr, layers: Sequence[str],
                batch: int = 500) -> dict[str, np.ndarray]:
  """{layer: (N, D) flattened blob} of the visualized classifier for uint8 RGB images."""
  return dataset_pass(classify, params, rgb, mean_bgr, (), layers, batch=batch)[1]


def memorization(photos: np.ndarray, labels: np.ndarray, train: data.ImageSet,
                 codes_fn=None, layers: Sequence[str] = (), cache: dict | None = None
                 ) -> tuple[dict[str, Any], np.ndarray]:
  """Nearest training image of the same class, relative to real-real nearest neighbours.

  In pixel space, and in each of ``layers``' code space when ``codes_fn(rgb, layers)`` (e.g.
  :func:`layer_codes` bound to the visualized classifier) is given. Returns the summary and the
  pixel-space nearest training index of each photo. ``cache`` (a dict kept across runs of one
  dataset) keeps the training codes and real-real distances, the expensive parts.
  """
  cache = {} if cache is None else cache
  spaces = ['pixels', *layers]
  ratios = {sp: np.zeros(len(photos)) for sp in spaces}
  nearest = np.zeros(len(photos), np.int64)
  refs: dict[str, dict[int, float]] = {sp: {} for sp in spaces}
  for c in dict.fromkeys(labels.tolist()):
    pool_idx = np.flatnonzero(train.labels == c)
    m = labels == c
    feats = {'pixels': (photos[m], train.images[pool_idx])}  # uint8, scaled to 0-1 below
    if layers:
      syn = codes_fn(photos[m], layers)
      key = ('codes', int(c), tuple(layers))
      if key not in cache:
        cache[key] = codes_fn(train.images[pool_idx], layers)
      feats.update({l: (syn[l], cache[key][l]) for l in layers})
    for sp, (q, pool) in feats.items():
      res = metrics.memorization_ratio(q, pool, cache.get(('nn', int(c), sp)),
                                       scale=1 / 255 if sp == 'pixels' else 1.0)
      cache[('nn', int(c), sp)] = res['real_nn_median']
      ratios[sp][m] = res['ratio']
      refs[sp][int(c)] = res['real_nn_median']
      if sp == 'pixels':
        nearest[m] = pool_idx[res['nearest']]
  summary = {'pixel_ratio': _summary(ratios['pixels']),
             'min_ratio': float(ratios['pixels'].min()),
             'share_below_0.5': float((ratios['pixels'] < 0.5).mean()),
             'real_nn_median_per_class': refs['pixels']}
  for l in layers:
    summary[f'{l}_ratio'] = _summary(ratios[l])
    summary[f'{l}_min_ratio'] = float(ratios[l].min())
  return summary, nearest
