"""Everything a sweep decides before it runs: settings, nets, requests, bounds, initial codes.

:func:`plan_sweep` checks every request against the nets and reads every input file, and writes
nothing, so a bad request fails before any work starts and before ``--out`` is touched.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax import files, images
from dgnam_jax.sweeps import codebox, outputs, processes
from dgnam_jax.synthesis import codes, sizing
from dgnam_jax.synthesis.loop import NetParams
from dgnam_jax.synthesis.objectives import make_targets
from dgnam_jax.synthesis import methods as methods_lib
from dgnam_jax.synthesis import objectives as targets
from dgnam_jax.sweeps import requests as units_lib
from dgnam_jax.nets.pipeline import Pipeline, codes_to_caffe
from dgnam_jax.synthesis.objectives import Objective
from dgnam_jax.sweeps.requests import Request
from dgnam_jax.nets.loading import layer_shapes, load_classifier_pipeline, load_pair

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
INITS = ('seeded', 'original', 'image')
CHUNK_TARGET = 64  # default chunk: whole batches, ~64 requests between manifest writes


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """All settings of a sweep (the runner's flags). Defaults are the original CaffeNet run.

  Attributes:
    generator, classifier: checkpoint directories (CHECKPOINTS.md); methods that do not draw
      through a generator need none (None).
    out: output directory (created; a sweep with the same settings there is resumed).
    units: the ``--units`` string (see :mod:`dgnam_jax.sweeps.requests`).
    layer: classifier layer of the units (Caffe's name).
    seeds: seeds per unit (requests are unit-major, seeds inner).
    iters, lr, lr_end, l2: the original's n_iters, start_lr, end_lr, L2 (original.md §2.4).
    bounds: None (the generator checkpoint's bounds), 'none' (no clipping) or an
      ``act_range/*.txt`` / ``.npy`` file of upper bounds (Caffe order).
    bounds_k: std multiplier for a checkpoint storing mean and std (the original's 3x).
    objective: 'logit' (raw layer output, the original's) or 'softmax'.
    minimize: minimise instead of maximise.
    post_relu: read Caffe's blob after in-place layers (conv5 after relu5) instead of the raw
      layer output.
    gamma: blend penalty weight. The paper gives no value; 0.1 keeps the penalty comparable to
      fc8 logits (tens) when they differ by ~10.
    init: 'seeded' (N(0,1) from (seed, unit)), 'original' (act_max.py's np.random start) or
      'image' (the code of ``init_file``).
    init_file: image for ``init='image'``.
    init_codes: .npy of initial codes, one row per request in request order (Caffe order).
    encoder: encoder checkpoint for ``init='image'`` (default: the classifier).
    chunk: requests per resumable chunk (0: a multiple of the batch near 64).
    batch_per_device: rows per device per compiled call, or 'auto' (the largest that fits,
      from the compiled step's memory; a resume keeps the recorded one). A setting a resume
      checks: XLA:CPU rounds a row differently in calls of another shape, and chaotic steps
      make that the whole image (BUILD_NOTES, reproducibility contract).
    slot_keyed: False (default): requests are packed densely by their index in the sweep, the
      fewest batches for any unit list; a request's bits may then depend on its place in the
      list (XLA:CPU). True: its slot follows its (unit, seed), so it gives the same bits alone
      or in any sweep, at up to 2-3x the batches for strided or random lists and several seeds
      (benchmarks/bench_packing.py). Either way results do not depend on chunking, devices or
      processes, and a resume with the other packing is refused.
    dtype: 'float32' or 'bfloat16' compute.
    gif_units: ``--units`` subset whose trajectories are saved as GIFs ('' for none).
    gif_every: iterations between GIF frames.
    gallery_scale: display enlargement in index.html and grid.png.
    method: a registered method (:func:`dgnam_jax.synthesis.methods.names`): 'dgnam' (the
      original), 'dgnam_adam', or a pixel-space baseline ('pixel', 'fourier', ...). ``lr`` is in
      the method's own units (pixels per step, Adam's step size); ``l2``, bounds and ``init``
      apply to methods on generator codes only (a pixel method's decay is its own option).
    method_args: the method's static options, e.g. 'tv=0.1,jitter=2' (fields of its options
      dataclass, e.g. :class:`dgnam_jax.synthesis.methods.PixelOptions`).
  """
  generator: str | None
  classifier: str
  out: str
  units: str
  layer: str = 'fc8'
  seeds: tuple[int, ...] = (0,)
  iters: int = 200
  lr: float = 8.0
  lr_end: float = 1e-10
  l2: float = 0.99
  bounds: str | None = None
  bounds_k: float = 3.0
  objective: str = 'logit'
  minimize: bool = False
  post_relu: bool = False
  gamma: float = 0.1
  init: str = 'seeded'
  init_file: str | None = None
  init_codes: str | None = None
  encoder: str | None = None
  chunk: int = 0
  batch_per_device: int | str = 8
  slot_keyed: bool = False
  dtype: str = 'float32'
  gif_units: str = ''
  gif_every: int = 10
  gallery_scale: int = 2
  method: str = 'dgnam'
  method_args: str = ''

  @property
  def method_spec(self) -> methods_lib.Method:
    """The registered :class:`~dgnam_jax.synthesis.methods.Method` (ValueError if unknown)."""
    return methods_lib.get(self.method)

  @property
  def recipe(self):
    """The method's :class:`~dgnam_jax.synthesis.loop.Recipe` under ``method_args``."""
    return self.method_spec.recipe(self.method_args)


@dataclasses.dataclass
class Plan:
  """A checked sweep, ready to run (see :func:`plan_sweep`)."""
  config: SweepConfig
  out: str
  recipe: Any  # the method's synthesis.loop.Recipe
  pipe: Pipeline
  gen_params: Any
  clf_params: Any
  requests: list[Request]
  objectives: list[Objective]
  gif: list[bool]
  codes0: np.ndarray  # (N, *internal code shape) float32
  lower: np.ndarray
  upper: np.ndarray
  rows: list[dict]  # per request: the manifest row without results
  chunk: int
  settings: dict
  provenance: dict


def _check_config(c: SweepConfig) -> None:
  if c.objective not in targets.OUTPUTS:
    raise ValueError(f'--objective must be one of {targets.OUTPUTS}, not {c.objective!r}')
  if c.init not in INITS:
    raise ValueError(f'--init must be one of {INITS}, not {c.init!r}')
  if c.dtype not in DTYPES:
    raise ValueError(f'--dtype must be one of {tuple(DTYPES)}, not {c.dtype!r}')
  if c.init_codes and c.init != 'seeded':
    raise ValueError('--init_codes replaces --init; do not pass both')
  if (c.init == 'image') != bool(c.init_file):
    raise ValueError('--init=image needs --init_file=IMAGE (and --init_file needs --init=image)')
  if not (c.batch_per_device == 'auto' or (isinstance(c.batch_per_device, int)
                                            and c.batch_per_device >= 1)):
    raise ValueError(f'--batch_per_device must be >= 1 or auto, not {c.batch_per_device!r}')
  for name in ('iters', 'gif_every'):
    if getattr(c, name) < 1:
      raise ValueError(f'--{name} must be >= 1, not {getattr(c, name)}')
  if c.chunk < 0:
    raise ValueError(f'--chunk must be >= 0 (0: automatic), not {c.chunk}')
  for name in ('lr', 'lr_end', 'l2', 'gamma', 'bounds_k'):
    if not np.isfinite(getattr(c, name)):
      raise ValueError(f'--{name} must be finite, not {getattr(c, name)}')
  if os.path.exists(c.out) and not os.path.isdir(c.out):
    raise ValueError(f'--out {c.out} exists and is not a directory')
  if c.method not in methods_lib.names():
    raise ValueError(f'--method must be one of {methods_lib.names()}, not {c.method!r}')
  uses_generator = c.recipe.parameterization.uses_generator  # also checks --method_args
  if not uses_generator and (c.init != 'seeded' or c.init_codes or c.bounds):
    raise ValueError(f'--method={c.method} draws no generator codes: --init, --init_codes and '
                     '--bounds apply to methods on generator codes only')
  if uses_generator and not c.generator:
    raise ValueError(f'--method={c.method} needs --generator')


def _check_requests(requests, objectives, shapes, layer) -> None:
  """Unknown layer, unit or position out of range: one clear error (targets.validate)."""
  if layer not in shapes:
    raise ValueError(f'the classifier has no layer {layer!r}; layers: {", ".join(shapes)}')
  groups: dict[Objective, list[Request]] = {}
  for r, obj in zip(requests, objectives):
    groups.setdefault(obj, []).append(r)
  for obj, rs in groups.items():
    us = [r.unit for r in rs] + [r.blend_unit for r in rs if r.blend]
    ps = [r.position for r in rs] + [r.position for r in rs if r.blend]
    targets.validate(obj, shapes[layer], us, ps)


def _gif_flags(config: SweepConfig, units: Sequence[Request], gif_units: Sequence[Request],
               requests: Sequence[Request]) -> list[bool]:
  """Per request: save its trajectory as a GIF (``gif_units`` must be a subset of ``units``)."""
  if not gif_units:
    return [False] * len(requests)
  if config.gif_every > config.iters:
    raise ValueError(f'--gif_every={config.gif_every} exceeds --iters={config.iters}')
  known = {u.key() for u in units}
  missing = [g.spec() for g in gif_units if g.key() not in known]
  if missing:
    raise ValueError(f'--gif_units must be a subset of --units; not in --units: {missing}')
  wanted = {g.key() for g in gif_units}
  return [dataclasses.replace(r, seed=0).key() in wanted for r in requests]


def _row(config, r: Request, obj: Objective, shape, class_names) -> dict:
  """The manifest row of one request, without results and file paths."""
  name = images.request_name(
      config.layer, r.unit, config.iters, config.l2, config.lr, r.seed, position=r.position,
      channel_mean=r.channel_mean, objective=obj.output, blend_unit=r.blend_unit,
      gamma=config.gamma if r.blend else None, minimize=config.minimize, use_blob=obj.use_blob)
  position = r.position
  if position is None and len(shape) == 4 and not r.channel_mean:
    position = (shape[1] // 2, shape[2] // 2)  # targets._read's centre
  row = {'name': name, 'layer': config.layer, 'unit': r.unit,
         'position': list(position) if position else None, 'kind': obj.kind,
         'objective': obj.output, 'post_relu': obj.use_blob, 'blend_unit': r.blend_unit,
         'gamma': config.gamma if r.blend else None, 'minimize': config.minimize, 'seed': r.seed,
         'iters': config.iters, 'lr': config.lr, 'lr_end': config.lr_end, 'l2': config.l2}
  if class_names and len(shape) == 2 and shape[-1] == len(class_names):
    row['class_name'], row['wnid'] = units_lib.short_class_name(class_names[r.unit])
    if r.blend:
      row['blend_class_name'] = units_lib.short_class_name(class_names[r.blend_unit])[0]
  return row


def _resolve_batch(config: SweepConfig, pipe, gen_params, clf_params, requests, objective
                   ) -> tuple[SweepConfig, dict | None]:
  """``config`` with a number for ``batch_per_device='auto'``, and how it was chosen: the one
  recorded by the sweep being resumed, else the largest that fits (sizing.auto_batch), at most
  this process's share of the requests per device."""
  if config.batch_per_device != 'auto':
    return config, None
  old = outputs.read_manifest(config.out) if os.path.isdir(config.out) else None
  recorded = ((old or {}).get('settings') or {}).get('batch_per_device')
  if recorded:
    return (dataclasses.replace(config, batch_per_device=int(recorded)),
            {'auto': 'the batch of the sweep being resumed'})
  share = processes.current().count * jax.local_device_count()
  r = requests[0]
  row = make_targets([r.unit], [r.position], [r.blend_unit], [r.position], config.minimize,
                     config.gamma)
  found = sizing.auto_batch(config.recipe, pipe, NetParams(gen_params, clf_params), row,
                            objective=objective, iters=config.iters,
                            max_rows=-(-len(requests) // share))
  return dataclasses.replace(config, batch_per_device=found.batch), found.describe()


def default_chunk(batch_per_device: int) -> int:
  """About ``CHUNK_TARGET`` requests in whole batches, at least one call over this process's
  devices. The same for any number of processes, and for a CPU split into one device per core
  (``cli.split_cpu``) unless its batch is large, so a sweep resumes under either."""
  base = -(-CHUNK_TARGET // batch_per_device) * batch_per_device
  return max(base, batch_per_device * jax.local_device_count())


def plan_sweep(config: SweepConfig, argv: Sequence[str] = ()) -> Plan:
  """Checks and prepares a sweep; reads inputs and writes nothing.

  Raises:
    ValueError (or OSError): a bad flag, file or request; or ``config.out`` holds a sweep with
      different settings.
  """
  _check_config(config)
  dtype = DTYPES[config.dtype]
  recipe = config.recipe
  parameterization = recipe.parameterization
  if not parameterization.uses_generator:
    pipe, clf_params, clf_meta = load_classifier_pipeline(config.classifier, dtype)
    gen_params = None
  else:
    pipe, gen_params, clf_params, gen_meta, clf_meta = load_pair(config.generator,
                                                                 config.classifier, dtype)
  unit_list = units_lib.parse_units(units_lib.resolve_wnids(config.units,
                                                            clf_meta.get('class_names')))
  requests = units_lib.with_seeds(unit_list, config.seeds)
  objectives = [units_lib.objective_of(r, config.layer, config.objective, config.post_relu)
                for r in requests]
  shapes = layer_shapes(pipe, clf_params, clf_meta, config.post_relu)
  _check_requests(requests, objectives, shapes, config.layer)
  if not parameterization.uses_generator:
    shape = parameterization.shape(pipe)
    caffe_shape = codes_to_caffe(np.zeros((1,) + shape)).shape[1:]
    lower = np.full(shape, -np.inf, np.float32)  # no code box: the method keeps its own range
    upper = np.full(shape, np.inf, np.float32)
    bounds_desc, enc_dir = {'source': 'n/a (no generator codes)'}, None
    codes0 = parameterization.initial(pipe, [r.seed for r in requests],
                                      [r.unit for r in requests])
    init_desc = {'kind': f'{config.method} start'}
  else:
    caffe_shape = tuple(gen_meta['generator']['code_shape'])
    lower, upper, bounds_desc = codebox.bounds(config, gen_meta, caffe_shape)
    lower, upper = codes.bounds_internal(upper, caffe_shape, lower)
    codes0, init_desc, enc_dir = codebox.initial_codes(config, requests, pipe, clf_params,
                                                       clf_meta, gen_meta, caffe_shape, dtype)
  config, sizing_desc = _resolve_batch(config, pipe, gen_params, clf_params, requests,
                                       objectives[0])
  gif_units = units_lib.parse_units(config.gif_units) if config.gif_units else []
  gif = _gif_flags(config, unit_list, gif_units, requests)
  rows = [_row(config, r, obj, shapes[config.layer], clf_meta.get('class_names'))
          for r, obj in zip(requests, objectives)]
  ckpts = {'classifier': config.classifier}
  if parameterization.uses_generator:
    ckpts['generator'] = config.generator
  if enc_dir and os.path.abspath(enc_dir) != os.path.abspath(config.classifier):
    ckpts['encoder'] = enc_dir
  prov = files.provenance(list(argv), ckpts, config.dtype)
  procs = processes.current()
  prov['execution'] = {'batch_per_device': config.batch_per_device,
                       'out': files.relative_path(config.out), 'processes': procs.count,
                       'local_devices': jax.local_device_count()}
  if sizing_desc:
    prov['execution']['batch_sizing'] = sizing_desc
  chunk = config.chunk or default_chunk(config.batch_per_device)
  settings = {
      'method': config.method, 'method_args': config.method_args,
      'units': [u.spec() for u in unit_list], 'seeds': list(config.seeds),
      'layer': config.layer, 'objective': config.objective, 'minimize': config.minimize,
      'post_relu': config.post_relu, 'gamma': config.gamma, 'iters': config.iters,
      'lr': config.lr, 'lr_end': config.lr_end, 'l2': config.l2, 'dtype': config.dtype,
      'chunk': chunk, 'batch_per_device': config.batch_per_device,
      'packing': 'slot_keyed' if config.slot_keyed else 'dense',
      'code_shape': list(caffe_shape), 'bounds': bounds_desc, 'init': init_desc,
      'gif_units': [u.spec() for u in gif_units],
      'gif_every': config.gif_every if gif_units else None,
      # Content hashes, not paths: a moved checkpoint still resumes, a changed one does not.
      'checkpoints': {role: {k: v for k, v in h.items() if k.endswith('sha256')}
                      for role, h in prov['checkpoints'].items()}}
  settings = json.loads(json.dumps(settings))  # as it reads back from the manifest
  check_resumable(config.out, settings)
  return Plan(config, os.path.abspath(config.out), recipe, pipe, gen_params, clf_params,
              requests, objectives, gif, np.asarray(codes0, np.float32), lower, upper, rows,
              chunk, settings, prov)


def check_resumable(out: str, settings: Mapping[str, Any]) -> None:
  """Raises if ``out`` holds a sweep with other settings (a rerun must not mix two sweeps)."""
  old = outputs.read_manifest(out) if os.path.isdir(out) else None
  if old is None:
    return
  previous = old.get('settings')
  if previous and 'packing' not in previous:  # written before dense packing existed
    previous = dict(previous, packing='slot_keyed')
  if previous and 'batch_per_device' not in previous:
    raise ValueError(f'--out {out} holds a sweep written by an earlier dgnam_jax (its settings '
                     'record no batch_per_device, which now changes results); choose another '
                     '--out')
  if previous != settings:
    keys = sorted(k for k in set(settings) | set(previous or {})
                  if (previous or {}).get(k) != settings.get(k))
    raise ValueError(f'--out {out} holds a sweep with different settings ({", ".join(keys)}); '
                     'rerun with the same flags to resume it, or choose another --out')
