"""One sweep over several processes (multi-GPU hosts, SLURM allocations, TPU pod slices).

JAX's multi-controller runtime (``jax.distributed``) starts the processes together and watches
them; the sweep itself needs no collective: each process runs whole chunks on its own local
devices and writes only their files. Two barriers order the rest: after the start (every process
then sees the same finished chunks and takes its share of the missing ones) and at the end (the
first process then writes the one manifest and the gallery).

A process that dies stops sending heartbeats; the coordination service then ends every other
process within ``heartbeat_s`` seconds (JAX prints "Terminating process because the JAX
distributed service detected fatal errors"). What was written stays: each chunk's files and its
record are written atomically, and a rerun, with any number of processes, completes only the
missing chunks.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import jax

HEARTBEAT_S = 10  # how long a dead process goes unnoticed (JAX's default is 100 s)


@dataclasses.dataclass(frozen=True)
class Processes:
  """This process's place among the processes running one sweep."""
  index: int = 0
  count: int = 1

  @property
  def leader(self) -> bool:
    """The process that writes the sweep's shared files (claim, manifest, gallery)."""
    return self.index == 0

  def share(self, items: Sequence[int]) -> list[int]:
    """This process's part of ``items`` (every process must pass the same list): every
    ``count``-th item, so the parts differ in length by at most one."""
    return list(items)[self.index::self.count]

  def barrier(self, name: str) -> None:
    """Waits until every process reaches the barrier ``name`` (no-op for one process)."""
    if self.count > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(name)


def current() -> Processes:
  """The processes of the running JAX program (one, unless :func:`initialize` joined more)."""
  return Processes(jax.process_index(), jax.process_count())


_ADDRESS = re.compile(r'^[A-Za-z0-9.\-_\[\]:]+:\d{1,5}$')


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False,
               heartbeat_s: int = HEARTBEAT_S, timeout_s: int = 300) -> Processes:
  """Joins ``jax.distributed`` before any JAX computation; returns this process's place.

  Args:
    coordinator: ``HOST:PORT`` of process 0 (which serves the coordination service there).
    num_processes, process_id: how many processes run the sweep, and which one this is.
    auto: let JAX detect all three from the cluster (SLURM, a TPU pod slice, Open MPI, ...).
    heartbeat_s: seconds after which a silent (dead) process ends all the others.
    timeout_s: seconds to wait for every process to join.

  With none of them given, nothing is joined (one process). Raises ValueError on a bad or
  incomplete set of arguments.
  """
  explicit = (coordinator, num_processes, process_id)
  if auto:
    if any(v is not None for v in explicit):
      raise ValueError('--distributed=auto detects --coordinator, --num_processes and '
                       '--process_id from the cluster: pass either auto or all three')
    try:
      jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_s,
                                 initialization_timeout=timeout_s)
    except ValueError as e:
      raise ValueError(f'--distributed=auto found no cluster to join ({e}); pass '
                       '--coordinator, --num_processes and --process_id') from e
    return current()
  if all(v is None for v in explicit):
    return current()
  if any(v is None for v in explicit):
    raise ValueError('a multi-process run needs --coordinator, --num_processes and '
                     '--process_id together')
  if not _ADDRESS.match(coordinator):
    raise ValueError(f'--coordinator={coordinator!r}: expected HOST:PORT (process 0\'s address)')
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f'--process_id={process_id} with --num_processes={num_processes}: expected '
                     f'0 <= process_id < num_processes')
  if num_processes == 1:
    return current()
  jax.distributed.initialize(coordinator, num_processes, process_id,
                             heartbeat_timeout_seconds=heartbeat_s,
                             initialization_timeout=timeout_s)
  return current()
