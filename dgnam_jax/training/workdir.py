"""Resumable training state on disk, and the run's own settings check.

* :class:`Workdir`: resumable Orbax checkpoints of a training state plus a JSON side item
  (history, wall time) in one step directory, so both always match after a kill.
* :func:`check_run_config`: a restarted run must use the flags it started with.
* :func:`device_description`: where a run trained (for the model card).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

RUN_CONFIG_FILE = 'run_config.json'


class Workdir:
  """Orbax ``CheckpointManager`` over ``<path>/checkpoints`` with items 'state' and 'extra'.

  Saves are synchronous (a save that returned is complete) and atomic (Orbax writes a temporary
  directory and renames it), so a run killed at any moment resumes from the last finished save.
  """

  def __init__(self, path: str, max_to_keep: int = 2):
    self.path = os.path.abspath(path)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(os.path.join(self.path, 'checkpoints'), options=options,
                                         item_names=('state', 'extra'))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, extra: Mapping[str, Any]) -> None:
    """Saves ``state`` (a pytree of arrays) and ``extra`` (JSON) as step ``step``."""
    state = jax.tree.map(np.asarray, state)
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    extra=ocp.args.JsonSave(dict(extra))),
                      force=True)
    self.manager.wait_until_finished()

  def restore(self, target: Any) -> tuple[Any, dict[str, Any]] | None:
    """(state shaped like ``target``, extra) of the latest step, or None if nothing was saved."""
    step = self.manager.latest_step()
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    got = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
    return got['state'], dict(got['extra'])

  def close(self) -> None:
    self.manager.close()


def step_events(step: int, steps_per_epoch: int, total: int, log_every_steps: int
                ) -> tuple[bool, bool]:
  """(log now?, epoch ends?) after ``step`` updates: the trainers' shared cadence (the last step
  of the schedule always ends an epoch, a partial one included)."""
  epoch_end = step % steps_per_epoch == 0 or step == total
  return step % log_every_steps == 0 or epoch_end, epoch_end


def check_run_config(workdir: str, config: Mapping[str, Any],
                     ignore: Sequence[str] = ()) -> None:
  """Writes ``config`` to the workdir, or checks that a restarted run uses the same one.

  Args:
    workdir: the training workdir.
    config: JSON-serialisable settings that determine the run (architecture, data, schedule).
    ignore: keys that may change between restarts (e.g. a stop step or a log interval).

  Raises:
    ValueError: naming the settings that differ from the saved ones.
  """
  path = os.path.join(workdir, RUN_CONFIG_FILE)
  config = json.loads(json.dumps(dict(config)))  # normalise tuples etc. as JSON would
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    diff = sorted(k for k in set(saved) | set(config)
                  if k not in ignore and saved.get(k) != config.get(k))
    if diff:
      raise ValueError(f'{workdir} holds a run with different settings: ' + '; '.join(
          f'{k}: saved {saved.get(k)!r}, now {config.get(k)!r}' for k in diff) +
          '. Resume with the same flags or use a new --workdir.')
    return
  os.makedirs(workdir, exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(config, f, indent=1)
  os.replace(tmp, path)


def device_description() -> str:
  """'cpu x1 (cpu); 2 host CPU cores': where a run trained (for the model card)."""
  d = jax.devices()[0]
  return f'{d.platform} x{jax.device_count()} ({d.device_kind}); {os.cpu_count()} host CPU cores'
