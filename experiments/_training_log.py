"""What the training runners share: their data/workdir/checkpointing flags, a readable absl log
copied into the workdir, and the run skeleton (:func:`run`)."""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import sys
import time
from collections.abc import Callable, Iterator

from absl import app
from absl import flags
from absl import logging

from dgnam_jax import cli

# The repository root (this package's parent folder).
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def portable_path(path: str) -> str:
  """``path`` as provenance records it: relative to the repository root when inside it, else
  relative to the working directory, so that no machine's absolute folders are recorded."""
  full = os.path.abspath(path)
  try:
    base = _REPO if os.path.commonpath([full, _REPO]) == _REPO else os.getcwd()
    return os.path.relpath(full, base).replace(os.sep, '/')
  except ValueError:  # another drive (Windows): keep what was given
    return path


def portable_command(runner: str, args) -> str:
  """The command line, with every absolute path argument (``--flag=/a/b`` or ``/a/b``) made
  :func:`portable_path`."""
  def arg(a: str) -> str:
    flag, eq, value = a.partition('=')
    if eq and flag.startswith('-') and os.path.isabs(value):
      return f'{flag}={portable_path(value)}'
    return portable_path(a) if os.path.isabs(a) else a
  return f'python -m experiments.{runner} ' + ' '.join(arg(a) for a in args)

DATA = flags.DEFINE_string('data', None, 'JPEG-pack .npz or image folder.')
WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs and curves (resumed if it '
                              'holds a run).')
OUT = flags.DEFINE_string('out', None, 'Checkpoint directory of the exported net (must not '
                          'exist); none: no export.', allow_override=True)
CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Decoded-image cache (default '
                                '<workdir>/data_cache).')
IMAGE_SIZE = flags.DEFINE_integer('image_size', None, 'Resize images to this square size '
                                  '(a multiple of 32); default: their own size.')
TEST_FRACTION = flags.DEFINE_float('test_fraction', 0.1, 'Held-out share per class for a '
                                   'plain class folder.')
CKPT_SECS = flags.DEFINE_float('checkpoint_every_secs', 300.0, 'Save at least this often.')
LOG_STEPS = flags.DEFINE_integer('log_every_steps', 50, 'Log the losses this often.')
STOP_AT = flags.DEFINE_integer('stop_at_step', None, 'Save and stop at this step (the schedule '
                               'still spans --epochs; rerun without it to continue).')


class QuietOrbax(std_logging.Filter):
  """Drops Orbax's INFO chatter (dozens of lines per save) so the training log stays readable."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


@contextlib.contextmanager
def training_log(workdir: str, name: str = 'train.log') -> Iterator[str]:
  """Creates ``workdir`` and copies the absl log into ``<workdir>/<name>`` (appending, so
  restarts keep one log) while the block runs; yields the workdir's absolute path."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  logging.get_absl_handler().addFilter(QuietOrbax())
  handler = std_logging.FileHandler(os.path.join(workdir, name))
  handler.setFormatter(logging.PythonFormatter())
  handler.addFilter(QuietOrbax())
  logging.get_absl_logger().addHandler(handler)
  try:
    yield workdir
  finally:
    logging.get_absl_logger().removeHandler(handler)
    handler.close()


def start_run(runner: str, workdir: str, data_path: str, cache_dir: str | None,
              image_size: int | None, test_fraction: float):
  """Logs the command, loads the data (cached under ``cache_dir`` or ``<workdir>/data_cache``).

  Returns:
    (command line, train split, test split).
  """
  from dgnam_jax import data  # pylint: disable=g-import-not-at-top (keeps this module light)
  command = portable_command(runner, sys.argv[1:])
  logging.info('command: %s', command)
  t = time.time()
  cache = cache_dir or os.path.join(workdir, 'data_cache')
  train, test = data.load_dataset(data_path, cache, image_size, test_fraction)
  logging.info('data %s: %d train / %d test images of %s, %d classes (%.1f s)', data_path,
               len(train), len(test), train.images.shape[1:], len(train.class_names),
               time.time() - t)
  return command, train, test


def run(runner: str, argv, train: Callable[..., dict], done_message: Callable[[dict], str]) -> int:
  """The training runners' main: log into the workdir, load the data, train (or resume).

  ``train(command, train_split, test_split, workdir, run_info, **loop_kwargs)`` returns the
  trainer's result dict; ``done_message(result)`` is logged when the schedule has finished.
  """
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  # The runners' convention (dgnam_jax.cli) for errors and Ctrl-C; the progress stays the absl
  # log, which is also the workdir's train.log.
  try:
    return _run(runner, train, done_message)
  except cli.USER_ERRORS as e:
    print(f'{runner}: error: {e}', file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f'\n{runner}: stopped; rerun the same command to resume (from the last checkpoint)',
          file=sys.stderr)
    return cli.INTERRUPTED


def _run(runner: str, train: Callable[..., dict], done_message: Callable[[dict], str]) -> int:
  with training_log(WORKDIR.value) as workdir:
    command, train_split, test_split = start_run(runner, workdir, DATA.value, CACHE_DIR.value,
                                                 IMAGE_SIZE.value, TEST_FRACTION.value)
    run_info = {'data': portable_path(DATA.value), 'command': command}
    result = train(train_split, test_split, workdir, OUT.value, run_info,
                   stop_at_step=STOP_AT.value, checkpoint_every_secs=CKPT_SECS.value,
                   log_every_steps=LOG_STEPS.value)
    if not result['done']:
      logging.info('stopped at step %d; rerun the same command without --stop_at_step to '
                   'continue', result['step'])
    else:
      logging.info('done: %s, wall %.0f s, exported to %s', done_message(result),
                   result['wall_s'], result['out'])
  return 0
