"""What every paper experiment shares: its section record, sweeps, judging, KID and results.

An experiment is a :class:`Section`: the paper's claim and figures, the verdict rule (text, and
the function that applies it, both fixed before the experiment ran), ``run`` (config, context)
-> result dict of plain numbers, and ``describe`` (result, link) -> Markdown, where ``link``
maps a figure's file name to its path relative to the report. ``run`` writes its
figures under ``ctx.figures`` and its sweeps and trainings under ``ctx.runs`` (each resumable:
a rerun of the same command reuses what is finished).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from ml_collections import config_dict

from dgnam_jax import data, files, images
from dgnam_jax.evaluation import judging, metrics
from dgnam_jax.evaluation import scoring
from dgnam_jax.nets.loading import load_pair
from dgnam_jax.sweeps import requests
from dgnam_jax.sweeps.requests import parse_seeds
from dgnam_jax.sweeps import run as sweep_run

VERDICTS = ('holds', 'partly', 'does not hold')
RESULT = 'result.json'


@dataclasses.dataclass(frozen=True)
class Section:
  """One of the paper's experiments (see the module docstring)."""
  number: int
  name: str
  title: str
  figures: str  # the paper's figure numbers
  claim: str
  rule: str  # the verdict rule, as fixed before running
  run: Callable[[Any, 'Context'], dict]
  describe: Callable[[dict, Callable[[str], str]], str]  # (result, figure name -> its link)
  verdict: Callable[[dict], str]


@dataclasses.dataclass
class Context:
  """Where an experiment writes, and the nets and datasets it loaded (loaded once)."""
  runs: str  # sweeps and trainings (resumable; outside git)
  figures: str  # this section's figures (reports/paper/<name>)
  log: Callable[[str], None] = lambda message: None
  _pairs: dict = dataclasses.field(default_factory=dict)
  _judges: dict = dataclasses.field(default_factory=dict)
  _data: dict = dataclasses.field(default_factory=dict)

  def pair(self, generator: str, classifier: str):
    """(pipe, gen_params, clf_params, clf_meta) of a generator/classifier pair, loaded once."""
    key = (generator, classifier)
    if key not in self._pairs:
      pipe, gen_params, clf_params, _, meta = load_pair(generator, classifier)
      self._pairs[key] = (pipe, gen_params, clf_params, meta)
    return self._pairs[key]

  def judge(self, path: str, class_names: Sequence[str] | None) -> judging.Judge:
    """The judge at ``path`` restricted to ``class_names``' task where they are wnids."""
    key = (path, tuple(class_names or ()))
    if key not in self._judges:
      self._judges[key] = judging.task_judge(path, class_names)
    return self._judges[key]

  def dataset(self, path: str, cache_dir: str | None) -> tuple[data.ImageSet, data.ImageSet]:
    """(train, test) of a dataset, decoded once."""
    if path not in self._data:
      self._data[path] = data.load_dataset(path, cache_dir)
    return self._data[path]

  def sweep(self, name: str, preset: str | Mapping[str, Any], **settings) -> dict:
    """Runs (or resumes) the sweep ``<runs>/<name>`` and renders it: ``render_sweep``'s dict
    ({'rows', 'original', 'photo', 'raw'}) plus 'config' (the :class:`SweepConfig`)."""
    out = os.path.join(self.runs, name)
    config = sweep_run.config_with_preset(preset, out=out, **settings)
    t = time.time()
    sweep_run.run_sweep(config)
    self.log(f'sweep {name}: {len(requests.parse_units(config.units)) * len(config.seeds)} '
             f'requests ({time.time() - t:.0f} s)')
    pipe, gen_params, _, meta = self.pair(config.generator, config.classifier)
    rendered = judging.render_sweep(out, pipe, gen_params, meta['mean']['per_channel'])
    return {**rendered, 'config': config}


def normalized(cfg) -> config_dict.ConfigDict:
  """A copy of a section's config with its integer lists parsed at any depth (the configs write
  ``seeds``, ``search_seeds``, ``classes`` and ``units`` as '0-4,7'), no longer type-checked."""
  def parse(values: dict, where: str) -> dict:
    out = {}
    for key, v in values.items():
      if isinstance(v, dict):
        out[key] = parse(v, f'{where}{key}.')
      elif key in ('seeds', 'classes', 'units', 'search_seeds'):
        out[key] = parse_seeds(str(v), f'--config.{where}{key}')
      else:
        out[key] = v
    return out
  return config_dict.ConfigDict(parse(cfg.to_dict(), ''), type_safe=False)


def labels_of(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
  """The class unit of each manifest row."""
  return np.asarray([int(r['unit']) for r in rows])


def judged(judge: judging.Judge, rendered: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """{convention: (N, classes) judge logits} of a rendered sweep's two display conventions."""
  return {c: judge.logits(rendered[c]) for c in judging.CONVENTIONS}


def worse_hits(logits: Mapping[str, np.ndarray], labels: Sequence[int], k: int
               ) -> tuple[np.ndarray, str]:
  """Per-image top-k hits under the display convention that scores worse overall (the
  reports' rule), and that convention's name."""
  hits = {c: judging.topk_hits(v, labels, k) for c, v in logits.items()}
  worst = min(hits, key=lambda c: (hits[c].mean(), c))
  return hits[worst], worst


def kid_to_real(judge: judging.Judge, photos: np.ndarray, real: np.ndarray, seed: int = 0
                ) -> dict[str, float]:
  """KID between synthetic photos and real images in the judge's pooled features."""
  return metrics.kid(scoring.judge_features(judge, photos), scoring.judge_features(judge, real),
                     subsets=50, subset_size=min(100, len(photos), len(real)), seed=seed)


def real_of_classes(images: data.ImageSet, classes: Sequence[int]) -> np.ndarray:
  """The images of ``classes`` (uint8 RGB)."""
  return images.images[np.isin(images.labels, np.asarray(classes))]


def real_of_units(images: data.ImageSet, units: Sequence[int],
                  unit_names: Sequence[str] | None) -> np.ndarray:
  """The images of the classes of classifier ``units``: matched by wnid where both the
  classifier's and the dataset's class names start with one (an ImageNet-1k net's classes among
  Tiny ImageNet's), else the units are the dataset's labels."""
  wnid = lambda name: requests.short_class_name(name)[1]
  if unit_names and all(wnid(n) for n in images.class_names):
    label = {wnid(n): i for i, n in enumerate(images.class_names)}
    missing = [u for u in units if wnid(unit_names[u]) not in label]
    if missing:
      raise ValueError(f'classes {missing} are not in the dataset (no images of their wnids)')
    units = [label[wnid(unit_names[u])] for u in units]
  return real_of_classes(images, units)


def write_result(ctx: Context, result: Mapping[str, Any]) -> str:
  """Writes ``<figures>/result.json`` (atomically)."""
  os.makedirs(ctx.figures, exist_ok=True)
  return files.atomic_write_text(os.path.join(ctx.figures, RESULT),
                                 json.dumps(_jsonable(result), indent=1, sort_keys=True) + '\n')


def read_result(folder: str) -> dict | None:
  """The result a section wrote in ``folder`` (None if it has not run)."""
  path = os.path.join(folder, RESULT)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def figure(ctx: Context, name: str) -> str:
  """The path of a figure file of this section (its folder created)."""
  os.makedirs(ctx.figures, exist_ok=True)
  return os.path.join(ctx.figures, name)


def span(values) -> str:
  """'0-9' for a run of consecutive integers, else them comma-separated."""
  v = [int(x) for x in values]
  if len(v) > 2 and v == list(range(v[0], v[0] + len(v))):
    return f'{v[0]}-{v[-1]}'
  return ', '.join(map(str, v))


def save_grid(ctx: Context, name: str, tiles: Sequence[np.ndarray], labels: Sequence[str],
              cols: int) -> str:
  """A labelled montage as the figure ``name``, tiles enlarged to about 64 px (as the
  evaluation's sheets: 32 px images twice, 64 px ones as they are)."""
  path = figure(ctx, name)
  images.grid(tiles, labels, cols=cols, scale=max(1, 64 // tiles[0].shape[0])).save(path)
  return path


def pct(x: float) -> str:
  return f'{100 * x:.1f} %'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A Markdown table."""
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
  return '\n'.join(lines)


def _jsonable(v):
  if isinstance(v, dict):
    return {str(k): _jsonable(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  if isinstance(v, np.ndarray):
    return _jsonable(v.tolist())
  if isinstance(v, (np.floating, float)):
    return None if not np.isfinite(v) else round(float(v), 6)
  if isinstance(v, np.integer):
    return int(v)
  return v
