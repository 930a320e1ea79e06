"""Tests for dgnam_jax.images: the original's display convention, names, atomic writes, grids."""

import itertools
import os

import numpy as np
from PIL import Image
import pytest

from dgnam_jax import images


def _scipy_bytescale(data):
  """scipy<=1.1 misc.bytescale with its defaults (high=255, low=0, cmin/cmax from data)."""
  cmin, cmax = data.min(), data.max()
  cscale = cmax - cmin
  if cscale == 0:
    cscale = 1
  scale = float(255 - 0) / cscale
  bytedata = (data - cmin) * scale + 0
  return (bytedata.clip(0, 255) + 0.5).astype(np.uint8)


def _original_save(img_hwc_bgr):
  """act_max.save_image as it ran: flip, float64 copy, patchShow normalize, imsave's bytescale."""
  img = np.asarray(img_hwc_bgr, np.float32)[..., ::-1]
  result = np.zeros(img.shape)
  result[:] = img
  result[result > 120] = 120
  result[result < -120] = -120
  result = (result - -120) / (120 - -120) * (1. - 0.) + 0.
  return _scipy_bytescale(result)


@pytest.mark.parametrize('spread', [30.0, 119.0, 200.0, 1000.0])
def test_original_matches_scipy_bytescale(spread):
  rng = np.random.default_rng(int(spread))
  img = (rng.normal(size=(37, 41, 3)) * spread + 5).astype(np.float32)
  got = images.caffe_to_rgb_original(img)
  assert got.dtype == np.uint8 and got.shape == img.shape
  np.testing.assert_array_equal(got, _original_save(img))
  # The description's shortcut (clip, then stretch without the [0, 1] step) agrees to 1 level.
  direct = _scipy_bytescale(np.clip(img[..., ::-1].astype(np.float64), -120, 120))
  assert np.abs(got.astype(int) - direct).max() <= 1


def test_original_stretches_own_min_max():
  img = np.zeros((2, 2, 3), np.float32)
  img[0, 0, 0] = -10.0
  img[1, 1, 2] = 30.0
  got = images.caffe_to_rgb_original(img)
  assert got.min() == 0 and got.max() == 255  # min-max stretch, not (x + 120) / 240
  assert got[1, 1, 1] == int(10 / 40 * 255 + 0.5)


def test_original_clips_at_120_and_constant_is_black():
  img = np.full((4, 4, 3), 500.0)
  img[0, 0] = -500.0
  got = images.caffe_to_rgb_original(img)
  assert got[0, 0].tolist() == [0, 0, 0] and got[1, 1].tolist() == [255, 255, 255]
  assert not images.caffe_to_rgb_original(np.full((3, 3, 3), 7.0)).any()


def test_original_flips_bgr_to_rgb():
  img = np.zeros((1, 2, 3))
  img[0, 0] = [100, 0, -100]  # blue-ish in BGR
  got = images.caffe_to_rgb_original(img)
  assert got[0, 0, 2] == 255 and got[0, 0, 0] == 0


def test_mean_convention_vector_and_images():
  img = np.zeros((2, 2, 3))
  img[0, 0] = [10.0, -200.0, 300.0]
  got = images.caffe_to_rgb_mean(img, (104.0, 117.0, 123.0))
  assert got.dtype == np.uint8
  assert got[0, 0].tolist() == [255, 0, 114]  # RGB: R=123+300 clipped, G clipped, B=104+10
  assert got[1, 1].tolist() == [123, 117, 104]
  mean_hwc = np.arange(6 * 6 * 3, dtype=np.float32).reshape(6, 6, 3)
  expect = np.rint(mean_hwc[2:4, 2:4])[..., ::-1]
  zeros = np.zeros((2, 2, 3))
  np.testing.assert_array_equal(images.caffe_to_rgb_mean(zeros, mean_hwc), expect)
  np.testing.assert_array_equal(images.caffe_to_rgb_mean(zeros, mean_hwc.transpose(2, 0, 1)),
                                expect)
  with pytest.raises(ValueError):
    images.caffe_to_rgb_mean(np.zeros((8, 8, 3)), mean_hwc)


def test_enlarge():
  img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
  big = images.enlarge(img, 3)
  assert big.shape == (6, 6, 3)
  np.testing.assert_array_equal(big[::3, ::3], img)
  np.testing.assert_array_equal(big[2, 2], img[0, 0])


def test_request_name_original():
  assert images.request_name('fc8', 643, 200, 0.99, 8.0, 0) == 'fc8_0643_200_0.99_8.0__0'
  assert images.request_name('fc8', 643, 200, 0.99, 8, 0) == 'fc8_0643_200_0.99_8.0__0'
  assert images.request_name('fc8', np.int64(5), 30, 1, np.float32(0.99), 3) == \
      'fc8_0005_30_1.0_0.99__3'
  assert images.request_name('loss3/classifier', 643, 200, 0.99, 2.0, 0) == \
      'loss3/classifier_0643_200_0.99_2.0__0'
  assert images.request_name('conv5', 8, 5, 0.99, 8.0, 1) == 'conv5_0008_05_0.99_8.0__1'


def test_request_name_extensions():
  base = 'conv5_0008_200_0.99_8.0__0'
  name = lambda **kw: images.request_name('conv5', 8, 200, 0.99, 8.0, 0, **kw)
  assert name(position=(6, 7)) == base + '_y6x7'
  assert name(channel_mean=True) == base + '_mean'
  assert name(objective='softmax') == base + '_softmax'
  assert name(blend_unit=55, gamma=0.5) == base + '_plus0055_g0.5'
  assert name(minimize=True) == base + '_min'
  assert name(gamma=0.5) == base  # gamma means nothing without a blend unit
  for bad in [{'objective': 'mean'}, {'objective': 'a_b'}, {'objective': 'y1x2'}]:
    with pytest.raises(ValueError):
      name(**bad)
  for layer in ['', '/abs', 'a/../b', 'a//b']:
    with pytest.raises(ValueError):
      images.request_name(layer, 1, 1, 0.99, 1.0, 0)


def test_request_names_unique():
  options = itertools.product(
      ['fc8', 'conv5', 'loss3/classifier'], [0, 643], [200], [0.99, 1.0], [8.0, 2.0], [0, 1],
      [None, (6, 6), (0, 6)], [False, True], ['logit', 'softmax'],
      [None, (624, 0.5), (624, 1.0), (304, 0.5)], [False, True], [False, True])
  names, count = set(), 0
  for layer, unit, it, l2, lr, seed, pos, mean, obj, blend, minimize, blob in options:
    names.add(images.request_name(
        layer, unit, it, l2, lr, seed, position=pos, channel_mean=mean, objective=obj,
        blend_unit=blend and blend[0], gamma=blend and blend[1], minimize=minimize,
        use_blob=blob))
    count += 1
  assert len(names) == count


def _no_temp(root):
  return [f for _, _, fs in os.walk(root) for f in fs if f.startswith(images.TEMP_PREFIX)]


@pytest.mark.parametrize('ext', ['.png', '.jpg'])
def test_save_image_atomic(tmp_path, ext):
  rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
  stem = images.request_name('loss3/classifier', 1, 200, 0.99, 2.0, 0)
  path = str(tmp_path / (stem + ext))
  assert images.save_image(path, rgb) == path
  assert os.path.isfile(tmp_path / 'loss3' / ('classifier_0001_200_0.99_2.0__0' + ext))
  with Image.open(path) as im:
    assert im.format == ('PNG' if ext == '.png' else 'JPEG') and im.size == (7, 9)
    if ext == '.png':
      np.testing.assert_array_equal(np.asarray(im), rgb)
  assert not _no_temp(tmp_path)


def test_save_image_failure_leaves_nothing(tmp_path):
  with pytest.raises(ValueError):
    images.save_image(str(tmp_path / 'x.png'), np.zeros((2, 2, 3), np.float32))
  with pytest.raises(ValueError):
    images.save_image(str(tmp_path / 'x.bmp'), np.zeros((2, 2, 3), np.uint8))
  with pytest.raises(RuntimeError):
    with images.atomic_path(str(tmp_path / 'y.txt')):
      raise RuntimeError('killed')
  assert not os.listdir(tmp_path)


def test_grid_size_and_content():
  tiles = [np.full((5, 6, 3), i * 40, np.uint8) for i in range(7)]
  canvas = images.grid(tiles, [f'unit {i}' for i in range(7)], cols=3, scale=4)
  arr = np.asarray(canvas)
  assert canvas.mode == 'RGB'
  assert canvas.width == 3 * (6 * 4 + 2) + 2
  assert canvas.height > 3 * (5 * 4 + 2)
  np.testing.assert_array_equal(arr[2:22, 2:26], 0)  # first tile, enlarged, at the pad offset
  assert (arr[0, :] == 255).all()  # white border
  with pytest.raises(ValueError):
    images.grid(tiles, ['a'], cols=3)
