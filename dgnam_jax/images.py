"""Image output: Caffe-space to RGB conversions, result file names, atomic image writes, montages.

This is the io layer: it imports nothing from dgnam_jax. Images are ``(H, W, 3)`` arrays; Caffe
space means BGR channel order, 0-255 scale, ImageNet mean subtracted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TEMP_PREFIX = '.tmp-'
# The authors' display window (act_max.py, save_image): pixels outside it are clipped.
ORIGINAL_RANGE = (-120.0, 120.0)
_FORMATS = {'.jpg': 'JPEG', '.jpeg': 'JPEG', '.png': 'PNG', '.gif': 'GIF'}
# Objective names that would read like another suffix and so break name uniqueness.
_RESERVED = re.compile(r'^(mean|min|blob|plus\d+|y\d+x\d+)$')


def caffe_to_rgb_original(img: np.ndarray) -> np.ndarray:
  """The authors' saved image: BGR->RGB, clip to [-120, 120], then old scipy's bytescale.

  Follows act_max.py's ``save_image`` step by step, in float64 as it ran: patchShow maps the
  clipped pixels to [0, 1], then scipy<=1.1 ``imsave`` -> ``toimage`` -> ``bytescale`` stretches
  the array's own min..max (over all channels together) to 0..255, adds 0.5 and truncates. The
  mean is never added back. A constant image comes out black (bytescale's cscale=0 -> 1 case).

  Args:
    img: (H, W, 3) float array in Caffe space.

  Returns:
    (H, W, 3) uint8 RGB.
  """
  lo, hi = ORIGINAL_RANGE
  data = np.clip(np.asarray(img, np.float64)[..., ::-1], lo, hi)
  # patchShow.normalize; kept (not folded into the stretch) so float rounding matches exactly.
  data = (data - lo) / (hi - lo)
  cmin, cmax = data.min(), data.max()
  cscale = cmax - cmin
  if cscale == 0:
    cscale = 1
  bytedata = (data - cmin) * (255.0 / cscale)
  return (bytedata.clip(0, 255) + 0.5).astype(np.uint8)


def caffe_to_rgb_mean(img: np.ndarray, mean_bgr) -> np.ndarray:
  """The photographic convention: add the mean back, clip to [0, 255], round, BGR->RGB.

  Args:
    img: (H, W, 3) float array in Caffe space.
    mean_bgr: per-channel BGR mean (3 values), or a BGR mean image, (3, h, w) or (h, w, 3),
      at least as large as ``img``; it is centre-cropped to ``img``'s size (offset (h-H)//2, as
      the original crops 256 -> 227).

  Returns:
    (H, W, 3) uint8 RGB.
  """
  img = np.asarray(img, np.float64)
  mean = np.asarray(mean_bgr, np.float64)
  if mean.size == 3:
    mean = mean.reshape(3)
  elif mean.ndim == 3:
    if mean.shape[-1] != 3 and mean.shape[0] == 3:
      mean = mean.transpose(1, 2, 0)
    h, w = img.shape[:2]
    mh, mw = mean.shape[:2]
    if mh < h or mw < w or mean.shape[-1] != 3:
      raise ValueError(f'mean image {mean.shape} cannot be cropped to {img.shape}')
    top, left = (mh - h) // 2, (mw - w) // 2
    mean = mean[top:top + h, left:left + w]
  else:
    raise ValueError(f'mean must have 3 values or be a 3-channel image, got {mean.shape}')
  rgb = np.rint(np.clip(img + mean, 0, 255))[..., ::-1]
  return np.ascontiguousarray(rgb.astype(np.uint8))


def enlarge(img_uint8: np.ndarray, factor: int) -> np.ndarray:
  """Nearest-neighbour upscaling by an integer factor (keeps every pixel visible as a block)."""
  if factor < 1:
    raise ValueError(f'factor must be >= 1, got {factor}')
  if factor == 1:
    return np.asarray(img_uint8)
  return np.repeat(np.repeat(img_uint8, factor, axis=0), factor, axis=1)


def _float_str(value) -> str:
  """str() of a float as the original printed its argparse floats: 8 -> '8.0', 0.99 -> '0.99'."""
  if isinstance(value, np.floating):
    return str(value)  # numpy prints the shortest repr of its own precision (float32 0.99).
  return str(float(value))


def request_name(layer: str, unit: int, iters: int, l2: float, lr: float, seed: int, *,
                 position: Sequence[int] | None = None, channel_mean: bool = False,
                 objective: str = 'logit', blend_unit: int | None = None,
                 gamma: float | None = None, minimize: bool = False,
                 use_blob: bool = False) -> str:
  """The result file stem; act_max.py's name for the original's kind of request, else extended.

  The original is ``{layer}_{unit:04d}_{iters:02d}_{l2}_{lr}__{seed}`` (e.g.
  ``fc8_0643_200_0.99_8.0__0``); a '/' in the layer ('loss3/classifier') stays and makes a
  sub-directory, as there. Suffixes, in this order, mark what the original could not ask for:
  ``_y{y}x{x}`` (conv unit position; the original dropped its xy), ``_mean`` (channel mean),
  ``_blob`` (post-in-place blob), ``_{objective}`` (unless 'logit'),
  ``_plus{blend_unit:04d}_g{gamma}`` (two-unit blend), ``_min`` (minimise). Distinct requests
  get distinct names, so the name is the resume key. ``gamma`` is ignored without a blend unit.

  Args:
    layer: Caffe layer name.
    unit: unit (fc) or channel (conv) index.
    iters: number of iterations.
    l2: code decay factor (printed with str(float), like the original's argparse floats).
    lr: start learning rate (same printing).
    seed: random seed.
    position: (y, x) of a conv unit, or None.
    channel_mean: the objective is the channel's spatial mean.
    objective: 'logit' (the original's), 'softmax', or another lowercase alphanumeric name.
    blend_unit: second unit of a two-unit blend, or None.
    gamma: the blend's gamma.
    minimize: the activation is minimised instead of maximised.
    use_blob: the objective reads the blob after in-place layers (e.g. post-ReLU).

  Returns:
    The file stem (no extension); may contain '/'.
  """
  parts = layer.split('/')
  if not layer or layer.startswith('/') or any(p in ('', '.', '..') for p in parts):
    raise ValueError(f'layer name {layer!r} cannot be used as a relative file path')
  if not re.fullmatch(r'[a-z][a-z0-9]*', objective) or _RESERVED.match(objective):
    raise ValueError(f'objective {objective!r} cannot be used in a file name')
  name = (f'{layer}_{int(unit):04d}_{int(iters):02d}_{_float_str(l2)}_{_float_str(lr)}'
          f'__{int(seed)}')
  if position is not None:
    y, x = position
    name += f'_y{int(y)}x{int(x)}'
  if channel_mean:
    name += '_mean'
  if use_blob:
    name += '_blob'
  if objective != 'logit':
    name += f'_{objective}'
  if blend_unit is not None:
    name += f'_plus{int(blend_unit):04d}'
    if gamma is not None:
      name += f'_g{_float_str(gamma)}'
  if minimize:
    name += '_min'
  return name


@functools.lru_cache(maxsize=1)
def _umask() -> int:
  """The process umask, read without changing it where /proc allows (os.umask sets it)."""
  with contextlib.suppress(OSError, ValueError):
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('Umask:'):
          return int(line.split()[1], 8)
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def default_mode(directory: bool = False) -> int:
  """The mode ``open``/``mkdir`` would give under the user's umask (0644 / 0755 under 022).

  Temporary files (``mkstemp``: 0600) and directories (``mkdtemp``: 0700) get it before they are
  renamed into place, so shared galleries and checkpoints stay readable by others.
  """
  return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = '') -> Iterator[str]:
  """Yields a temporary path beside ``path``; renames it onto ``path`` if the body succeeds.

  A killed writer leaves only a '.tmp-*' file (see files.cleanup_temp_files), never a truncated
  result, so a restarted sweep can trust every file that exists. No fsync: this guards against
  killed processes, not power loss, and fsync per image would dominate a sweep's io time.

  Args:
    path: the final file; its parent directories are created.
    suffix: extension for the temporary name (some writers choose the format from it).

  Yields:
    The temporary file's path (already created, empty).
  """
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=parent)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, default_mode())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def _as_pil(rgb) -> Image.Image:
  if isinstance(rgb, Image.Image):
    return rgb
  arr = np.asarray(rgb)
  if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
    raise ValueError(f'expected an (H, W, 3) uint8 RGB array, got {arr.shape} {arr.dtype}')
  return Image.fromarray(np.ascontiguousarray(arr), 'RGB')


def save_image(path: str, rgb_uint8) -> str:
  """Writes an RGB image atomically; the format follows the extension (.jpg q95, .png).

  Args:
    path: destination; parent directories are created.
    rgb_uint8: (H, W, 3) uint8 RGB array (or a PIL image).

  Returns:
    ``path``.
  """
  ext = os.path.splitext(path)[1].lower()
  if ext not in ('.jpg', '.jpeg', '.png'):
    raise ValueError(f'unsupported image extension {ext!r} in {path!r} (use .jpg or .png)')
  image = _as_pil(rgb_uint8)
  options = {'quality': 95} if _FORMATS[ext] == 'JPEG' else {}
  with atomic_path(path, ext) as tmp:
    image.save(tmp, format=_FORMATS[ext], **options)
  return path


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
  """Splits a label into lines no wider than ``width`` px (breaking inside words if needed)."""
  lines = []
  for paragraph in str(text).split('\n'):
    line = ''
    for char in paragraph:
      if line and draw.textlength(line + char, font=font) > width:
        # Prefer breaking at the last space so words stay whole when they fit.
        cut = line.rfind(' ')
        if cut > 0:
          lines.append(line[:cut])
          line = line[cut + 1:]
        else:
          lines.append(line)
          line = ''
      line += char
    lines.append(line)
  return lines


def grid(images: Sequence[np.ndarray], labels: Sequence[str], cols: int,
         scale: int = 1) -> Image.Image:
  """A labelled montage on white: tiles enlarged by ``scale``, each with its label below.

  Args:
    images: (H, W, 3) uint8 RGB arrays; tiles take the largest height and width.
    labels: one string per image (may be wrapped over several lines).
    cols: tiles per row.
    scale: nearest-neighbour enlargement of each tile.

  Returns:
    An RGB PIL image.
  """
  if len(images) != len(labels):
    raise ValueError(f'{len(images)} images but {len(labels)} labels')
  if not images:
    raise ValueError('grid needs at least one image')
  tiles = [enlarge(np.asarray(_as_pil(im)), scale) for im in images]
  tile_h = max(t.shape[0] for t in tiles)
  tile_w = max(t.shape[1] for t in tiles)
  font = ImageFont.load_default()
  measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
  wrapped = [_wrap(measure, label, font, tile_w) for label in labels]
  line_h = measure.textbbox((0, 0), 'Ag|', font=font)[3] + 1
  strip_h = line_h * max(len(lines) for lines in wrapped) + 2
  pad = 2
  cols = max(1, min(cols, len(tiles)))
  rows = -(-len(tiles) // cols)
  cell_w, cell_h = tile_w + pad, tile_h + strip_h + pad
  canvas = Image.new('RGB', (cols * cell_w + pad, rows * cell_h + pad), 'white')
  draw = ImageDraw.Draw(canvas)
  for i, (tile, lines) in enumerate(zip(tiles, wrapped)):
    r, c = divmod(i, cols)
    x0, y0 = pad + c * cell_w, pad + r * cell_h
    canvas.paste(Image.fromarray(tile), (x0, y0))
    for k, line in enumerate(lines):
      draw.text((x0, y0 + tile_h + 1 + k * line_h), line, fill='black', font=font)
  return canvas
