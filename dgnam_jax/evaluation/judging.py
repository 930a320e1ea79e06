"""Scoring synthesized images: an independent judge's verdict and seed diversity.

A sweep saves each image in the original's display convention (``<name>.png``: clip to
[-120, 120], then stretch min..max). :func:`render_sweep` re-draws every image from the code
saved with it and also returns the photographic convention (generator output + mean, clipped to
0-255), so both can be judged. :func:`judge_logits` classifies uint8 RGB images with any project
classifier checkpoint (the judge must not be the visualized net). All functions are pure apart
from reading files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from dgnam_jax import data, images
from dgnam_jax.sweeps import outputs
from dgnam_jax.nets import checkpoint
from dgnam_jax.synthesis import methods as methods_lib
from dgnam_jax.synthesis import parameterizations
from dgnam_jax.nets.pipeline import (codes_from_caffe, rgb_to_input, space_from_metadata,
                                     to_caffe_space)

CONVENTIONS = ('original', 'photo')


def render_sweep(out_dir: str, pipe, gen_params, mean_bgr: Sequence[float],
                 batch: int = 256) -> dict[str, Any]:
  """Images of a finished sweep under both display conventions.

  Args:
    out_dir: a ``synthesize`` output directory.
    pipe, gen_params: the generator/classifier pair the sweep ran (``nets.loading.load_pair``).
    mean_bgr: the classifier's per-channel mean (the photo convention adds it back).
    batch: saved parameters per rendering call.

  Returns:
    {'rows': manifest rows, 'original': (N, H, W, 3) uint8 as saved, 'photo': (N, H, W, 3)
    uint8, 'raw': (N, H, W, 3) float32 classifier-space images}.
  """
  manifest = outputs.finished_manifest(out_dir)
  rows = manifest['rows']
  cache: dict[str, np.ndarray] = {}
  codes = []
  for row in rows:
    path = os.path.join(out_dir, row['code'])
    if path not in cache:
      cache[path] = np.load(path, allow_pickle=False)
    codes.append(cache[path][row['code_index']])
  codes = codes_from_caffe(np.stack(codes).astype(np.float32))
  settings = manifest['settings']
  method = methods_lib.get(settings.get('method', 'dgnam'))
  draw = parameterizations.batch_renderer(
      method.recipe(settings.get('method_args', '')).parameterization, pipe)
  raw = np.concatenate([np.asarray(draw(gen_params, jnp.asarray(codes[i:i + batch])))
                        for i in range(0, len(codes), batch)])
  saved = []
  for row in rows:
    with Image.open(os.path.join(out_dir, row['image'])) as im:
      saved.append(np.asarray(im.convert('RGB')))
  display, space_mean = to_caffe_space(raw, pipe.classifier_space)
  if display is not raw:  # another space than Caffe's: its own mean, not the given one
    mean_bgr = space_mean
  photo = np.stack([images.caffe_to_rgb_mean(x, mean_bgr) for x in display])
  return {'rows': rows, 'original': np.stack(saved), 'photo': photo, 'raw': raw}


class Judge:
  """A classifier checkpoint used as an independent judge of uint8 RGB images.

  Any classifier checkpoint works: the project's Caffe-space nets (images at the judge's size)
  and imported ImageNet nets (their metadata's preprocessing: resize, scale, logit and feature
  layers). ``classes`` restricts the judge to a task's classes: for class names that start with
  wnids ('n01443537 goldfish'), :meth:`logits` returns only those columns, in ``classes``' order,
  so labels of the task (e.g. Tiny ImageNet's 0..199) index them directly ("200-way").
  """

  def __init__(self, path: str, layer: str | None = None,
               classes: Sequence[str] | None = None):
    self.path = path
    self.module, self.params, self.meta = checkpoint.load_checkpoint(path)
    if self.meta.get('kind') != 'classifier' or not self.meta.get('mean'):
      raise ValueError(f'{path}: a judge must be a classifier checkpoint with a mean')
    pre = self.meta.get('preprocessing') or {}
    self.space = space_from_metadata(self.meta)
    self.mean = np.asarray(self.meta['mean']['per_channel'], np.float32)
    self.size = tuple(self.meta['input_size'])
    self.resize = pre.get('resize')
    self.layer = layer or pre.get('logits_layer', 'fc8')
    self.features_layer = pre.get('features_layer', 'pool5')
    self.class_names = self.meta.get('class_names')
    self.columns = None
    if classes is not None:
      self.restrict(classes)
    self._fn = jax.jit(lambda p, x: self.module.apply({'params': p}, self.prepare(x)
                                                      ).layers[self.layer])

  def restrict(self, classes: Sequence[str]) -> None:
    """From now on :meth:`logits` returns only ``classes``' columns (matched by wnid)."""
    names = self.meta.get('class_names')
    self.columns = np.asarray(class_columns(names, classes, self.path))
    self.class_names = [names[c] for c in self.columns]

  @property
  def description(self) -> str:
    n = len(self.meta.get('class_names') or [])
    if self.columns is None:
      return f'{n}-way'
    return f'{len(self.columns)}-way (its {n} outputs restricted to the task\'s classes by wnid)'

  def prepare(self, rgb) -> jax.Array:
    """uint8 RGB (N, H, W, 3) -> the judge's input (resized where its metadata says so)."""
    return rgb_to_input(rgb, self.space, self.resize)

  def logits(self, rgb: np.ndarray, batch: int = 100) -> np.ndarray:
    """(N, classes) outputs of ``layer`` for (N, H, W, 3) uint8 RGB images (restricted to
    ``classes`` when given)."""
    rgb = np.asarray(rgb)
    if rgb.shape[1:3] != self.size and not self.resize:
      raise ValueError(f'images are {rgb.shape[1:3]}, the judge {self.path} takes {self.size}')
    out = np.concatenate([np.asarray(self._fn(self.params, rgb[i:i + batch]))
                          for i in range(0, len(rgb), batch)])
    return out if self.columns is None else out[:, self.columns]


def task_judge(path: str, task_class_names: Sequence[str] | None) -> Judge:
  """A judge for a task's class labels. When both the judge's and the task's classes are named
  by wnid ('n01443537 goldfish') and differ (an ImageNet-1k judge of Tiny ImageNet's 200
  classes, or the same classes in another order), the judge is restricted to the task's classes
  in the task's order, so the task's labels index its logits; otherwise it is used as it is."""
  judge = Judge(path)
  names = list(judge.class_names or [])
  task = list(task_class_names or [])
  if names and task and names != task and all(_wnid(n) for n in names + task):
    judge.restrict(task)
  return judge


def _wnid(name) -> str | None:
  w = str(name).split()[0] if name else ''
  return w if len(w) == 9 and w[0] == 'n' and w[1:].isdigit() else None


def class_columns(judge_names: Sequence[str] | None, classes: Sequence[str], path: str
                  ) -> list[int]:
  """The judge's output index of each task class, matched by wnid ('n01443537 ...')."""
  index = {_wnid(n): i for i, n in enumerate(judge_names or []) if _wnid(n)}
  out = []
  for c in classes:
    if _wnid(c) not in index:
      raise ValueError(f'judge {path} has no class for {c!r} (classes are matched by wnid)')
    out.append(index[_wnid(c)])
  return out


def topk_hits(logits: np.ndarray, labels: Sequence[int], k: int) -> np.ndarray:
  """(N,) bools: is the label among the k highest logits (ties broken by index)."""
  top = np.argsort(-np.asarray(logits), axis=1, kind='stable')[:, :k]
  return (top == np.asarray(labels)[:, None]).any(axis=1)


def pairwise_mad(imgs: np.ndarray) -> np.ndarray:
  """(n, n) mean absolute difference between uint8 images, in [0, 1] units (255 = 1)."""
  x = np.asarray(imgs, np.float32).reshape(len(imgs), -1) / 255.0
  return np.abs(x[:, None, :] - x[None, :, :]).mean(-1)


def seed_diversity(imgs: np.ndarray, groups: Sequence[Any], threshold: float = 20 / 255
                   ) -> dict[str, Any]:
  """Within each group (a unit's seeds), the share of image pairs that differ by MAD >= threshold.

  Returns:
    {'per_group': {group: share}, 'mean': mean share, 'min': worst group's share,
    'distinct_images': images whose MAD to every other image of their group is >= threshold}.
  """
  groups = np.asarray([str(g) for g in groups])
  per, distinct = {}, 0
  for g in dict.fromkeys(groups):
    idx = np.flatnonzero(groups == g)
    if len(idx) < 2:
      continue
    d = pairwise_mad(imgs[idx])
    iu = np.triu_indices(len(idx), 1)
    per[g] = float((d[iu] >= threshold).mean())
    np.fill_diagonal(d, np.inf)
    distinct += int((d.min(1) >= threshold).sum())
  shares = list(per.values())
  return {'per_group': per, 'mean': float(np.mean(shares)) if shares else float('nan'),
          'min': float(np.min(shares)) if shares else float('nan'), 'distinct_images': distinct,
          'threshold': threshold}


def score_class_images(judge: Judge, rendered: Mapping[str, Any], labels: Sequence[int]
                       ) -> dict[str, Any]:
  """Judge top-1/top-5 under both conventions and seed diversity, for class (fc8) images.

  Args:
    judge: the independent classifier.
    rendered: :func:`render_sweep`'s result.
    labels: the target class of each row.
  """
  labels = np.asarray(labels)
  out: dict[str, Any] = {'images': len(labels)}
  k5 = min(5, len(judge.class_names or []) or 5)
  for conv in CONVENTIONS:
    logits = judge.logits(rendered[conv])
    out[f'top1_{conv}'] = float(topk_hits(logits, labels, 1).mean())
    out[f'top5_{conv}'] = float(topk_hits(logits, labels, k5).mean())
    per_class = {}
    for c in dict.fromkeys(labels.tolist()):
      m = labels == c
      per_class[int(c)] = float(topk_hits(logits[m], labels[m], 1).mean())
    out[f'top1_per_class_{conv}'] = per_class
  for conv in CONVENTIONS:
    out[f'diversity_{conv}'] = seed_diversity(rendered[conv], labels)
  return out
