"""Logging shared by the training runners: a readable absl log copied into the workdir."""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import sys
import time
from collections.abc import Iterator

from absl import logging


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
  command = f'python -m experiments.{runner} ' + ' '.join(sys.argv[1:])
  logging.info('command: %s', command)
  t = time.time()
  cache = cache_dir or os.path.join(workdir, 'data_cache')
  train, test = data.load_dataset(data_path, cache, image_size, test_fraction)
  logging.info('data %s: %d train / %d test images of %s, %d classes (%.1f s)', data_path,
               len(train), len(test), train.images.shape[1:], len(train.class_names),
               time.time() - t)
  return command, train, test
