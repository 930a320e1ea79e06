"""The one optimization loop: parameterization x transformation x objective, many requests at once.

One step for ONE request (then ``jax.vmap``-ed, so no normalization ever mixes requests):

1. ``x = render(p)`` (with its VJP); the classifier sees ``transform(x)``; the value is the
   objective minus the penalties (recorded: its activation part).
2. ``g_x`` = the gradient w.r.t. the image; DGN-AM transforms it first (``image_update``:
   act_max.py's normalized, scheduled image step); then it is pulled back to the parameters.
3. ``updates = update(g_p)`` (an optax transformation), ``p = apply_updates(p, updates)``, then
   the projections (code box, L2 factor, blur ...).
4. :class:`Stop` decides when a request stops (act_max.py: a zero gradient).

Determinism. XLA's CPU kernels may round a row differently depending on its *slot* in a batch
(~1e-6, which 200 chaotic steps amplify), though never on the other rows' values. So every
compiled call has the same shape (``batch_per_device`` rows per device, padded), and a request
always runs in the slot given by its key (the sweep's ``Request.slot_key``, from unit and seed):
its result is bitwise the same whatever else ran with it, whatever the chunking and device count.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, PartitionSpec as P

from dgnam_jax.nets.pipeline import Pipeline
from dgnam_jax.synthesis import objectives, regularizers
from dgnam_jax.synthesis.batching import (Devices, pack_slots, request_keys, resolve_mesh,
                                          rows_of, sharded)
from dgnam_jax.synthesis.objectives import Objective, Target
from dgnam_jax.synthesis.transforms import UpdateRule


class Stop(enum.Enum):
  """When a request stops (its state then no longer changes)."""
  NEVER = 'never'
  ZERO_GRADIENT = 'zero_gradient'  # act_max.py: the image or parameter gradient is exactly 0
  ZERO_OR_NONFINITE = 'zero_or_nonfinite'  # also on a NaN/inf parameter gradient (no step)


class Returns(enum.Enum):
  """Which image a request returns."""
  LAST_DRAWN = 'last_drawn'  # act_max.py: the image of the last iteration, before its update
  FINAL = 'final'  # the image of the parameters after the last update


class Loop(enum.Enum):
  """How iterations run: a jitted step called from Python (carry donated), or one ``lax.scan``.

  Same results; on XLA:CPU the scan ran 2-5x slower at full and embedded size and compiles far
  slower (BUILD_NOTES.md).
  """
  PYTHON = 'python'
  SCAN = 'scan'


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A method's static structure (hashable: it keys the compiled program).

  Attributes:
    parameterization: what is optimized (:mod:`dgnam_jax.synthesis.parameterizations`).
    update: the transformation of the parameter gradient (:class:`UpdateRule`).
    image_update: a transformation of the image gradient before the pull-back (DGN-AM), or None.
    regularizers: transforms, penalties and projections (:mod:`.regularizers`), in order.
    stop: :class:`Stop` rule.
    returns: :class:`Returns` rule.
  """
  parameterization: Any
  update: UpdateRule
  image_update: UpdateRule | None = None
  regularizers: tuple = ()
  stop: Stop = Stop.NEVER
  returns: Returns = Returns.FINAL


@flax.struct.dataclass
class Hyper:
  """Per-request (traced) step settings, each of shape (N,) when batched."""
  lr: jax.Array
  lr_end: jax.Array
  l2: jax.Array


def make_hyper(n: int, lr: float = 8.0, lr_end: float = 1e-10, l2: float = 0.99) -> Hyper:
  """N identical rows of step settings (the defaults are the original's CaffeNet settings)."""
  full = lambda v: jnp.full((n,), v, jnp.float32)
  return Hyper(lr=full(lr), lr_end=full(lr_end), l2=full(l2))


@flax.struct.dataclass
class Bounds:
  """The code box, one typed value (traced; broadcastable to one request's parameters)."""
  lower: jax.Array
  upper: jax.Array

  @classmethod
  def box(cls, lower, upper) -> Bounds:
    """Codes clipped to [lower, upper] (scalars or arrays broadcastable to one code)."""
    return cls(jnp.asarray(lower, jnp.float32), jnp.asarray(upper, jnp.float32))

  @classmethod
  def unbounded(cls) -> Bounds:
    """No clipping."""
    return cls.box(-np.inf, np.inf)


@flax.struct.dataclass
class NetParams:
  """The two parameter trees (jit arguments, never closed over); named so they cannot swap."""
  generator: Any
  classifier: Any


@dataclasses.dataclass
class SynthesisResult:
  """What a run returns (numpy arrays, one row per request).

  Attributes:
    codes: the parameters that drew each returned image (DGN-AM: the original's last
      generator input).
    final_codes: the parameters after the last update (to continue a run).
    images: the returned images in the classifier's space (Caffe: BGR, mean subtracted),
      (N, H, W, C).
    activations: the objective's activation on the returned image.
    initial_activations: the activation at iteration 0.
    trajectory: (N, iters) activation at every iteration (repeats the last value after a stop).
    iterations: (N,) number of iterations each request ran (< iters after a stop).
    snapshots: optional (N, iters // snapshot_every, *shape) parameters every few updates.
  """
  codes: np.ndarray
  final_codes: np.ndarray
  images: np.ndarray
  activations: np.ndarray
  initial_activations: np.ndarray
  trajectory: np.ndarray
  iterations: np.ndarray
  snapshots: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class _Static:
  """Everything static of one compiled program."""
  recipe: Recipe
  pipe: Pipeline
  objective: Objective
  iters: int
  snapshot_every: int


def _init_one(s: _Static, p0, hyper) -> dict:
  """The loop state of one request before iteration 0."""
  r = s.recipe
  carry = dict(p=p0, drawn=p0, act=jnp.zeros((), jnp.float32), active=jnp.ones((), bool),
               count=jnp.zeros((), jnp.int32), traj=jnp.zeros((s.iters,), jnp.float32),
               opt=r.update.make(hyper, s.iters).init(p0))
  if r.image_update is not None:
    carry['img_opt'] = r.image_update.make(hyper, s.iters).init(None)
  if s.snapshot_every:
    carry['snaps'] = jnp.zeros((s.iters // s.snapshot_every,) + p0.shape, p0.dtype)
  return carry


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _norm(a: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(jnp.square(a)))


def _advance_one(s: _Static, params: NetParams, carry, target, hyper, key, bounds, mean, i):
  """Iteration ``i`` for one request; a stopped request's state no longer changes."""
  r = s.recipe
  p, active = carry['p'], carry['active']
  x, pull_back = jax.vjp(lambda q: r.parameterization.render(s.pipe, params.generator, q), p)
  step_key = jax.random.fold_in(jax.random.wrap_key_data(key), i)

  def value(img):
    seen = regularizers.transform(r.regularizers, img, step_key)
    act = objectives.activation(s.pipe.classify(params.classifier, seen[None]), target,
                                s.objective)
    if regularizers.has_penalty(r.regularizers):
      return act - regularizers.penalty(r.regularizers, img), act
    return act, act

  (_, act), g_img = jax.value_and_grad(value, has_aux=True)(x)
  out = dict(carry)
  if r.image_update is not None:
    g_img_step, img_opt = r.image_update.make(hyper, s.iters).update(g_img, carry['img_opt'])
    out['img_opt'] = jax.tree.map(lambda a, b: jnp.where(active, a, b), img_opt,
                                  carry['img_opt'])
  else:
    g_img_step = g_img
  (g_p,) = pull_back(g_img_step)
  updates, opt = r.update.make(hyper, s.iters).update(g_p, carry['opt'], p)
  if r.stop is Stop.ZERO_OR_NONFINITE:
    ok = _all_finite(g_p)
    updates = jax.tree.map(lambda u: jnp.where(ok, u, 0.0), updates)
  ctx = regularizers.Context(hyper=hyper, bounds=bounds, grad=g_p, iteration=i, mean=mean)
  new_p = regularizers.project(r.regularizers, optax.apply_updates(p, updates), ctx)
  if r.stop is Stop.ZERO_GRADIENT:
    stop = (_norm(g_img) == 0) | (_norm(g_p) == 0)
  elif r.stop is Stop.ZERO_OR_NONFINITE:
    stop = ~ok | (jnp.sum(jnp.square(g_p)) == 0)
  else:
    stop = jnp.zeros((), bool)
  out['opt'] = jax.tree.map(lambda a, b: jnp.where(active, a, b), opt, carry['opt'])
  out['drawn'] = jnp.where(active, p, carry['drawn'])
  out['act'] = jnp.where(active, act, carry['act'])
  out['p'] = jnp.where(active, new_p, p)
  out['count'] = carry['count'] + active.astype(jnp.int32)
  out['active'] = active & ~stop
  out['traj'] = carry['traj'].at[i].set(out['act'])
  if s.snapshot_every:
    j = jnp.clip((i + 1) // s.snapshot_every - 1, 0, carry['snaps'].shape[0] - 1)
    take = (i + 1) % s.snapshot_every == 0
    out['snaps'] = carry['snaps'].at[j].set(jnp.where(take, out['p'], carry['snaps'][j]))
  return out


def _finish_rows(s: _Static, params: NetParams, carry, targets) -> dict:
  """Results of one device's batch, drawn from the parameters the method returns."""
  r = s.recipe
  last = r.returns is Returns.LAST_DRAWN
  chosen = carry['drawn'] if last else carry['p']
  images = r.parameterization.render_batch(s.pipe, params.generator, chosen)
  if last:
    acts = carry['act']
  else:
    acts = jax.vmap(lambda v, t: objectives.activation(
        s.pipe.classify(params.classifier, v[None]), t, s.objective))(images, targets)
  out = dict(codes=chosen, final_codes=carry['p'], images=images, activations=acts,
             initial_activations=carry['traj'][:, 0], trajectory=carry['traj'],
             iterations=carry['count'])
  if 'snaps' in carry:
    out['snapshots'] = carry['snaps']
  return out


def _step_rows(s: _Static, params, carry, targets, hyper, keys, bounds, mean, i):
  """One iteration for every row of a device's batch."""
  one = functools.partial(_advance_one, s, params)
  return jax.vmap(one, in_axes=(0, 0, 0, 0, None, None, None))(carry, targets, hyper, keys,
                                                               bounds, mean, i)


def _init_rows(s: _Static, p0, hyper):
  return jax.vmap(functools.partial(_init_one, s))(p0, hyper)


def _scan_rows(s: _Static, params, p0, targets, hyper, keys, bounds, mean):
  """All iterations in one ``lax.scan`` (:attr:`Loop.SCAN`)."""
  carry = _init_rows(s, p0, hyper)
  carry, _ = jax.lax.scan(
      lambda c, i: (_step_rows(s, params, c, targets, hyper, keys, bounds, mean, i), None),
      carry, jnp.arange(s.iters))
  return _finish_rows(s, params, carry, targets)


@functools.lru_cache(maxsize=None)
def _compiled(s: _Static, mesh, loop: Loop):
  """Jitted (init, step, finish) for :attr:`Loop.PYTHON`, or one scanned program."""
  rows, rep = P('neurons'), P()
  if loop is Loop.SCAN:
    fn = functools.partial(_scan_rows, s)
    return jax.jit(sharded(fn, mesh, (rep, rows, rows, rows, rows, rep, rep), rows))
  return (jax.jit(sharded(functools.partial(_init_rows, s), mesh, (rows, rows), rows)),
          jax.jit(sharded(functools.partial(_step_rows, s), mesh,
                           (rep, rows, rows, rows, rows, rep, rep, rep), rows),
                  donate_argnums=(1,)),
          jax.jit(sharded(functools.partial(_finish_rows, s), mesh, (rep, rows, rows), rows)))


def step_program(recipe: Recipe, pipe: Pipeline, objective: Objective, iters: int,
                 snapshot_every: int = 0):
  """The jitted ``(init, step, finish)`` that :func:`run` calls on one device (for sizing: its
  ``step.lower(...)`` has XLA's memory analysis)."""
  return _compiled(_Static(recipe, pipe, objective, iters, snapshot_every), None, Loop.PYTHON)


def _run_batch(compiled, loop, iters, params, p0, targets, hyper, keys, bounds, mean):
  if loop is Loop.SCAN:
    return compiled(params, p0, targets, hyper, keys, bounds, mean)
  init, step, finish = compiled
  carry = init(p0, hyper)
  for i in range(iters):  # async dispatch: nothing is read back until the end
    carry = step(params, carry, targets, hyper, keys, bounds, mean, jnp.int32(i))
  return finish(params, carry, targets)


@functools.lru_cache(maxsize=None)
def request_step(recipe: Recipe, pipe: Pipeline, objective: Objective, iters: int):
  """Jitted ``(init, step)`` for ONE request without a batch axis: what per-neuron code runs.

  ``state = init(p0, hyper_row)``; ``state = step(params, state, target_row, hyper_row, key,
  bounds, i)`` for ``i`` in ``range(iters)``; ``state['p']`` holds the parameters. The same
  per-request step that :func:`run` vmaps (benchmarks compare the two).
  """
  s = _Static(recipe, pipe, objective, iters, 0)
  mean = jnp.asarray(pipe.classifier_space.mean, jnp.float32)
  init = jax.jit(functools.partial(_init_one, s))
  step = jax.jit(lambda params, state, target, hyper, key, bounds, i: _advance_one(
      s, params, state, target, hyper, key, bounds, mean, i), donate_argnums=(1,))
  return init, step


def run(recipe: Recipe, pipe: Pipeline, params: NetParams, init, targets: Target, *,
        objective: Objective, hyper: Hyper, bounds: Bounds | None = None,
        keys: np.ndarray | None = None, iters: int = 200, batch_per_device: int = 8,
        mesh: Mesh | Devices | None = Devices.ALL, snapshot_every: int = 0, slot_keys=None,
        loop: Loop = Loop.PYTHON, on_batch: Callable[[int, int], None] | None = None
        ) -> SynthesisResult:
  """Runs one method's loop for N requests in fixed-shape, slot-keyed batches.

  Args:
    recipe: the method's structure (:func:`dgnam_jax.synthesis.methods.get` builds it).
    pipe: the generator/classifier pair (static; no generator for pixel methods).
    params: :class:`NetParams` (jit arguments).
    init: (N, *shape) starting parameters.
    targets: N stacked :class:`Target` rows.
    objective: the static :class:`Objective`.
    hyper: N rows of settings (:func:`make_hyper`).
    bounds: the code box (default: unbounded).
    keys: (N, 2) uint32 randomness per request (default: :func:`request_keys` of seed 0).
    iters: number of iterations (static).
    batch_per_device: rows per device per compiled call.
    mesh: :attr:`Devices.ALL`, None (one device) or a 1-D Mesh with axis 'neurons'.
    snapshot_every: also return the parameters every this many updates (0: none).
    slot_keys: (N,) ints; row i runs in slot ``slot_keys[i] % batch_per_device`` (default: unit).
    loop: :class:`Loop`.
    on_batch: called as ``on_batch(rows_done, rows_total)`` after each batch.
  """
  mesh = resolve_mesh(mesh)
  if not isinstance(loop, Loop):
    raise TypeError(f'loop must be a Loop, not {loop!r}')
  devices = 1 if mesh is None else mesh.devices.size
  init = jnp.asarray(init, jnp.float32)
  n = init.shape[0]
  shape = recipe.parameterization.shape(pipe)
  if tuple(init.shape[1:]) != tuple(shape):
    raise ValueError(f'initial parameters have shape {init.shape[1:]}; the parameterization '
                     f'takes {tuple(shape)}')
  if not bool(jnp.isfinite(init).all()):
    raise ValueError('initial parameters contain NaN or inf')
  bounds = Bounds.unbounded() if bounds is None else bounds
  bounds = Bounds(jnp.broadcast_to(jnp.asarray(bounds.lower, jnp.float32), shape),
                  jnp.broadcast_to(jnp.asarray(bounds.upper, jnp.float32), shape))
  targets_unit = np.asarray(targets.unit)
  keys = request_keys(np.zeros(n, np.int64), targets_unit) if keys is None else keys
  keys = jnp.asarray(np.asarray(keys, np.uint32))
  mean = jnp.asarray(pipe.classifier_space.mean, jnp.float32)
  static = _Static(recipe, pipe, objective, iters, snapshot_every)
  compiled = _compiled(static, mesh, loop)
  slot_keys = targets_unit if slot_keys is None else np.asarray(slot_keys)
  merged, done = {}, 0
  for idx in pack_slots(slot_keys, batch_per_device, devices):
    real = idx >= 0
    src = np.where(real, idx, idx[real][0])  # padding repeats a real row; dropped below
    out = _run_batch(compiled, loop, iters, params, init[src], rows_of(targets, src),
                     rows_of(hyper, src), keys[src], bounds, mean)
    for key, value in out.items():
      value = np.asarray(value)
      if key not in merged:
        merged[key] = np.zeros((n,) + value.shape[1:], value.dtype)
      merged[key][idx[real]] = value[real]
    done += int(real.sum())
    if on_batch is not None:
      on_batch(done, n)
  return SynthesisResult(**merged)
