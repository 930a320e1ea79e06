"""The two public entry points: :func:`synthesize` (any registered method) and
:func:`optimize_codes` (DGN-AM on generator codes, the paper's algorithm)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from jax.sharding import Mesh

from dgnam_jax.nets.pipeline import Pipeline
from dgnam_jax.synthesis import methods as methods_lib
from dgnam_jax.synthesis.batching import slot_keys_of
from dgnam_jax.synthesis.loop import (Bounds, Devices, Hyper, Loop, NetParams, SynthesisResult,
                                      make_hyper, request_keys, run)
from dgnam_jax.synthesis.objectives import Objective, Target
from dgnam_jax.synthesis.transforms import NORMALIZED, UpdateRule


def synthesize(method: str | methods_lib.Method, pipe: Pipeline, params: NetParams, init,
               targets: Target, *, objective: Objective, hyper: Hyper | None = None,
               bounds: Bounds | None = None, method_args: str = '',
               seeds: Sequence[int] | None = None, iters: int = 200,
               batch_per_device: int = 8, mesh: Mesh | Devices | None = Devices.ALL,
               snapshot_every: int = 0, slot_keys=None, loop: Loop = Loop.PYTHON,
               on_batch: Callable[[int, int], None] | None = None) -> SynthesisResult:
  """Runs a registered method (``'dgnam'``, ``'fourier'``, ...) for N requests at once.

  Args:
    method: a name of :func:`dgnam_jax.synthesis.methods.names` or a :class:`Method`.
    pipe, params: the nets (:func:`dgnam_jax.nets.loading.load_pair`) and their parameters.
    init: (N, *shape) starts (:func:`dgnam_jax.synthesis.methods.initial_state`).
    targets: N stacked targets (:func:`dgnam_jax.synthesis.objectives.make_targets`).
    objective: the static objective.
    hyper: N rows of lr, lr_end, L2 (default: :func:`make_hyper`'s).
    bounds: the code box for generator methods (default: none).
    method_args: static options, e.g. ``'tv=0.1,jitter=2'``.
    seeds: per-request seeds of the random transforms (default 0); with ``slot_keys`` unset,
      requests run in the slots a sweep gives them (unit + 1009 seed), so results are the
      sweep's bit for bit.
    iters, batch_per_device, mesh, snapshot_every, slot_keys, loop, on_batch: as
      :func:`dgnam_jax.synthesis.loop.run`.
  """
  method = methods_lib.get(method) if isinstance(method, str) else method
  n = len(init)
  seeds = np.zeros(n, np.int64) if seeds is None else np.asarray(seeds, np.int64)
  return run(method.recipe(method_args), pipe, params, init, targets, objective=objective,
             hyper=make_hyper(n) if hyper is None else hyper, bounds=bounds,
             keys=request_keys(seeds, np.asarray(targets.unit)), iters=iters,
             batch_per_device=batch_per_device, mesh=mesh, snapshot_every=snapshot_every,
             slot_keys=(slot_keys_of(np.asarray(targets.unit), seeds) if slot_keys is None
                        else slot_keys), loop=loop, on_batch=on_batch)


def optimize_codes(pipe: Pipeline, params: NetParams, codes0, targets: Target, *,
                   objective: Objective, hyper: Hyper | None = None,
                   bounds: Bounds | None = None, update: UpdateRule = NORMALIZED,
                   iters: int = 200, batch_per_device: int = 8,
                   mesh: Mesh | Devices | None = Devices.ALL, snapshot_every: int = 0,
                   slot_keys=None, loop: Loop = Loop.PYTHON,
                   on_batch: Callable[[int, int], None] | None = None) -> SynthesisResult:
  """DGN-AM for N requests at once: optimize generator codes so G(code) excites each target.

  Args:
    pipe: the generator/classifier pair (static).
    params: ``NetParams(generator=..., classifier=...)`` (jit arguments, never closed over).
    codes0: (N, *code_shape) initial codes (see :mod:`dgnam_jax.synthesis.codes`).
    targets: N stacked targets (:func:`dgnam_jax.synthesis.objectives.make_targets`).
    objective: the static objective (layer, unit kind, logit/softmax, blend).
    hyper: N rows of lr, lr_end, L2 (default: the original's CaffeNet settings).
    bounds: the code box, ``Bounds.box(lower, upper)`` (default: unbounded).
    update: the code update: :data:`~dgnam_jax.synthesis.transforms.NORMALIZED` (act_max.py)
      or any :class:`UpdateRule`, e.g. ``ADAM`` (the ablation: the rule on the code's raw
      gradient; box and L2 unchanged).
    iters: number of iterations (static).
    batch_per_device: rows per device per compiled call. Every call has exactly this shape
      (padded), which with ``slot_keys`` makes results independent of N, chunking and devices.
    mesh: ``Devices.ALL`` (shard over every device), None (one device) or a 1-D Mesh with axis
      'neurons'.
    snapshot_every: also return the code every this many iterations (0: no snapshots).
    slot_keys: (N,) ints; row i always runs in batch slot ``slot_keys[i] % batch_per_device``.
      Give equal keys to requests that must reproduce each other bitwise (default: the unit).
    loop: ``Loop.PYTHON`` (a jitted step called ``iters`` times) or ``Loop.SCAN``.
    on_batch: called as ``on_batch(rows_done, rows_total)`` after each batch (progress).

  Returns:
    A :class:`SynthesisResult` with numpy arrays of N rows.

  Example (the tiny stand-in nets of :mod:`dgnam_jax.nets.tiny`, random weights):

    >>> import numpy as np
    >>> from dgnam_jax import Bounds, NetParams, Objective, make_targets, optimize_codes
    >>> from dgnam_jax.nets import tiny
    >>> pipe, gen_params, clf_params = tiny.pipeline()
    >>> codes0 = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)
    >>> result = optimize_codes(pipe, NetParams(gen_params, clf_params), codes0,
    ...                         make_targets([3, 7]), objective=Objective('fc8'),
    ...                         bounds=Bounds.box(0.0, 30.0), iters=5)
    >>> result.images.shape, bool((result.activations > result.initial_activations).all())
    ((2, 14, 14, 3), True)
  """
  recipe = methods_lib.dgnam_recipe()
  if update != NORMALIZED:
    recipe = dataclasses.replace(methods_lib.dgnam_adam_recipe(), update=update)
  n = len(codes0)
  return run(recipe, pipe, params, codes0, targets, objective=objective,
             hyper=make_hyper(n) if hyper is None else hyper, bounds=bounds, iters=iters,
             batch_per_device=batch_per_device, mesh=mesh, snapshot_every=snapshot_every,
             slot_keys=slot_keys, loop=loop, on_batch=on_batch)
