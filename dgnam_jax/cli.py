"""Conventions every command-line runner shares (``experiments/``, ``converters/``).

The library never prints; runners do, through these helpers, one way for all:

* default verbosity: the runner's own progress lines (done/total, rate, time left, at most every
  ``PROGRESS_EVERY_S`` seconds), warnings and errors; library INFO (absl, Orbax, JAX) hidden;
* ``--verbosity=-1``: warnings and errors only; ``--verbosity=1``: library INFO as well;
* a user error (bad flag or file) is one ``<prog>: error: ...`` line and exit status 1;
* Ctrl-C stops with ``<prog>: stopped; rerun the same command to resume`` and exit status 130.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
import time
from collections.abc import Callable

from absl import flags
from absl import logging

from dgnam_jax.caffe.netdef import CaffeFormatError
from dgnam_jax.nets.checkpoint import CheckpointError

PROGRESS_EVERY_S = 2.0
# Errors a user can cause with bad files or flags; anything else is a bug and keeps its traceback.
USER_ERRORS = (CaffeFormatError, CheckpointError, OSError, ValueError, KeyError)
INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT


def verbosity() -> int:
  """-1 (quiet), 0 (default) or 1 (library INFO), from absl's ``--verbosity``."""
  f = flags.FLAGS['verbosity']
  if not f.present:
    return 0
  return max(-1, min(1, int(f.value)))


def set_up_logging() -> None:
  """Library INFO only with ``--verbosity=1``: absl's handler and Python logging at WARNING."""
  level = std_logging.INFO if verbosity() >= 1 else std_logging.WARNING
  logging.set_verbosity(logging.INFO if verbosity() >= 1 else logging.WARNING)
  for name in ('jax', 'jax._src.xla_bridge', 'orbax', 'absl'):
    std_logging.getLogger(name).setLevel(level)


def say(prog: str, message: str) -> None:
  """A progress line on stderr (not with ``--verbosity=-1``)."""
  if verbosity() >= 0:
    print(f'{prog}: {message}', file=sys.stderr, flush=True)


class Progress:
  """Rate-limited 'done/total, rate, time left' lines for work measured in items."""

  def __init__(self, prog: str, unit: str = 'items'):
    self.prog, self.unit = prog, unit
    self.start = time.monotonic()
    self.last = -PROGRESS_EVERY_S

  def __call__(self, done: int, total: int, skipped: int = 0, prefix: str = '',
               saved: int | None = None) -> None:
    """``done`` of ``total`` items (``skipped`` of them done before this run); ``saved``: how
    many are on disk when that differs from ``done`` (a rerun would redo the rest)."""
    now = time.monotonic()
    if now - self.last < PROGRESS_EVERY_S and done < total:
      return
    self.last = now
    if done == skipped:  # nothing ran yet (or nothing was left to run)
      state = ('all done before this run' if done == total else
               f'{skipped} done before this run, starting')
      say(self.prog, f'{prefix}{done}/{total} {self.unit} ({state})')
      return
    rate = (done - skipped) / max(now - self.start, 1e-9)
    left = (total - done) / rate
    resumed = f', {skipped} resumed' if skipped else ''
    kept = f' ({saved} saved)' if saved is not None and saved != done else ''
    say(self.prog, f'{prefix}{done}/{total} {self.unit}{kept}{resumed}, {rate:.2f} '
        f'{self.unit}/s, ~{left:.0f} s left')


def run(prog: str, action: Callable[[], str | None], resumable: bool = True) -> int:
  """Runs ``action`` with the conventions above; prints its returned message on stdout.

  Returns:
    The exit status: 0, 1 for a user error, 130 after Ctrl-C.
  """
  set_up_logging()
  try:
    message = action()
  except USER_ERRORS as e:
    print(f'{prog}: error: {e}', file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    hint = '; rerun the same command to resume' if resumable else ''
    print(f'\n{prog}: stopped{hint}', file=sys.stderr)
    return INTERRUPTED
  if message:
    print(message)
  return 0


def absl_main(prog: str, action: Callable[[], str | None], resumable: bool = True
              ) -> Callable[[list[str]], int]:
  """The ``main(argv)`` of a runner that takes no positional arguments: :func:`run` on ``action``.

  Use as ``main = cli.absl_main('prog', _run)`` and ``app.run(lambda a: sys.exit(main(a)))``.
  """
  def main(argv) -> int:
    if len(argv) > 1:
      from absl import app  # noqa: PLC0415 (only runners need it)
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    return run(prog, action, resumable)
  return main


def split_cpu(devices: int = 0) -> int:
  """Makes XLA:CPU expose ``devices`` devices (0: one per core this process may use) by setting
  ``XLA_FLAGS`` before JAX starts; returns the count asked for (1: unchanged).

  Sweeps shard their rows over the devices, and two devices that each run half the rows keep
  both cores busy where one device's small convolutions leave a core idle: +64 % on the CIFAR-10
  pair, +33 % on the Tiny ImageNet preset, about the same at full size (BUILD_NOTES, issue 22).
  Results are bitwise the same (a row's rounding follows its slot, not its device). No effect
  when XLA_FLAGS already sets the count, once JAX has started, or on accelerators.
  """
  current = os.environ.get('XLA_FLAGS', '')
  count = devices or len(os.sched_getaffinity(0))
  if count > 1 and 'xla_force_host_platform_device_count' not in current:
    os.environ['XLA_FLAGS'] = f'{current} --xla_force_host_platform_device_count={count}'.strip()
  return count


def machine() -> str:
  """What a run ran on, for wall-time tables: 'N-core CPU' or 'K x <device kind>'."""
  import jax  # noqa: PLC0415 (runners without jax import cli too)
  dev = jax.devices()[0]
  return (f'{len(os.sched_getaffinity(0))}-core CPU' if dev.platform == 'cpu'
          else f'{jax.device_count()} x {dev.device_kind}')
