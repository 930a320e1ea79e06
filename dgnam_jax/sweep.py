"""Resumable DGN-AM sweeps: many (unit, seed) requests -> images, codes, manifest, gallery.

A sweep runs its requests in chunks of ``chunk`` requests; chunk k always holds requests
[k*C, (k+1)*C) of the request list, so a rerun cuts them identically. Each chunk's files are
written atomically (temp + rename), then the manifest is rewritten atomically. On start,
leftover '.tmp-*' files are removed and chunks whose rows are in the manifest are skipped, so a
sweep killed at any moment and restarted with the same settings ends with exactly the files
(names and bytes) of an uninterrupted run; only the manifest's ``provenance`` differs.

Output layout (relative to ``out``)::

  <request name>.png                 the returned image, the authors' display convention
  gifs/<request name>.gif            trajectories of --gif_units requests
  codes/chunk_<k:05d>_code.npy       (n, *code_shape) codes that drew the images (Caffe order)
  codes/chunk_<k:05d>_final.npy      codes after the last update
  manifest.json, manifest.csv        one row per request, in request order; settings, provenance
  index.html, grid.png               gallery and montage (written when all chunks are done)

A row's ``activation`` is the objective on the returned image (``activation_init``: on the first
image), without the ``minimize`` sign; for a blend it is a1 + a2 - gamma (a1 - a2)^2. GIF frames
are the cropped G(code) of the initial code and of the code every ``gif_every`` updates.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from dgnam_jax import images, optimize, pixel, report
from dgnam_jax.pipeline import Pipeline, codes_to_caffe
from dgnam_jax.sweep_plan import Plan, SweepConfig, default_chunk, load_pair, plan_sweep
from dgnam_jax.targets import make_targets
from dgnam_jax.units import Request, parse_units

# The project's committed checkpoints (an editable install or a source checkout).
CHECKPOINTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'checkpoints')
# The original per-net settings (original.md §4); explicit settings override them.
_CAFFENET = dict(layer='fc8', lr=8.0, lr_end=1e-10, iters=200, l2=0.99, bounds_k=3.0)
PRESETS: dict[str, dict[str, Any]] = {
    'caffenet': dict(_CAFFENET, units='643,624,304,629,437'),
    'places205': dict(_CAFFENET, units='2,7,8,12,71'),
    # Example 4: Places205 conv5 channels at the centre of the 13x13 map (xy = 6).
    'places205_conv5': dict(_CAFFENET, layer='conv5', units='8,55,154,181,45'),
    'googlenet': dict(_CAFFENET, layer='loss3/classifier', lr=2.0,
                      units='643,624,304,629,437'),
    # The embedded default (checkpoints/cifar10, trained by this project). Settings: the best
    # trial of the random search recorded in checkpoints/cifar10/MODEL_CARD.md. Batch 10: the
    # 10 classes fill whole calls for any number of seeds (slot_key = unit + 1009 seed,
    # 1009 = 9 mod 10).
    'cifar10': dict(generator=os.path.join(CHECKPOINTS, 'cifar10', 'generator'),
                    classifier=os.path.join(CHECKPOINTS, 'cifar10', 'classifier'),
                    layer='fc8', units='0-9', lr=4.5467, lr_end=1e-10, iters=200, l2=0.995,
                    bounds_k=1.5, batch_per_device=10, gallery_scale=4),
    # The 64 px default (checkpoints/tinyimagenet200): settings from its own search
    # (checkpoints/tinyimagenet200/settings_search.md). Batch 21, coprime with 10: the demo's
    # classes 0, 10, ..., 190 (and the search's 5, 15, ..., 195) fill 20 distinct slots of one
    # call (slot = (unit + 1009 seed) mod batch); with 20 they shared 2 slots, 10 calls.
    'tinyimagenet200': dict(generator=os.path.join(CHECKPOINTS, 'tinyimagenet200', 'generator'),
                            classifier=os.path.join(CHECKPOINTS, 'tinyimagenet200',
                                                    'classifier'),
                            layer='fc8', units='0-199', lr=8.4519, lr_end=1e-10, iters=300,
                            l2=0.99, bounds_k=2.0, batch_per_device=21, gallery_scale=2),
}

# DGN-AM ablations (issue: baselines): DGN-AM sweeps with the preset's settings but one change,
# which the name says.
ABLATIONS: dict[str, dict[str, Any]] = {
    'dgnam_nobounds': dict(method='dgnam', bounds='none'),
    'dgnam_bounds1x': dict(method='dgnam', bounds_k=1.0),
    'dgnam_bounds2x': dict(method='dgnam', bounds_k=2.0),
    'dgnam_bounds3x': dict(method='dgnam', bounds_k=3.0),
}


def config_with_preset(preset: str | None, **explicit) -> SweepConfig:
  """A :class:`SweepConfig` from a preset name (or None) overridden by explicit settings."""
  if preset and preset not in PRESETS:
    raise ValueError(f'unknown preset {preset!r}; valid: {", ".join(PRESETS)}')
  values = dict(PRESETS[preset]) if preset else {}
  values.update({k: v for k, v in explicit.items() if v is not None})
  needed = ('units', 'classifier') + (
      () if values.get('method') in pixel.METHODS else ('generator',))
  values.setdefault('generator', None)
  for name in needed:
    if values.get(name) is None:
      raise ValueError(f'--{name} is required (or a --preset that names it)')
  return SweepConfig(**values)


@dataclasses.dataclass(frozen=True)
class Progress:
  """Reported to ``run_sweep``'s callback after each batch (once if everything was resumed).

  Attributes:
    done: requests finished (those of skipped chunks included).
    total: requests in the sweep.
    skipped: requests found finished in ``out`` when this run started.
    chunk, chunks: the chunk now running (0-based) and the number of chunks.
  """
  done: int
  total: int
  skipped: int
  chunk: int
  chunks: int


def _chunk_paths(k: int) -> tuple[str, str]:
  return f'codes/chunk_{k:05d}_code.npy', f'codes/chunk_{k:05d}_final.npy'


def _finished_chunks(plan: Plan) -> dict[int, list[dict]]:
  """Rows of chunks a previous run finished (all rows listed, their files present)."""
  manifest = report.read_manifest(plan.out) if os.path.isdir(plan.out) else None
  by_chunk: dict[int, list[dict]] = {}
  for row in (manifest or {}).get('rows', []):
    by_chunk.setdefault(int(row['chunk']), []).append(row)
  done = {}
  for k, rows in by_chunk.items():
    want = [r['name'] for r in plan.rows[k * plan.chunk:(k + 1) * plan.chunk]]
    files = [f for r in rows for f in (r['image'], r['code'], r['final_code'], r.get('gif'))
             if f]
    if [r['name'] for r in rows] == want and all(
        os.path.exists(os.path.join(plan.out, f)) for f in files):
      done[k] = rows
  return done


@functools.lru_cache(maxsize=None)
def _renderer(pipe: Pipeline):
  """codes -> cropped generator images (trajectory frames)."""
  return jax.jit(lambda gp, c: jax.vmap(pipe.to_classifier)(pipe.generate(gp, c)))


def _optimize_chunk(plan: Plan, idx: np.ndarray, on_rows: Callable[[int], None]) -> dict:
  """Runs one chunk's requests: one compiled call per (objective, GIF) subgroup, in order."""
  c = plan.config
  groups: dict[tuple, list[int]] = {}
  for j, i in enumerate(idx):
    groups.setdefault((plan.objectives[i], plan.gif[i]), []).append(j)
  merged: dict[str, np.ndarray] = {}
  done = 0
  for (objective, gif), js in groups.items():
    rows = idx[js]
    rs: list[Request] = [plan.requests[i] for i in rows]
    tgt = make_targets([r.unit for r in rs], [r.position for r in rs],
                       [r.blend_unit for r in rs], [r.position for r in rs],
                       c.minimize, c.gamma)
    # A request's batch slot follows its unit and seed, so it is reproduced bitwise in any
    # sweep (optimize_codes' determinism note).
    common = dict(iters=c.iters, batch_per_device=c.batch_per_device,
                  slot_keys=[r.slot_key for r in rs],
                  on_batch=lambda m, total, base=done, n=len(js): on_rows(base + n * m // total))
    if c.pixel_method:
      res = pixel.run_requests(
          c.pixel_method, plan.pipe.classify, plan.clf_params, plan.codes0[rows], tgt,
          objective, lr=c.lr, lr_end=c.lr_end,
          mean_bgr=plan.pipe.classifier_space.mean, seeds=[r.seed for r in rs], **common)
    else:
      res = optimize.optimize_codes(
          plan.pipe, plan.gen_params, plan.clf_params, plan.codes0[rows], tgt,
          optimize.make_hyper(len(rows), c.lr, c.lr_end, c.l2), plan.lower, plan.upper,
          objective=objective, snapshot_every=c.gif_every if gif else 0,
          update='adam' if c.method == 'dgnam_adam' else 'normalized', **common)
    done += len(js)
    for key, value in dataclasses.asdict(res).items():
      if value is None:
        continue
      if key not in merged:
        merged[key] = np.zeros((len(idx),) + value.shape[1:], value.dtype)
      merged[key][js] = value  # only GIF rows ever hold snapshots
  return merged


def _write_chunk(plan: Plan, k: int, idx: np.ndarray, res: Mapping[str, np.ndarray]
                 ) -> list[dict]:
  """Writes a chunk's images, GIFs and code files (each atomically); returns its rows."""
  code_path, final_path = _chunk_paths(k)
  sign = -1.0 if plan.config.minimize else 1.0  # the engine maximises sign * activation
  rows = []
  for j, i in enumerate(idx):
    row = dict(plan.rows[i], activation=sign * float(res['activations'][j]),
               activation_init=sign * float(res['initial_activations'][j]),
               iterations=int(res['iterations'][j]), image=plan.rows[i]['name'] + '.png',
               code=code_path, code_index=j, final_code=final_path, chunk=k, index=int(i))
    images.save_image(os.path.join(plan.out, row['image']),
                      images.caffe_to_rgb_original(res['images'][j]))
    if plan.gif[i]:
      row['gif'] = f'gifs/{row["name"]}.gif'
      # Frames: the start, then the code every gif_every updates.
      traj = np.concatenate([plan.codes0[i][None], res['snapshots'][j]])
      frames = np.asarray(_renderer(plan.pipe)(plan.gen_params, traj))
      report.write_gif(os.path.join(plan.out, row['gif']),
                       [images.caffe_to_rgb_original(f) for f in frames])
    rows.append(row)
  report.atomic_save_npy(os.path.join(plan.out, code_path), codes_to_caffe(res['codes']))
  report.atomic_save_npy(os.path.join(plan.out, final_path), codes_to_caffe(res['final_codes']))
  return rows


def _meta(plan: Plan, previous: Mapping[str, Any] | None, chunks_done: int, chunks: int
          ) -> dict:
  prov = dict(plan.provenance)
  if previous and previous.get('provenance'):
    old = dict(previous['provenance'])
    prov['earlier_runs'] = old.pop('earlier_runs', []) + [old]
  return {'settings': plan.settings, 'provenance': prov,
          'progress': {'requests': len(plan.requests), 'chunks': chunks,
                       'chunks_done': chunks_done, 'complete': chunks_done == chunks}}


def run_sweep(config: SweepConfig, progress: Callable[[Progress], None] | None = None,
              argv: Sequence[str] = ()) -> dict:
  """Runs (or resumes) a sweep; see the module docstring for what it writes.

  Args:
    config: the sweep's settings.
    progress: called with a :class:`Progress` after each batch (the library never prints).
    argv: the command line, recorded in the manifest's provenance.

  Returns:
    The manifest as written ({'rows', 'settings', 'provenance', 'progress'}).

  Raises:
    ValueError (or OSError): a bad setting, file or request, raised before anything is written.
  """
  plan = plan_sweep(config, argv)
  n, size = len(plan.requests), plan.chunk
  chunks = -(-n // size)
  previous = report.read_manifest(plan.out) if os.path.isdir(plan.out) else None
  os.makedirs(plan.out, exist_ok=True)
  report.cleanup_temp_files(plan.out)
  finished = _finished_chunks(plan)
  skipped = sum(len(rows) for rows in finished.values())
  if previous is None:  # claims --out for these settings before any result file appears
    report.write_manifest(plan.out, [], _meta(plan, None, 0, chunks))
  done = skipped
  for k in range(chunks):
    if k in finished:
      continue
    idx = np.arange(k * size, min(n, (k + 1) * size))

    def notify(m: int, k: int = k, base: int = done) -> None:
      if progress:
        progress(Progress(base + m, n, skipped, k, chunks))

    res = _optimize_chunk(plan, idx, notify)
    finished[k] = _write_chunk(plan, k, idx, res)
    done += len(idx)
    rows = [row for j in sorted(finished) for row in finished[j]]
    report.write_manifest(plan.out, rows, _meta(plan, previous, len(finished), chunks))
  rows = [row for j in sorted(finished) for row in finished[j]]
  meta = _meta(plan, previous, chunks, chunks)
  if skipped == n:  # nothing ran: the manifest still records this run's provenance
    report.write_manifest(plan.out, rows, meta)
  _write_summary(plan, rows)
  if progress and skipped == n:
    progress(Progress(n, n, skipped, chunks - 1, chunks))
  return {'rows': rows, **meta}


def _write_summary(plan: Plan, rows: Sequence[Mapping[str, Any]]) -> None:
  """index.html and grid.png; rewritten by every run from the manifest rows (deterministic)."""
  c = plan.config
  gifs = [{'image': r['gif'], 'name': r['name'], 'label': r['name']} for r in rows
          if r.get('gif')]
  report.write_grid_png(plan.out, rows, 'grid.png', scale=c.gallery_scale)
  title = f'DGN-AM: {c.layer}, {len(rows)} requests ({c.iters} iterations, lr {c.lr})'
  report.write_gallery(plan.out, rows, title=title, scale=c.gallery_scale,
                       extra_sections=[('Trajectories', gifs)] if gifs else None)


__all__ = ['PRESETS', 'Plan', 'Progress', 'Request', 'SweepConfig', 'config_with_preset',
           'default_chunk', 'load_pair', 'parse_units', 'plan_sweep', 'run_sweep']
