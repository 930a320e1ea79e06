"""Cached encoder features: a classifier's named outputs over a dataset, computed once.

A generator that inverts a big net's features (EfficientNet-Lite1 at 240 px on this CPU: ~23 ms per
image) cannot afford the encoder inside its training step; the codes are computed once, per
chunk of images (resumable, atomic), and read back as float32. Spatial outputs are averaged down
to ``pool`` x ``pool`` cells (adaptive average pooling; smaller maps keep their size) and
flattened in (y, x, channel) order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax import data, files
from dgnam_jax.nets import forward

MANIFEST = 'features.json'


def pooling_matrix(size: int, cells: int) -> np.ndarray:
  """(cells, size): row i averages the i-th of ``cells`` near-equal slices of ``size``."""
  if not 1 <= cells <= size:
    raise ValueError(f'cannot pool {size} positions into {cells} cells')
  m = np.zeros((cells, size), np.float32)
  for i, part in enumerate(np.array_split(np.arange(size), cells)):
    m[i, part] = 1.0 / len(part)
  return m


def pool_features(x: jax.Array, cells: int) -> jax.Array:
  """(N, H, W, C) -> (N, cells * cells * C) adaptive average pooling (a map smaller than
  ``cells`` keeps its size: its whole grid is the code); (N, D) passes through."""
  if x.ndim == 2:
    return x
  ph = pooling_matrix(x.shape[1], min(cells, x.shape[1]))
  pw = pooling_matrix(x.shape[2], min(cells, x.shape[2]))
  return jnp.einsum('ph,nhwc,qw->npqc', ph, x, pw).reshape(x.shape[0], -1)


def feature_fn(path: str, layers: Sequence[str], cells: int) -> tuple[Callable, dict]:
  """(jitted uint8 RGB -> {layer: (N, D) float32}, its description) for the checkpoint ``path``,
  applying the checkpoint's own preprocessing."""
  apply, params, meta, space, resize = forward.rgb_net(path)
  known = {b['name'] for b in meta.get('blobs') or []}
  missing = [name for name in layers if known and name not in known]
  if missing:
    raise ValueError(f'{path} has no output(s) {missing}; it has: {", ".join(sorted(known))}')

  @jax.jit
  def run(p, rgb):
    # Blobs after the whole forward: a Caffe net's in-place ReLU has run (fc6 post-ReLU, the
    # generator code convention).
    outs = apply(p, rgb).blobs
    return {name: pool_features(outs[name], cells) for name in layers}

  hashes = files.checkpoint_hashes(path)
  desc = {'net': hashes['path'], 'net_hashes': {k: v for k, v in hashes.items()
                                                if k.endswith('sha256')},
          'layers': list(layers), 'cells': cells, 'input_size': list(space.size),
          'resize': resize}
  return (lambda rgb: run(params, rgb)), desc


def encode_split(fn: Callable, images: np.ndarray, out: str, split: str, chunk: int,
                 batch: int = 32, log: Callable[[str], None] | None = None) -> list[str]:
  """Writes ``<out>/<split>_<start>.npz`` per ``chunk`` images (skipping chunks already there);
  returns the chunk files in order."""
  paths = []
  for lo in range(0, len(images), chunk):
    path = os.path.join(out, f'{split}_{lo:07d}.npz')
    paths.append(path)
    if os.path.exists(path):
      continue
    part = images[lo:lo + chunk]
    got = [jax.tree.map(np.asarray, fn(part[i:i + batch])) for i in range(0, len(part), batch)]
    arrays = {k.replace('/', '|'): np.concatenate([g[k] for g in got]).astype(np.float16)
              for k in got[0]}
    files.atomic_save_npz(path, arrays)
    if log:
      log(f'{split}: {min(lo + chunk, len(images))}/{len(images)} images')
  return paths


def encode_dataset(path: str, data_path: str, out: str, layers: Sequence[str], cells: int = 1,
                   splits: Sequence[str] = ('train', 'test'), chunk: int = 2000,
                   cache_dir: str | None = None, log: Callable[[str], None] | None = None,
                   train_every: int = 1) -> dict:
  """Features of every image of ``splits`` of ``data_path`` under ``out`` (resumable; a rerun
  with other settings is refused); returns the manifest written at the end.

  ``train_every`` > 1 encodes only every k-th train image (a pilot's cheaper cache: a generator
  trained on it sees those images only)."""
  for split in splits:  # before anything is written: a bad split leaves no output
    data.check_split(split)
  if train_every < 1:
    raise ValueError(f'train_every must be >= 1, got {train_every}')
  fn, desc = feature_fn(path, layers, cells)
  desc.update(data=files.relative_path(data_path), splits=list(splits), chunk=chunk)
  if train_every > 1:  # only then, so full caches keep their settings
    desc['train_every'] = train_every
  os.makedirs(out, exist_ok=True)
  settings_file = os.path.join(out, 'settings.json')
  if os.path.exists(settings_file):
    with open(settings_file) as f:
      old = json.load(f)
    if old != json.loads(json.dumps(desc)):
      raise ValueError(f'{out} holds features made with other settings; choose another --out')
  else:
    files.atomic_write_text(settings_file, json.dumps(desc, indent=1) + '\n')
  manifest = dict(desc, files={})
  for split in splits:
    images = data.load_split(data_path, split, cache_dir)
    if split == 'train' and train_every > 1:
      images = images.subset(train_indices(len(images), train_every))
    chunks = encode_split(fn, images.images, out, split, chunk, log=log)
    files.atomic_save_npz(os.path.join(out, f'{split}_labels.npz'), {'labels': images.labels})
    manifest['files'][split] = {'chunks': [os.path.basename(c) for c in chunks],
                                'images': len(images)}
  files.atomic_write_text(os.path.join(out, MANIFEST), json.dumps(manifest, indent=1) + '\n')
  return manifest


def train_indices(n: int, every: int) -> np.ndarray:
  """The train images a cache made with ``train_every=every`` holds, of ``n``."""
  return np.arange(0, n, every)


def load_features(out: str, split: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
  """(features (N, D) float32, labels (N,)) of one layer and split of a finished cache."""
  path = os.path.join(out, MANIFEST)
  if not os.path.exists(path):
    raise ValueError(f'{out}: no finished feature cache ({MANIFEST} missing)')
  with open(path) as f:
    manifest = json.load(f)
  if split not in manifest['files'] or layer not in manifest['layers']:
    raise ValueError(f'{out}: no {split!r} features of {layer!r} (splits '
                     f'{list(manifest["files"])}, layers {manifest["layers"]})')
  key = layer.replace('/', '|')
  parts = []
  for name in manifest['files'][split]['chunks']:
    with np.load(os.path.join(out, name), allow_pickle=False) as z:
      parts.append(z[key].astype(np.float32))
  with np.load(os.path.join(out, f'{split}_labels.npz'), allow_pickle=False) as z:
    labels = z['labels']
  return np.concatenate(parts), labels


@dataclasses.dataclass(frozen=True, eq=False)
class CachedCodes:
  """Codes of a generator's training images from a feature cache (another net's features).

  ``train`` / ``test`` are (N, D) float32 in the order of the dataset's splits; ``encoder`` is the
  net they came from (a checkpoint path or ``registry:<net>``), ``layer`` its output, ``source``
  the cache's settings (hashes of the net and data) for the run's identity; ``train_every`` > 1:
  the cache holds every k-th train image only (:meth:`train_subset` picks them).
  """
  train: np.ndarray
  test: np.ndarray
  encoder: str
  layer: str
  source: dict
  train_every: int = 1

  def train_subset(self, images: data.ImageSet) -> data.ImageSet:
    """The train images these codes belong to."""
    if self.train_every == 1:
      return images
    return images.subset(train_indices(len(images), self.train_every))

  @property
  def dim(self) -> int:
    return int(self.train.shape[1])

  @property
  def signed(self) -> bool:
    """Whether the codes go below 0 (a block output, not a post-ReLU layer): DGN-AM's box is then
    mean -/+ k std instead of [0, mean + k std]."""
    return bool(min(self.train.min(), self.test.min()) < 0)


def cached_codes(out: str, layer: str) -> CachedCodes:
  """The ``train`` and ``test`` features of ``layer`` in the finished cache ``out``."""
  train, _ = load_features(out, 'train', layer)
  test, _ = load_features(out, 'test', layer)
  with open(os.path.join(out, 'settings.json')) as f:
    settings = json.load(f)
  keys = ('net', 'net_hashes', 'layers', 'cells', 'data', 'train_every')
  return CachedCodes(train, test, settings['net'], layer,
                     {k: settings[k] for k in keys if k in settings},
                     int(settings.get('train_every', 1)))
