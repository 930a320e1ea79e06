"""Slow: the imported EfficientNet-Lite1/2 against the PyTorch reference with the same weights.

Needs the ``imagenet`` and ``parity`` extras (``make test-slow`` installs them) and the Tiny
ImageNet pack in ``../shared/data``. 64 real val photos, resized to the net's input and
preprocessed once; both frameworks get the same float32 arrays.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from dgnam_jax import data
from dgnam_jax.nets import checkpoint, from_torch
from dgnam_jax.nets.pipeline import rgb_to_input, space_from_metadata

DATA = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data',
                    'tinyimagenet200_jpeg.npz')
TORCH_NAMES = {'efficientnet_lite1': 'efficientnet-lite1', 'efficientnet_lite2': 'efficientnet-lite2'}


@pytest.mark.slow
@pytest.mark.parametrize('net', sorted(TORCH_NAMES))
def test_logits_match_pytorch_on_real_photos(net):
  import torch  # pylint: disable=import-outside-toplevel (the parity extra; make test-slow)
  from efficientnet_lite_pytorch import EfficientNet  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  val = data.load_npz(DATA, 'val')
  rgb = val.images[::len(val.images) // 64][:64]
  module, params, meta = checkpoint.load_checkpoint(from_torch.cached_checkpoint(net))
  x = np.asarray(rgb_to_input(rgb, space_from_metadata(meta), meta['preprocessing']['resize']))
  ours = np.asarray(jax.jit(lambda p, x: module.apply({'params': p}, x).layers['_fc'])(params, x))
  ref = EfficientNet.from_pretrained(TORCH_NAMES[net], weights_path=from_torch.registry_file(net))
  ref.eval()
  with torch.no_grad():
    theirs = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  rel = np.abs(ours - theirs).max(1) / np.abs(theirs).max(1)
  assert rel.max() <= 1e-4, rel.max()
  assert (ours.argmax(1) == theirs.argmax(1)).all()
