"""What every converter command line shares: one clear error line and exit status 1."""

from __future__ import annotations

import sys
from typing import Callable

from dgnam_jax.nets import checkpoint
from dgnam_jax.caffe.netdef import CaffeFormatError

# Errors a user can cause with bad files or flags; anything else is a bug and keeps its traceback.
USER_ERRORS = (CaffeFormatError, checkpoint.CheckpointError, OSError, ValueError, KeyError)


def run(prog: str, action: Callable[[], str]) -> int:
  """Runs ``action``; prints its message, or ``<prog>: error: ...`` on a user error."""
  try:
    message = action()
  except USER_ERRORS as e:
    print(f'{prog}: error: {e}', file=sys.stderr)
    return 1
  print(message)
  return 0
