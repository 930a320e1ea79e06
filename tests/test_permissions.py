"""Outputs and checkpoints get the user's umask (0644 / 0755 under 022), not the 0600 / 0700 of
temporary files and directories renamed into place."""

import os
import stat

import numpy as np
import pytest

from dgnam_jax import files, images
from dgnam_jax.nets import checkpoint, tiny


@pytest.fixture
def umask_022():
  old = os.umask(0o022)
  images._umask.cache_clear()  # pylint: disable=protected-access
  yield
  os.umask(old)
  images._umask.cache_clear()  # pylint: disable=protected-access


def _mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_files_get_the_umask_mode(tmp_path, umask_022):
  del umask_022
  png = images.save_image(str(tmp_path / 'a.png'), np.zeros((4, 4, 3), np.uint8))
  text = files.atomic_write_text(str(tmp_path / 'm.json'), '{}')
  arr = files.atomic_save_npy(str(tmp_path / 'c.npy'), np.zeros(3))
  assert [_mode(p) for p in (png, text, arr)] == [0o644] * 3


def test_checkpoints_get_the_umask_mode(tmp_path, umask_022):
  del umask_022
  _, _, clf_params = tiny.pipeline()
  path = checkpoint.save(str(tmp_path / 'ckpt'), clf_params, {'kind': 'classifier'})
  assert _mode(path) == 0o755
  for d, dirs, names in os.walk(path):
    assert all(_mode(os.path.join(d, n)) == 0o755 for n in dirs)
    assert all(_mode(os.path.join(d, n)) == 0o644 for n in names)
