"""Test-wide set-up: absl flags marked parsed, full float32 precision, fixture paths."""

import os

from absl import flags
import jax
import pytest

jax.config.update('jax_default_matmul_precision', 'highest')

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'caffe')


def pytest_configure(config):
  del config
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@pytest.fixture
def fixtures_dir():
  return FIXTURES
