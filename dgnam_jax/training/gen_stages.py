"""Stages of a generator's training: a light file of G and D to start the next stage from
(:func:`save_stage`, e.g. to carry a run to another machine) and the warm start that reads it
or another run's workdir (:func:`warm_start`)."""

from __future__ import annotations

import functools
import os

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from dgnam_jax import images, training


def _path_key(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)


def save_stage(workdir: str, path: str, g_dtype: str | None = None) -> None:
  """Writes the G and D parameters of ``workdir``'s latest checkpoint to ``path`` (.npz).

  A light ``init_from`` for a next stage on another machine: no optimiser state (a new stage
  starts fresh ones anyway), G optionally rounded to ``g_dtype`` (e.g. 'float16', half the bytes;
  the next stage trains in float32 from there).
  """
  wd = training.Workdir(workdir)
  try:
    step = wd.manager.latest_step()
    if step is None:
      raise ValueError(f'{workdir}: no checkpoint to save a stage from')
    got = wd.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), extra=ocp.args.JsonRestore()))
  finally:
    wd.close()
  flat = {'wall_s': np.float64(got['extra'].get('wall_s', 0.0)), 'step': np.int64(step)}
  for part in ('g', 'd'):
    for kp, leaf in jax.tree_util.tree_flatten_with_path(got['state'][part])[0]:
      leaf = np.asarray(leaf)
      flat[f'{part}/{_path_key(kp)}'] = leaf.astype(g_dtype) if part == 'g' and g_dtype else leaf
  with images.atomic_path(path, '.npz') as tmp:
    with open(tmp, 'wb') as f:  # a file object: np.savez would append '.npz' to a bare name
      np.savez(f, **flat)


def _warm_start_npz(state: dict, init_from: str) -> tuple[dict, float]:
  with np.load(init_from, allow_pickle=False) as flat:

    def take(part, kp, leaf):
      key = f'{part}/{_path_key(kp)}'
      if key not in flat.files or flat[key].shape != leaf.shape:
        raise ValueError(f'--init_from {init_from}: {key} missing or not of shape {leaf.shape}')
      return jnp.asarray(flat[key], leaf.dtype)

    g, d = (jax.tree_util.tree_map_with_path(functools.partial(take, k), state[k])
            for k in ('g', 'd'))
    logging.info('new stage from %s (its step %d)', init_from, int(flat['step']))
    return dict(state, g=g, d=d), float(flat['wall_s'])


def warm_start(state: dict, init_from: str) -> tuple[dict, float]:
  """``state`` with G and D from ``init_from`` (a workdir's latest checkpoint, or a
  :func:`save_stage` file); (state, the earlier stages' wall time)."""
  if init_from.endswith('.npz') and os.path.isfile(init_from):
    return _warm_start_npz(state, init_from)
  if not os.path.isdir(os.path.join(init_from, 'checkpoints')):
    raise ValueError(f'--init_from {init_from}: not a generator training workdir')
  prev_wd = training.Workdir(init_from)
  try:
    prev = prev_wd.restore(jax.eval_shape(lambda: state))
  finally:
    prev_wd.close()
  if prev is None:
    raise ValueError(f'--init_from {init_from}: no checkpoint to start from')
  g, d = (jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), prev[0][k]) for k in ('g', 'd'))
  logging.info('new stage from %s at its step %d', init_from, int(prev[0]['step']))
  # The fresh optimiser states of ``state`` depend on the parameters' shapes only: kept.
  return dict(state, g=g, d=d), float(prev[1].get('wall_s', 0.0))
