"""Logging shared by the training runners: a readable absl log copied into the workdir."""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
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
