"""Image data: JPEG-pack and folder decoding, caching, pixel convention, augmentation, batching.

Uses only tests/fixtures/images (a CIFAR-10 subset). Decoded pixels depend slightly on the
Pillow/libjpeg build, so no pixel hashes: checks compare decoders with each other.
"""

import io
import os

import numpy as np
from PIL import Image
import pytest

from dgnam_jax import data

IMAGES = os.path.join(os.path.dirname(__file__), 'fixtures', 'images')
NPZ = os.path.join(IMAGES, 'cifar10_tiny_jpeg.npz')
FOLDER = os.path.join(IMAGES, 'cifar10')
CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck']


def test_npz_decodes_every_split():
  assert data.npz_splits(NPZ) == ['test', 'train']
  train = data.load_npz(NPZ, 'train')
  assert train.images.shape == (100, 32, 32, 3) and train.images.dtype == np.uint8
  assert train.labels.dtype == np.int64 and np.bincount(train.labels).tolist() == [10] * 10
  assert train.class_names == CLASSES and len(train.files) == 100
  with np.load(NPZ) as d:  # image i is jpeg[offsets[i]:offsets[i+1]], decoded as RGB
    off = d['offsets_train']
    one = np.asarray(Image.open(io.BytesIO(d['jpeg_train'][off[7]:off[8]].tobytes()))
                     .convert('RGB'))
  np.testing.assert_array_equal(train.images[7], one)
  with pytest.raises(ValueError, match='no split'):
    data.load_npz(NPZ, 'val')


def test_cache_is_written_once_and_reused(tmp_path):
  first = data.load_npz(NPZ, 'test', cache_dir=str(tmp_path))
  cached = list(tmp_path.glob('*.npy'))
  assert len(cached) == 1 and cached[0].name.startswith('cifar10_tiny_jpeg_test_')
  np.testing.assert_array_equal(np.load(cached[0], allow_pickle=False), first.images)
  mtime = cached[0].stat().st_mtime_ns
  again = data.load_npz(NPZ, 'test', cache_dir=str(tmp_path))
  np.testing.assert_array_equal(again.images, first.images)
  assert cached[0].stat().st_mtime_ns == mtime  # read back, not rewritten
  data.load_npz(NPZ, 'test', cache_dir=str(tmp_path), size=64)  # another size, another file
  assert len(list(tmp_path.glob('*.npy'))) == 2


def test_folder_with_train_and_test(tmp_path):
  train, test = data.load_dataset(FOLDER, cache_dir=str(tmp_path))
  assert train.images.shape == (200, 32, 32, 3) and test.images.shape == (100, 32, 32, 3)
  assert train.class_names == test.class_names == CLASSES
  for ds in (train, test):
    for label, name in zip(ds.labels[::17], ds.files[::17]):
      assert name.split(os.sep)[0] == CLASSES[label]
  path = os.path.join(FOLDER, 'train', train.files[5])
  np.testing.assert_array_equal(train.images[5], np.asarray(Image.open(path).convert('RGB')))
  assert len(list(tmp_path.glob('*.npy'))) == 2
  # One split by name; the held-out images spread over a class-sorted split.
  held_out = data.load_split(FOLDER, 'test', cache_dir=str(tmp_path))
  np.testing.assert_array_equal(held_out.images, test.images)
  assert len(set(held_out.spread(10).labels.tolist())) == 10
  with pytest.raises(ValueError, match="'val'"):
    data.load_split(FOLDER, 'val')


def test_plain_class_folder_holds_out_each_class():
  train, test = data.load_dataset(os.path.join(FOLDER, 'test'), test_fraction=0.2, seed=3)
  assert len(train) == 80 and len(test) == 20
  assert np.bincount(test.labels).tolist() == [2] * 10
  assert not set(train.files) & set(test.files)


def test_folder_resize_and_size_mismatch(tmp_path):
  big = data.load_folder(os.path.join(FOLDER, 'test'), size=64)
  assert big.images.shape == (100, 64, 64, 3)
  for i, size in enumerate((32, 40)):
    os.makedirs(tmp_path / 'c', exist_ok=True)
    Image.new('RGB', (size, size)).save(tmp_path / 'c' / f'{i}.png')
  with pytest.raises(ValueError, match='resize'):
    data.load_folder(str(tmp_path))
  assert data.load_folder(str(tmp_path), size=32).images.shape == (2, 32, 32, 3)


def test_pixel_convention_bgr_0_255_mean_subtracted():
  rgb = np.zeros((2, 4, 4, 3), np.uint8)
  rgb[0, ..., 0] = 255  # pure red
  rgb[1, ..., 2] = 200  # blue
  mean = data.channel_mean_bgr(rgb)
  np.testing.assert_allclose(mean, [100.0, 0.0, 127.5])  # B, G, R
  x = data.to_net_input(rgb, mean)
  assert x.dtype == np.float32
  np.testing.assert_allclose(x[0, 0, 0], [-100.0, 0.0, 127.5])  # red lands in channel 2
  np.testing.assert_allclose(x[1, 0, 0], [100.0, 0.0, -127.5])
  np.testing.assert_array_equal(data.from_net_input(x, mean), rgb)
  img = data.mean_image(mean, 32, 32)
  assert img.shape == (3, 32, 32) and img.dtype == np.float32 and img[2, 5, 7] == 127.5


def test_augment_crops_and_flips():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
  np.testing.assert_array_equal(data.augment(images, rng, pad=0, flip=False), images)
  flipped = data.augment(images, rng, pad=0, flip=True)
  same = [np.array_equal(a, b) for a, b in zip(flipped, images)]
  mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(flipped, images)]
  assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54
  out = data.augment(images, rng, pad=4, flip=False)
  assert out.shape == images.shape and out.dtype == np.uint8
  padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode='reflect')
  offsets = set()
  for a, p in zip(out, padded):
    hits = [(y, x) for y in range(9) for x in range(9) if np.array_equal(p[y:y + 32, x:x + 32], a)]
    assert hits
    offsets.add(hits[0])
  assert len(offsets) > 10  # random offsets, not one fixed crop


def test_batch_stream_is_a_function_of_seed_and_step():
  ds = data.load_npz(NPZ, 'train')
  a, b = data.BatchStream(ds, 32, seed=5), data.BatchStream(ds, 32, seed=5)
  assert a.steps_per_epoch == 3
  for step in (4, 0, 7):  # any order: a resumed run asks for a later step first
    xa, ya = a.batch(step)
    xb, yb = b.batch(step)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  epoch = np.concatenate([a.indices(s) for s in range(3)])
  assert len(set(epoch.tolist())) == 96  # no repeats within an epoch
  assert not np.array_equal(a.indices(0), a.indices(3))  # a new permutation each epoch
  assert not np.array_equal(a.batch(1)[0], data.BatchStream(ds, 32, seed=6).batch(1)[0])


def test_eval_batches_pad_the_last_batch():
  ds = data.load_npz(NPZ, 'test')
  got = list(data.eval_batches(ds, 20))
  assert [n for _, _, n in got] == [20, 20, 10]
  assert all(x.shape == (20, 32, 32, 3) for x, _, _ in got)
  np.testing.assert_array_equal(got[2][0][:10], ds.images[40:])


def test_npz_with_wnids_names_classes_like_synset_words(tmp_path):
  """Tiny ImageNet packs carry `wnids`: class names become 'n01443537 goldfish, ...'."""
  with np.load(NPZ) as d:
    arrays = {k: d[k] for k in d.files}
  arrays['wnids'] = np.array([f'n{i:08d}' for i in range(10)])
  path = tmp_path / 'with_wnids.npz'
  np.savez(path, **arrays)
  names = data.load_npz(str(path), 'test').class_names
  assert names[1] == 'n00000001 automobile'
  from dgnam_jax.sweeps import requests as units  # pylint: disable=g-import-not-at-top
  assert units.short_class_name(names[1]) == ('automobile', 'n00000001')
