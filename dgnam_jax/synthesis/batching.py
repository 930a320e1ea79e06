"""How requests are batched and placed: fixed-shape slot-keyed calls, device meshes, and each
request's own randomness. Nothing here depends on a method."""

from __future__ import annotations

import enum

import jax
import numpy as np
from jax.sharding import Mesh


class Devices(enum.Enum):
  """``mesh=Devices.ALL``: shard requests over every device (a 1-D 'neurons' mesh)."""
  ALL = 'all'


def sharded(fn, mesh, in_specs, out_specs):
  """``fn`` under ``shard_map`` over ``mesh`` (unchanged when there is no mesh)."""
  if mesh is None:
    return fn
  # check_vma=False: the loop state starts from per-row constants (zeros, True) that are not
  # marked as varying over 'neurons', which the manual-axis type check rejects.
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def default_mesh() -> Mesh | None:
  """A 1-D ('neurons',) mesh over this process's devices, or None on a single device.

  Local devices only: under ``jax.distributed`` every process runs its own requests (the
  sweep's chunks) and no array spans processes."""
  devices = jax.local_devices()
  if len(devices) == 1:
    return None
  # Auto axes: shard_map rejects the unsharded row arrays that run() passes in under the
  # Explicit axes that jax.make_mesh defaults to.
  return Mesh(np.array(devices), ('neurons',), axis_types=(jax.sharding.AxisType.Auto,))


def resolve_mesh(mesh) -> Mesh | None:
  """``Devices.ALL``, None or a Mesh -> the Mesh to shard over (Auto axes), or None."""
  if mesh is Devices.ALL:
    return default_mesh()
  if mesh is None:
    return None
  if not isinstance(mesh, Mesh):
    raise TypeError(f'mesh must be Devices.ALL, None or a jax.sharding.Mesh, not {mesh!r}')
  # shard_map here needs Auto axes; jax.make_mesh defaults to Explicit ones.
  return Mesh(mesh.devices, mesh.axis_names,
              axis_types=(jax.sharding.AxisType.Auto,) * len(mesh.axis_names))


# A request's slot key is unit + SLOT_SEED_STRIDE * seed: consecutive units with a few seeds land
# in distinct slots of the usual power-of-two batches (1009 = 17 mod 32, 49 mod 64).
SLOT_SEED_STRIDE = 1009


def slot_keys_of(units, seeds) -> np.ndarray:
  """The slot keys of (unit, seed) requests (what a sweep uses, so results match a sweep's)."""
  return np.asarray(units, np.int64) + SLOT_SEED_STRIDE * np.asarray(seeds, np.int64)


def least_padding_batch(units, candidates=range(4, 25)) -> int:
  """The batch (rows per call) that computes the fewest rows for these units at seed 0.

  A request's slot is its key mod the batch, so units sharing a residue take separate calls;
  the batch that minimises calls x batch wastes the least (ties: the larger batch)."""
  keys = slot_keys_of(units, [0] * len(units))
  cost = {b: int(np.bincount(keys % b).max()) * b for b in candidates}
  return min(cost, key=lambda b: (cost[b], -b))


def rows_of(tree, index):
  """Rows ``index`` of every leaf."""
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


def request_keys(seeds, units) -> np.ndarray:
  """(N, 2) uint32 key data of each request's randomness (transforms): from (seed, unit) only."""
  keys = [jax.random.key_data(jax.random.fold_in(jax.random.key(int(s) + 7919), int(u)))
          for s, u in zip(seeds, units)]
  return np.stack([np.asarray(k) for k in keys]) if keys else np.zeros((0, 2), np.uint32)
