"""Test-wide set-up: absl flags marked parsed, full float32 precision, fixture paths."""

import os

from absl import flags
import jax
import pytest

jax.config.update('jax_default_matmul_precision', 'highest')
# One XLA:CPU device here and in the runner subprocesses, whose programs then match this
# process's compilation cache; the sweep runners otherwise split the CPU into one device per core
# (cli.split_cpu), which tests/test_processes.py runs on purpose.
if 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_force_host_platform_device_count=1').strip()

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'caffe')


def pytest_configure(config):
  del config
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@pytest.fixture
def fixtures_dir():
  return FIXTURES
