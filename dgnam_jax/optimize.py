"""DGN-AM: optimise generator codes so that the generated image maximises a classifier unit.

One step is exactly the authors' ``act_max.py`` iteration (``reference/original.md`` §2.4):

1. ``x0 = G(h)``; crop it to the classifier input; ``a`` = the target activation (recorded: the
   image returned is the one drawn in the *last* iteration, before its update).
2. ``g = da/dx``. NaN or zero ``|g|``: no image step. Otherwise the image diff is
   ``lr_i * g / mean|g|`` inside the crop, zero outside.
3. ``gh = J_G^T diff``. NaN or zero ``|gh|``: no code step. Otherwise
   ``h += lr_i * gh / mean|gh|``.
4. ``h = clip(h, lower, upper)``, then ``h *= L2`` when ``0 < L2 < 1``.
5. Stop (that neuron) when either gradient norm was exactly zero.

``lr_i = lr + (lr_end - lr) * i / iters`` for i = 0 .. iters-1 (``lr_end < 0`` means ``lr``).
Everything is per neuron: one neuron's step is written, then ``jax.vmap``-ed, so the mean-|g|
normalisation never mixes neurons.

Determinism. XLA's CPU kernels may round a row differently depending on its *slot* in a batch
(~1e-6, which 200 chaotic steps amplify), though never on the other rows' values. So every
compiled call has the same shape (``batch_per_device`` rows per device, padded), and a request
always runs in the slot given by its key (by default its unit; the sweep uses
``Request.slot_key``, from unit and seed): its result is bitwise the same whatever else ran
with it, whatever the chunking and device count.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from dgnam_jax import targets as targets_lib
from dgnam_jax.pipeline import Pipeline
from dgnam_jax.targets import Objective, Target


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


@dataclasses.dataclass
class OptimizeResult:
  """What :func:`optimize_codes` returns (numpy arrays, one row per request).

  Attributes:
    codes: the code that drew each returned image (the original's last generator input).
    final_codes: the code after the last update (to continue a run).
    images: the returned images, cropped to the classifier input, generator space (Caffe: BGR,
      mean subtracted), (N, H, W, C).
    activations: the target's value on the returned image (the original's ``best_act``).
    initial_activations: the target's value on the first image (iteration 0).
    trajectory: (N, iters) activation at every iteration (repeats the last value after a stop).
    iterations: (N,) number of iterations each neuron ran (< iters after an early stop).
    snapshots: optional (N, iters // snapshot_every, *code) codes every ``snapshot_every`` steps.
  """
  codes: np.ndarray
  final_codes: np.ndarray
  images: np.ndarray
  activations: np.ndarray
  initial_activations: np.ndarray
  trajectory: np.ndarray
  iterations: np.ndarray
  snapshots: np.ndarray | None = None


def normalized(g: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(g / mean|g|, ||g||), with 0 for a NaN or zero gradient (no step, as the original)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(g)))
  ok = jnp.isfinite(norm) & (norm > 0)
  scaled = g / jnp.where(ok, jnp.mean(jnp.abs(g)), 1.0)
  return jnp.where(ok, scaled, 0.0), norm


def _image_gradient(pipe: Pipeline, objective: Objective, gen_params, clf_params, h, target):
  """(activation, its gradient w.r.t. the classifier crop, crop VJP, generator VJP) for ONE h."""
  x0, gen_vjp = jax.vjp(lambda c: pipe.generate(gen_params, c[None])[0], h)
  xc, crop_vjp = jax.vjp(pipe.to_classifier, x0)

  def act_fn(x):
    return targets_lib.activation(pipe.classify(clf_params, x[None]), target, objective)

  act, g = jax.value_and_grad(act_fn)(xc)
  return act, g, crop_vjp, gen_vjp


def _bound_and_decay(h, lower, upper, l2):
  """The original's order: clip to the code bounds, then multiply by the L2 factor (if < 1)."""
  h = jnp.clip(h, lower, upper)
  return jnp.where((l2 > 0) & (l2 < 1), h * l2, h)


def dgnam_step(pipe: Pipeline, objective: Objective, gen_params, clf_params, h: jax.Array,
               target: Target, lr_i: jax.Array, l2: jax.Array, lower: jax.Array,
               upper: jax.Array):
  """One DGN-AM iteration for ONE code ``h`` (no batch axis).

  Returns:
    (new code, activation of the image drawn from ``h``, stop flag).
  """
  act, g, crop_vjp, gen_vjp = _image_gradient(pipe, objective, gen_params, clf_params, h, target)
  step_img, g_norm = normalized(g)
  (diff,) = crop_vjp(lr_i * step_img)  # the original pastes the stepped crop back into x0
  (gh,) = gen_vjp(diff)
  step_h, gh_norm = normalized(gh)
  new_h = _bound_and_decay(h + lr_i * step_h, lower, upper, l2)
  return new_h, act, (g_norm == 0) | (gh_norm == 0)


def dgnam_adam_step(pipe: Pipeline, objective: Objective, gen_params, clf_params, h, target,
                    lr_i, l2, lower, upper, adam):
  """The ablation: Adam on the code's raw gradient instead of the normalized step.

  ``adam`` is (m, v, t); bounds and the L2 factor apply as in :func:`dgnam_step`.
  Returns (new code, activation, stop flag, new adam state).
  """
  act, g, crop_vjp, gen_vjp = _image_gradient(pipe, objective, gen_params, clf_params, h, target)
  (gh,) = gen_vjp(crop_vjp(g)[0])
  m, v, t = adam
  t = t + 1
  m = 0.9 * m + 0.1 * gh
  v = 0.999 * v + 0.001 * gh * gh
  step = (m / (1 - 0.9 ** t)) / (jnp.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
  ok = jnp.all(jnp.isfinite(gh))
  new_h = _bound_and_decay(h + jnp.where(ok, lr_i * step, 0.0), lower, upper, l2)
  return new_h, act, ~ok | (jnp.sum(jnp.square(gh)) == 0), (m, v, t)


def _init_one(h0, iters: int, snapshot_every: int, update: str = 'normalized') -> dict:
  """The loop state of one neuron before iteration 0."""
  carry = dict(h=h0, drawn=h0, act=jnp.zeros((), jnp.float32), active=jnp.ones((), bool),
               count=jnp.zeros((), jnp.int32), traj=jnp.zeros((iters,), jnp.float32))
  if update == 'adam':
    carry['adam'] = (jnp.zeros_like(h0), jnp.zeros_like(h0), jnp.zeros((), jnp.float32))
  if snapshot_every:
    carry['snaps'] = jnp.zeros((iters // snapshot_every,) + h0.shape, h0.dtype)
  return carry


def _advance_one(pipe, objective, iters, snapshot_every, gen_params, clf_params, carry, target,
                 hyper, lower, upper, i):
  """Iteration ``i`` for one neuron; a stopped neuron's state no longer changes."""
  lr_end = jnp.where(hyper.lr_end < 0, hyper.lr, hyper.lr_end)
  lr_i = hyper.lr + (lr_end - hyper.lr) * i.astype(jnp.float32) / iters
  h, active = carry['h'], carry['active']
  out = dict(carry)
  if 'adam' in carry:
    new_h, act, stop, adam = dgnam_adam_step(pipe, objective, gen_params, clf_params, h, target,
                                             lr_i, hyper.l2, lower, upper, carry['adam'])
    out['adam'] = jax.tree.map(lambda a, b: jnp.where(active, a, b), adam, carry['adam'])
  else:
    new_h, act, stop = dgnam_step(pipe, objective, gen_params, clf_params, h, target, lr_i,
                                  hyper.l2, lower, upper)
  out['drawn'] = jnp.where(active, h, carry['drawn'])
  out['act'] = jnp.where(active, act, carry['act'])
  out['h'] = jnp.where(active, new_h, h)
  out['count'] = carry['count'] + active.astype(jnp.int32)
  out['active'] = active & ~stop
  out['traj'] = carry['traj'].at[i].set(out['act'])
  if snapshot_every:
    j = jnp.clip((i + 1) // snapshot_every - 1, 0, carry['snaps'].shape[0] - 1)
    take = (i + 1) % snapshot_every == 0
    out['snaps'] = carry['snaps'].at[j].set(jnp.where(take, out['h'], carry['snaps'][j]))
  return out


def _finish_rows(pipe, gen_params, carry) -> dict:
  """Results of one device's batch: draw the returned images from the codes that drew them."""
  out = dict(codes=carry['drawn'], final_codes=carry['h'], activations=carry['act'],
             initial_activations=carry['traj'][:, 0], trajectory=carry['traj'],
             iterations=carry['count'])
  if 'snaps' in carry:
    out['snapshots'] = carry['snaps']
  out['images'] = jax.vmap(pipe.to_classifier)(pipe.generate(gen_params, carry['drawn']))
  return out


def _step_rows(pipe, objective, iters, snapshot_every, gen_params, clf_params, carry, targets,
               hyper, lower, upper, i):
  """One iteration for every row of a device's batch."""
  one = functools.partial(_advance_one, pipe, objective, iters, snapshot_every, gen_params,
                          clf_params)
  return jax.vmap(one, in_axes=(0, 0, 0, None, None, None))(carry, targets, hyper, lower, upper,
                                                            i)


def _scan_rows(pipe, objective, iters, snapshot_every, update, gen_params, clf_params, codes0,
               targets, hyper, lower, upper):
  """All iterations in one ``lax.scan`` (``loop='scan'``)."""
  carry = jax.vmap(lambda h: _init_one(h, iters, snapshot_every, update))(codes0)
  step = functools.partial(_step_rows, pipe, objective, iters, snapshot_every, gen_params,
                           clf_params)
  carry, _ = jax.lax.scan(lambda c, i: (step(c, targets, hyper, lower, upper, i), None), carry,
                          jnp.arange(iters))
  return _finish_rows(pipe, gen_params, carry)


def _sharded(fn, mesh, in_specs, out_specs):
  if mesh is None:
    return fn
  # check_vma=False: the loop state starts from per-row constants (zeros, True) that are not
  # marked as varying over 'neurons', which the manual-axis type check rejects.
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


@functools.lru_cache(maxsize=None)
def _compiled(pipe, objective, iters, snapshot_every, mesh, loop, update='normalized'):
  """Jitted (init, step, finish) for ``loop='python'``, or one scanned program for 'scan'."""
  rows, rep = P('neurons'), P()
  if loop == 'scan':
    fn = functools.partial(_scan_rows, pipe, objective, iters, snapshot_every, update)
    return jax.jit(_sharded(fn, mesh, (rep, rep, rows, rows, rows, rep, rep), rows))
  init = jax.vmap(lambda h: _init_one(h, iters, snapshot_every, update))
  step = functools.partial(_step_rows, pipe, objective, iters, snapshot_every)
  finish = functools.partial(_finish_rows, pipe)
  return (jax.jit(_sharded(init, mesh, (rows,), rows)),
          jax.jit(_sharded(step, mesh, (rep, rep, rows, rows, rows, rep, rep, rep), rows),
                  donate_argnums=(2,)),
          jax.jit(_sharded(finish, mesh, (rep, rows), rows)))


def _run_batch(compiled, loop, iters, gen_params, clf_params, codes0, targets, hyper, lower,
               upper):
  if loop == 'scan':
    return compiled(gen_params, clf_params, codes0, targets, hyper, lower, upper)
  init, step, finish = compiled
  carry = init(codes0)
  for i in range(iters):  # async dispatch: nothing is read back until the end
    carry = step(gen_params, clf_params, carry, targets, hyper, lower, upper, jnp.int32(i))
  return finish(gen_params, carry)


def default_mesh() -> Mesh | None:
  """A 1-D ('neurons',) mesh over all devices, or None on a single device."""
  if jax.device_count() == 1:
    return None
  # Auto axes: jax.make_mesh defaults to Explicit axes, under which shard_map rejects the
  # unsharded row arrays that optimize_codes passes in.
  return jax.make_mesh((jax.device_count(),), ('neurons',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def _rows(tree, index):
  return jax.tree.map(lambda a: a[index], tree)


def pack_slots(slot_keys: np.ndarray, batch: int, devices: int = 1) -> list[np.ndarray]:
  """Row indices per compiled call (-1: padding): row i always sits at local slot key % batch.

  Each call holds ``devices * batch`` rows (device-major); the local slot, not the device, is what
  decides a row's rounding, so any device may take it.
  """
  slots = np.asarray(slot_keys, np.int64) % batch
  queues = [np.flatnonzero(slots == s) for s in range(batch)]
  calls = -(-max(len(q) for q in queues) // devices)
  out = []
  for c in range(calls):
    idx = np.full((devices, batch), -1, np.int64)
    for s, q in enumerate(queues):
      part = q[c * devices:(c + 1) * devices]
      idx[:len(part), s] = part
    out.append(idx.reshape(-1))
  return out


def optimize_codes(pipe: Pipeline, gen_params, clf_params, codes0, targets: Target,
                   hyper: Hyper, lower, upper, *, objective: Objective, iters: int = 200,
                   batch_per_device: int = 8, mesh: Mesh | None | str = 'auto',
                   snapshot_every: int = 0, slot_keys=None, loop: str = 'python',
                   update: str = 'normalized', on_batch: Callable[[int, int], None] | None = None) -> OptimizeResult:
  """Runs DGN-AM for N requests at once.

  Args:
    pipe: the generator/classifier pair (static).
    gen_params, clf_params: parameter trees (jit arguments, never closed over).
    codes0: (N, *code_shape) initial codes (see :mod:`dgnam_jax.codes`).
    targets: N stacked :class:`Target` rows (see :func:`dgnam_jax.targets.make_targets`).
    hyper: N rows of lr, lr_end, L2 (see :func:`make_hyper`).
    lower, upper: code bounds, broadcastable to ``code_shape`` (use -inf/inf for none).
    objective: static :class:`Objective` (layer, unit kind, logit/softmax, blend).
    iters: number of iterations (static).
    batch_per_device: rows per device per compiled call. Every call has exactly this shape
      (padded), which with ``slot_keys`` makes results independent of N, chunking and devices.
    mesh: 'auto' (all devices), None (one device) or a 1-D Mesh with axis 'neurons'.
    snapshot_every: also return the code every this many iterations (0: no snapshots).
    loop: 'python' (default): one jitted, vmapped iteration called ``iters`` times, carry
      donated; or 'scan': all iterations in one ``lax.scan``. Same results; on XLA:CPU the scan
      ran 2-5x slower at full and embedded size (BUILD_NOTES.md), and compiles far slower.
    update: 'normalized' (the original's step) or 'adam' (the ablation: Adam on the code's raw
      gradient, lr as Adam's step size; bounds and L2 unchanged).
    slot_keys: (N,) ints; row i always runs in batch slot ``slot_keys[i] % batch_per_device``.
      Give equal keys to requests that must reproduce each other bitwise (default: the unit).
    on_batch: called as ``on_batch(rows_done, rows_total)`` after each batch (progress).

  Returns:
    An :class:`OptimizeResult` with numpy arrays of N rows.

  Example:
    >>> result = optimize_codes(pipe, gp, cp, codes0, make_targets([643]), make_hyper(1),
    ...                         0.0, bounds, objective=Objective('fc8'))  # doctest: +SKIP
  """
  if mesh == 'auto':
    mesh = default_mesh()
  elif mesh is not None:
    # shard_map here needs Auto axes; jax.make_mesh defaults to Explicit ones.
    mesh = Mesh(mesh.devices, mesh.axis_names,
                axis_types=(jax.sharding.AxisType.Auto,) * len(mesh.axis_names))
  devices = 1 if mesh is None else mesh.devices.size
  codes0 = jnp.asarray(codes0, jnp.float32)
  n = codes0.shape[0]
  if tuple(codes0.shape[1:]) != tuple(pipe.code_shape):
    raise ValueError(f'codes have shape {codes0.shape[1:]}, the generator takes '
                     f'{pipe.code_shape}')
  if not bool(jnp.isfinite(codes0).all()):
    raise ValueError('initial codes contain NaN or inf')
  lower = jnp.broadcast_to(jnp.asarray(lower, jnp.float32), pipe.code_shape)
  upper = jnp.broadcast_to(jnp.asarray(upper, jnp.float32), pipe.code_shape)
  if loop not in ('python', 'scan'):
    raise ValueError(f"loop must be 'python' or 'scan', not {loop!r}")
  if update not in ('normalized', 'adam'):
    raise ValueError(f"update must be 'normalized' or 'adam', not {update!r}")
  compiled = _compiled(pipe, objective, iters, snapshot_every, mesh, loop, update)
  if slot_keys is None:
    slot_keys = np.asarray(targets.unit)
  merged, done = {}, 0
  for idx in pack_slots(np.asarray(slot_keys), batch_per_device, devices):
    real = idx >= 0
    src = np.where(real, idx, idx[real][0])  # padding repeats a real row; dropped below
    out = _run_batch(compiled, loop, iters, gen_params, clf_params, codes0[src],
                     _rows(targets, src), _rows(hyper, src), lower, upper)
    for key, value in out.items():
      value = np.asarray(value)
      if key not in merged:
        merged[key] = np.zeros((n,) + value.shape[1:], value.dtype)
      merged[key][idx[real]] = value[real]
    done += int(real.sum())
    if on_batch is not None:
      on_batch(done, n)
  return OptimizeResult(**merged)

