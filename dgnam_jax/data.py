"""Image data for training the project's classifiers (and later generators).

Sources:

* a **JPEG-pack** ``.npz`` (``../shared/data/README.md``): per split ``s`` the keys
  ``jpeg_<s>`` (all JPEG files concatenated), ``offsets_<s>`` (N + 1), ``y_<s>``, ``files_<s>``,
  plus ``class_names`` (and ``wnids`` for Tiny ImageNet);
* a **folder** ``root/<class>/*.jpg`` (or ``root/train/<class>/...`` with ``root/test/`` or
  ``root/val/``), so users can train on their own images.

Decoded images are uint8 ``(N, H, W, 3)`` in **RGB** (as Pillow decodes them) and cached as
``.npy`` files (read back with ``np.load(allow_pickle=False)``), because decoding Tiny ImageNet
takes about a minute. The nets see the paper's convention: **BGR, 0-255, minus the per-channel
train mean**; :func:`to_net_input` converts (on numpy or jax arrays, so it can run inside jit).

Training batches come from :class:`BatchStream`: the order and the augmentation (random crop
from a padded image, horizontal flip; vectorised numpy on uint8) depend only on (seed, step), so a
run resumed from a checkpoint sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import os
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp')
_CACHE_VERSION = 1  # bump when decoding changes, so stale caches are not reused


@dataclasses.dataclass
class ImageSet:
  """One split of decoded images.

  Attributes:
    images: uint8 (N, H, W, 3), RGB.
    labels: int64 (N,), indices into ``class_names``.
    class_names: one name per class.
    files: the source file name of each image.
  """
  images: np.ndarray
  labels: np.ndarray
  class_names: list[str]
  files: list[str]

  def __len__(self) -> int:
    return len(self.labels)

  def subset(self, idx: np.ndarray) -> 'ImageSet':
    return ImageSet(self.images[idx], self.labels[idx], self.class_names,
                    [self.files[i] for i in idx])

  def spread(self, k: int) -> 'ImageSet':
    """min(k, len) images evenly spaced over the split (splits are often class-sorted)."""
    return self.subset(spread_indices(len(self), k))


def train_then_test(train: ImageSet, test: ImageSet) -> ImageSet:
  """Both splits as one set, train images first (indices below ``len(train)`` are train's): the
  pool that "the real images that drive a unit most" are drawn from."""
  return ImageSet(np.concatenate([train.images, test.images]),
                  np.concatenate([train.labels, test.labels]), train.class_names, [])


def spread_indices(n: int, k: int) -> np.ndarray:
  """min(k, n) indices evenly spaced over range(n)."""
  return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def decode_image(data: bytes | str, size: int | None = None) -> np.ndarray:
  """Decodes one image (bytes or a path) to uint8 RGB (H, W, 3), resized to size x size if given.
  """
  with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
    im = im.convert('RGB')
    if size is not None and im.size != (size, size):
      im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, np.uint8)


def decode_all(items: Sequence[bytes | str], size: int | None = None,
               num_threads: int = 2) -> np.ndarray:
  """Decodes many images into one (N, H, W, 3) uint8 array (Pillow releases the GIL)."""
  if not items:
    raise ValueError('no images to decode')
  first = decode_image(items[0], size)
  out = np.empty((len(items),) + first.shape, np.uint8)
  out[0] = first

  def work(lo_hi):
    for i in range(*lo_hi):
      img = decode_image(items[i], size)
      if img.shape != first.shape:
        name = items[i] if isinstance(items[i], str) else f'image {i}'
        raise ValueError(f'{name} is {img.shape[:2]}, the first image is {first.shape[:2]}; '
                         'pass an image size to resize them all')
      out[i] = img

  bounds = np.linspace(1, len(items), num_threads + 1).astype(int)
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    list(pool.map(work, zip(bounds[:-1], bounds[1:])))
  return out


def _cached(cache_dir: str | None, stem: str, key: str, make) -> np.ndarray:
  """Returns ``make()``, stored as ``<cache_dir>/<stem>_<hash of key>.npy`` and reused."""
  if cache_dir is None:
    return make()
  digest = hashlib.sha1(f'{_CACHE_VERSION}|{key}'.encode()).hexdigest()[:12]
  path = os.path.join(cache_dir, f'{stem}_{digest}.npy')
  if os.path.exists(path):
    return np.load(path, allow_pickle=False)
  arr = make()
  os.makedirs(cache_dir, exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}.npy'
  np.save(tmp, arr, allow_pickle=False)
  os.replace(tmp, path)  # atomic: a killed run never leaves a truncated cache
  return arr


def npz_splits(path: str) -> list[str]:
  """The split names of a JPEG-pack file (e.g. ['test', 'train'])."""
  with np.load(path, allow_pickle=False) as d:
    return sorted(k[len('offsets_'):] for k in d.files if k.startswith('offsets_'))


def load_npz(path: str, split: str, cache_dir: str | None = None, size: int | None = None,
             num_threads: int = 2) -> ImageSet:
  """Loads one split of a JPEG-pack ``.npz`` (decoded images cached under ``cache_dir``)."""
  st = os.stat(path)
  with np.load(path, allow_pickle=False) as d:
    if f'offsets_{split}' not in d.files:
      raise ValueError(f'{path} has no split {split!r}; it has {npz_splits(path)}')
    labels = d[f'y_{split}'].astype(np.int64)
    files = [str(f) for f in d[f'files_{split}']] if f'files_{split}' in d.files else []
    class_names = [str(c) for c in d['class_names']]
    if 'wnids' in d.files:  # Tiny ImageNet: 'n01443537 goldfish, ...' as synset_words.txt
      class_names = [f'{w} {c}' for w, c in zip(d['wnids'], class_names)]

    def decode():
      buf, offsets = d[f'jpeg_{split}'], d[f'offsets_{split}']
      items = [buf[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]
      return decode_all(items, size, num_threads)

    stem = f'{os.path.splitext(os.path.basename(path))[0]}_{split}'
    key = f'{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{split}|{size}'
    images = _cached(cache_dir, stem, key, decode)
  if len(images) != len(labels):
    raise ValueError(f'{path}: {len(images)} images but {len(labels)} labels in split {split!r}')
  return ImageSet(images, labels, class_names, files)


def list_folder(root: str) -> tuple[list[str], np.ndarray, list[str]]:
  """(paths, labels, class names) of ``root/<class>/<image>``; classes sorted by name."""
  classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith('.'))
  paths, labels = [], []
  for label, name in enumerate(classes):
    for f in sorted(os.listdir(os.path.join(root, name))):
      if f.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(os.path.join(root, name, f))
        labels.append(label)
  if not paths:
    raise ValueError(f'{root}: no images found in class folders (expected root/<class>/*.jpg)')
  return paths, np.asarray(labels, np.int64), classes


def load_folder(root: str, cache_dir: str | None = None, size: int | None = None,
                class_names: Sequence[str] | None = None, num_threads: int = 2) -> ImageSet:
  """Loads ``root/<class>/*.jpg``; images must share a size unless ``size`` is given.

  ``class_names`` (e.g. the train split's) fixes the label order; a class folder that is not
  in it is an error.
  """
  paths, labels, classes = list_folder(root)
  if class_names is not None:
    unknown = sorted(set(classes) - set(class_names))
    if unknown:
      raise ValueError(f'{root}: class folders {unknown} are not in the training classes')
    remap = np.asarray([list(class_names).index(c) for c in classes])
    labels, classes = remap[labels], list(class_names)
  stats = '|'.join(f'{p}:{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}' for p in paths)
  key = f'{os.path.abspath(root)}|{size}|{hashlib.sha1(stats.encode()).hexdigest()}'
  stem = os.path.basename(os.path.normpath(root)) or 'images'
  images = _cached(cache_dir, f'folder_{stem}', key,
                   lambda: decode_all(paths, size, num_threads))
  return ImageSet(images, labels, classes, [os.path.relpath(p, root) for p in paths])


def load_dataset(data: str, cache_dir: str | None = None, size: int | None = None,
                 test_fraction: float = 0.1, seed: int = 0) -> tuple[ImageSet, ImageSet]:
  """(train, test) from a JPEG-pack ``.npz`` or an image folder.

  An ``.npz`` uses its 'train' split and its 'test' (else 'val') split. A folder with a ``train``
  subfolder uses it and ``test``/``val``; a plain ``root/<class>/`` folder holds out a
  ``test_fraction`` of each class, chosen with ``seed``.
  """
  if os.path.isfile(data):
    splits = npz_splits(data)
    test_split = next((s for s in ('test', 'val') if s in splits), None)
    if 'train' not in splits or test_split is None:
      raise ValueError(f'{data}: needs a train and a test or val split; it has {splits}')
    return (load_npz(data, 'train', cache_dir, size),
            load_npz(data, test_split, cache_dir, size))
  if not os.path.isdir(data):
    raise FileNotFoundError(f'{data}: no such file or folder')
  train_dir = os.path.join(data, 'train')
  if os.path.isdir(train_dir):
    test_dir = next((os.path.join(data, s) for s in ('test', 'val')
                     if os.path.isdir(os.path.join(data, s))), None)
    if test_dir is None:
      raise ValueError(f'{data}: has train/ but no test/ or val/ folder')
    train = load_folder(train_dir, cache_dir, size)
    return train, load_folder(test_dir, cache_dir, size, class_names=train.class_names)
  full = load_folder(data, cache_dir, size)
  return split_holdout(full, test_fraction, seed)


SPLITS = ('train', 'test')


def check_split(split: str) -> None:
  """Raises ValueError unless ``split`` is one of :data:`SPLITS`."""
  if split not in SPLITS:
    raise ValueError(f"split must be 'train' or 'test', not {split!r}")


def load_split(data: str, split: str, cache_dir: str | None = None,
               size: int | None = None) -> ImageSet:
  """One split of :func:`load_dataset`: 'train', or 'test' (the held-out images)."""
  check_split(split)
  train, test = load_dataset(data, cache_dir, size)
  return train if split == 'train' else test


def split_holdout(full: ImageSet, test_fraction: float,
                  seed: int = 0) -> tuple[ImageSet, ImageSet]:
  """Holds out ``test_fraction`` of each class (at least one image if the class has two)."""
  rng = np.random.default_rng(seed)
  test = []
  for c in range(len(full.class_names)):
    idx = np.flatnonzero(full.labels == c)
    k = int(round(len(idx) * test_fraction))
    k = min(max(k, 1 if len(idx) > 1 else 0), len(idx) - 1) if len(idx) else 0
    test.extend(rng.permutation(idx)[:k])
  is_test = np.zeros(len(full), bool)
  is_test[np.asarray(test, np.int64)] = True
  return full.subset(np.flatnonzero(~is_test)), full.subset(np.flatnonzero(is_test))


def channel_mean_bgr(images: np.ndarray, chunk: int = 8192) -> np.ndarray:
  """Per-channel mean (B, G, R) float32 of uint8 RGB images, in 0-255 units."""
  total = np.zeros(3, np.float64)
  for lo in range(0, len(images), chunk):
    total += images[lo:lo + chunk].reshape(-1, 3).sum(0, dtype=np.float64)
  return (total / (len(images) * images.shape[1] * images.shape[2]))[::-1].astype(np.float32)


def mean_image(mean_bgr: np.ndarray, height: int, width: int) -> np.ndarray:
  """The (3, H, W) float32 mean of a checkpoint's ``mean.npy`` (constant per channel)."""
  return np.broadcast_to(np.asarray(mean_bgr, np.float32)[:, None, None],
                         (3, height, width)).copy()


def to_net_input(images, mean_bgr):
  """uint8 RGB (N, H, W, 3) -> float32 BGR 0-255 minus the per-channel mean (numpy or jax)."""
  mean = mean_bgr if hasattr(mean_bgr, 'dtype') else np.asarray(mean_bgr, np.float32)
  return images[..., ::-1].astype(np.float32) - mean.astype(np.float32)


def from_net_input(x, mean_bgr) -> np.ndarray:
  """Inverse of :func:`to_net_input` (rounded and clipped to uint8 RGB)."""
  x = np.asarray(x, np.float32) + np.asarray(mean_bgr, np.float32)
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)[..., ::-1]


def augment(images: np.ndarray, rng: np.random.Generator, pad: int = 4,
            flip: bool = True) -> np.ndarray:
  """Random crop of the ``pad``-padded (reflected) image plus random horizontal flip.

  One fancy-indexing gather does both for the whole uint8 batch (about a millisecond for
  128 CIFAR images), so augmentation never starves the training step.
  """
  n, h, w, _ = images.shape
  if pad:
    images = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')
  oy = rng.integers(0, 2 * pad + 1, n)
  ox = rng.integers(0, 2 * pad + 1, n)
  rows = oy[:, None] + np.arange(h)
  cols = ox[:, None] + np.arange(w)
  if flip:
    cols = np.where(rng.random(n)[:, None] < 0.5, cols[:, ::-1], cols)
  return images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


class BatchStream:
  """Deterministic shuffled, augmented training batches: batch ``step`` depends only on
  (seed, step), so resuming at a step reproduces the uninterrupted run.

  Each epoch is a fresh permutation (``default_rng([seed, epoch])``); the last partial batch of
  an epoch is dropped so every step has the same shape (one compiled step function).
  """

  def __init__(self, data: ImageSet, batch_size: int, seed: int, pad: int = 4,
               flip: bool = True):
    if len(data) < batch_size:
      raise ValueError(f'{len(data)} training images is fewer than one batch of {batch_size}')
    self.data, self.batch_size, self.seed = data, batch_size, seed
    self.pad, self.flip = pad, flip
    self.steps_per_epoch = len(data) // batch_size
    self._epoch, self._perm = None, None

  def indices(self, step: int) -> np.ndarray:
    epoch, i = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      self._epoch = epoch
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
    return self._perm[i * self.batch_size:(i + 1) * self.batch_size]

  def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB images, int64 labels) of training step ``step`` (0-based)."""
    idx = np.sort(self.indices(step))  # sorted gathers are faster; order in a batch is moot
    rng = np.random.default_rng([self.seed, step, 1])
    return augment(self.data.images[idx], rng, self.pad, self.flip), self.data.labels[idx]


def eval_batches(data: ImageSet, batch_size: int
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
  """(images, labels, valid count) in order; the last batch is padded to ``batch_size`` so one
  compiled function serves every batch."""
  for lo in range(0, len(data), batch_size):
    x, y = data.images[lo:lo + batch_size], data.labels[lo:lo + batch_size]
    n = len(y)
    if n < batch_size:
      x = np.concatenate([x, np.zeros((batch_size - n,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros(batch_size - n, y.dtype)])
    yield x, y, n
