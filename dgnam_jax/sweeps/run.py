"""Resumable DGN-AM sweeps: many (unit, seed) requests -> images, codes, manifest, gallery.

A sweep runs its requests in chunks of ``chunk`` requests; chunk k always holds requests
[k*C, (k+1)*C) of the request list, so a rerun cuts them identically. Each chunk's files are
written atomically (temp + rename), then its record (``chunks/chunk_<k>.json``, its rows). On
start, leftover '.tmp-*' files are removed and recorded chunks whose files exist are skipped; the
manifest is written when every chunk is done. So a sweep killed at any moment and restarted with
the same settings, by any number of processes (:mod:`dgnam_jax.sweeps.processes`), ends with
exactly the files (names and bytes) of an uninterrupted run; only the manifest's
``provenance`` differs.

Output layout (relative to ``out``)::

  <request name>.png                 the returned image, the authors' display convention
  gifs/<request name>.gif            trajectories of --gif_units requests
  codes/chunk_<k:05d>_code.npy       (n, *code_shape) codes that drew the images (Caffe order)
  codes/chunk_<k:05d>_final.npy      codes after the last update
  chunks/chunk_<k:05d>.json          the rows of chunk k (what a killed run leaves)
  manifest.json, manifest.csv        one row per request, in request order; settings, provenance
                                     (until the end: the settings alone, claiming --out)
  index.html, grid.png               gallery and montage (written when all chunks are done)

A row's ``activation`` is the objective on the returned image (``activation_init``: on the first
image), without the ``minimize`` sign; for a blend it is a1 + a2 - gamma (a1 - a2)^2. GIF frames
are the cropped G(code) of the initial code and of the code every ``gif_every`` updates.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dgnam_jax import files, images
from dgnam_jax.nets.loading import load_pair
from dgnam_jax.nets.pipeline import codes_to_caffe, to_caffe_space
from dgnam_jax.sweeps import configs, outputs, processes
from dgnam_jax.sweeps.plan import Plan, SweepConfig, default_chunk, plan_sweep
from dgnam_jax.sweeps.requests import Request, parse_units
from dgnam_jax.synthesis import loop, parameterizations, sizing
from dgnam_jax.synthesis import methods as methods_lib
from dgnam_jax.synthesis.objectives import make_targets

# DGN-AM ablations (issue: baselines): DGN-AM sweeps with the preset's settings but one change,
# which the name says.
ABLATIONS: dict[str, dict[str, Any]] = {
    'dgnam_nobounds': dict(method='dgnam', bounds='none'),
    'dgnam_bounds1x': dict(method='dgnam', bounds_k=1.0),
    'dgnam_bounds2x': dict(method='dgnam', bounds_k=2.0),
    'dgnam_bounds3x': dict(method='dgnam', bounds_k=3.0),
}


def config_defaults() -> dict:
  """:class:`SweepConfig`'s default values by field name (the fields that have one)."""
  return {f.name: f.default for f in dataclasses.fields(SweepConfig)
          if f.default is not dataclasses.MISSING}


def preset_settings(preset: str) -> dict:
  """A preset's values (name or config file) over :class:`SweepConfig`'s defaults."""
  return {**config_defaults(), **configs.load(preset)}


def config_with_preset(preset: str | Mapping[str, Any] | None, **explicit) -> SweepConfig:
  """A :class:`SweepConfig` from a preset (a name, a config file, or resolved values, see
  :mod:`dgnam_jax.sweeps.configs`) overridden by explicit settings (None: not given)."""
  if isinstance(preset, str):
    values = configs.load(preset)
  else:
    values = dict(preset or {})
  values.update({k: v for k, v in explicit.items() if v is not None})
  unknown = sorted(set(values) - {f.name for f in dataclasses.fields(SweepConfig)})
  if unknown:
    raise ValueError(f'unknown settings {unknown} (a config names SweepConfig fields)')
  method = methods_lib.get(values.get('method', SweepConfig.method))
  needed = ('units', 'classifier') + (('generator',) if method.uses_generator else ())
  values.setdefault('generator', None)
  for name in needed:
    if values.get(name) is None:
      raise ValueError(f'--{name} is required (or a --preset that names it)')
  return SweepConfig(**values)


@dataclasses.dataclass(frozen=True)
class Progress:
  """Reported to ``run_sweep``'s callback after each batch and each saved chunk (once if
  everything was resumed).

  Attributes:
    done: requests computed (those of skipped chunks included; the running chunk's may not be
      saved yet).
    saved: requests whose files are written (what a rerun would not redo).
    total: requests in the sweep.
    skipped: requests found finished in ``out`` when this run started.
    chunk, chunks: the chunk now running (0-based) and the number of chunks.
  """
  done: int
  total: int
  skipped: int
  chunk: int
  chunks: int
  saved: int = 0


def _chunk_paths(k: int) -> tuple[str, str]:
  return f'codes/chunk_{k:05d}_code.npy', f'codes/chunk_{k:05d}_final.npy'


def _finished_chunks(plan: Plan) -> dict[int, list[dict]]:
  """Rows of chunks a previous run finished (all rows listed, their files present)."""
  done = {}
  for k, rows in outputs.chunk_rows(plan.out).items():
    want = [r['name'] for r in plan.rows[k * plan.chunk:(k + 1) * plan.chunk]]
    paths = [f for r in rows for f in (r['image'], r['code'], r['final_code'], r.get('gif'))
             if f]
    if [r['name'] for r in rows] == want and all(
        os.path.exists(os.path.join(plan.out, f)) for f in paths):
      done[k] = rows
  return done


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
    # Dense packing keys a request's batch slot by its index in the sweep (the fewest calls);
    # slot keying by its unit and seed, so it is reproduced bitwise in any sweep (the loop's
    # determinism note).
    slots = [r.slot_key for r in rs] if c.slot_keyed else rows
    res = loop.run(
        plan.recipe, plan.pipe, loop.NetParams(plan.gen_params, plan.clf_params),
        plan.codes0[rows], tgt, objective=objective,
        hyper=loop.make_hyper(len(rows), c.lr, c.lr_end, c.l2),
        bounds=loop.Bounds.box(plan.lower, plan.upper),
        keys=loop.request_keys([r.seed for r in rs], [r.unit for r in rs]), iters=c.iters,
        batch_per_device=c.batch_per_device, snapshot_every=c.gif_every if gif else 0,
        slot_keys=slots,
        on_batch=lambda m, total, base=done, n=len(js): on_rows(base + n * m // total))
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
                      images.caffe_to_rgb_original(_display(plan, res['images'][j])))
    if plan.gif[i]:
      row['gif'] = f'gifs/{row["name"]}.gif'
      # Frames: the start, then the code every gif_every updates.
      traj = np.concatenate([plan.codes0[i][None], res['snapshots'][j]])
      draw = parameterizations.batch_renderer(plan.recipe.parameterization, plan.pipe)
      frames = np.asarray(draw(plan.gen_params, traj))
      outputs.write_gif(os.path.join(plan.out, row['gif']),
                       [images.caffe_to_rgb_original(_display(plan, f)) for f in frames])
    rows.append(row)
  files.atomic_save_npy(os.path.join(plan.out, code_path), codes_to_caffe(res['codes']))
  files.atomic_save_npy(os.path.join(plan.out, final_path), codes_to_caffe(res['final_codes']))
  return rows


def _display(plan: Plan, x: np.ndarray) -> np.ndarray:
  """A classifier-space image in Caffe's display space (unchanged for Caffe nets)."""
  return to_caffe_space(x, plan.pipe.classifier_space)[0]


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

  Under ``jax.distributed`` (:mod:`dgnam_jax.sweeps.processes`) every process calls this with
  the same config: each runs its share of the missing chunks on its local devices, and process
  0 writes the manifest once all are done.

  Args:
    config: the sweep's settings.
    progress: called with a :class:`Progress` after each batch (the library never prints).
    argv: the command line, recorded in the manifest's provenance.

  Returns:
    The manifest as written ({'rows', 'settings', 'provenance', 'progress'}).

  Raises:
    ValueError (or OSError): a bad setting, file or request, raised before anything is written;
      or the device ran out of memory after a chunk was written (the message says what to do).
  """
  procs = processes.current()
  plan = plan_sweep(config, argv)
  while True:
    try:
      return _run(plan, procs, progress)
    except _FirstChunkOutOfMemory as e:
      plan = _halved(plan, config, argv, e.__cause__)


class _FirstChunkOutOfMemory(Exception):
  """Out of memory before this sweep wrote anything: a smaller batch may start it."""


def _halved(plan: Plan, config: SweepConfig, argv: Sequence[str], error) -> Plan:
  """The plan at half the batch (one warning); the claim of the old batch is withdrawn."""
  b = plan.config.batch_per_device
  if b == 1:
    raise ValueError(f'out of memory with one request per device ({error}); free device memory '
                     'or use a smaller --dtype') from error
  logging.getLogger(__name__).warning(
      'out of memory at --batch_per_device=%d before the first chunk; retrying with %d', b,
      b // 2)
  for name in (outputs.MANIFEST_JSON, outputs.MANIFEST_CSV):
    path = os.path.join(plan.out, name)
    if os.path.exists(path):
      os.remove(path)
  return plan_sweep(dataclasses.replace(config, batch_per_device=b // 2), argv)


def _run(plan: Plan, procs: processes.Processes, progress) -> dict:
  n, size = len(plan.requests), plan.chunk
  chunks = -(-n // size)
  previous = outputs.read_manifest(plan.out) if os.path.isdir(plan.out) else None
  if procs.leader:
    os.makedirs(plan.out, exist_ok=True)
    files.cleanup_temp_files(plan.out)
    if previous is None:  # claims --out for these settings before any result file appears
      outputs.write_manifest(plan.out, [], _meta(plan, None, 0, chunks))
  procs.barrier('dgnam_jax sweep start')  # every process now sees the same finished chunks
  finished = _finished_chunks(plan)
  skipped = sum(len(rows) for rows in finished.values())
  mine = procs.share([k for k in range(chunks) if k not in finished])
  done = skipped
  for k in mine:
    idx = np.arange(k * size, min(n, (k + 1) * size))

    def notify(m: int, k: int = k, base: int = done) -> None:
      if progress:
        progress(Progress(base + m, n, skipped, k, chunks, saved=base))

    try:
      res = _optimize_chunk(plan, idx, notify)
    except Exception as e:  # pylint: disable=broad-except; only out-of-memory is handled
      if not sizing.is_out_of_memory(e):
        raise
      if not finished and k == mine[0] and procs.count == 1:
        raise _FirstChunkOutOfMemory() from e
      b = plan.config.batch_per_device
      when = 'after other chunks were written' if finished else 'in a multi-process run'
      raise ValueError(
          f'out of memory at --batch_per_device={b} in chunk {k} {when} '
          f'({str(e).splitlines()[0]}); the batch is part of this sweep\'s settings: rerun the '
          'same command once the device has more free memory, or start a new --out with '
          f'--batch_per_device={max(1, b // 2)}') from e
    rows = _write_chunk(plan, k, idx, res)
    outputs.write_chunk_record(plan.out, k, rows)
    finished[k] = rows
    done += len(idx)
    if progress:
      progress(Progress(done, n, skipped, k, chunks, saved=done))
  procs.barrier('dgnam_jax sweep end')  # every chunk's record is written
  finished = _finished_chunks(plan)
  rows = [row for j in sorted(finished) for row in finished[j]]
  meta = _meta(plan, previous, len(finished), chunks)
  if procs.leader:
    outputs.write_manifest(plan.out, rows, meta)
    _write_summary(plan, rows)
  if progress and not mine:
    progress(Progress(n, n, skipped, chunks - 1, chunks, saved=n))
  return {'rows': rows, **meta}


def _write_summary(plan: Plan, rows: Sequence[Mapping[str, Any]]) -> None:
  """index.html and grid.png; rewritten by every run from the manifest rows (deterministic)."""
  c = plan.config
  gifs = [{'image': r['gif'], 'name': r['name'], 'label': r['name']} for r in rows
          if r.get('gif')]
  outputs.write_grid_png(plan.out, rows, 'grid.png', scale=c.gallery_scale)
  title = f'{c.method}: {c.layer}, {len(rows)} requests ({c.iters} iterations, lr {c.lr})'
  outputs.write_gallery(plan.out, rows, title=title, scale=c.gallery_scale,
                       extra_sections=[('Trajectories', gifs)] if gifs else None)


__all__ = ['ABLATIONS', 'Plan', 'Progress', 'Request', 'SweepConfig', 'config_with_preset',
           'default_chunk', 'load_pair', 'parse_units', 'plan_sweep', 'run_sweep']
