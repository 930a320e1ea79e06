"""A sweep's codes before the search: the code box and each request's initial code."""

from __future__ import annotations

import hashlib

import numpy as np

from dgnam_jax import nets
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets.pipeline import codes_from_caffe
from dgnam_jax.synthesis import codes


def sha(array: np.ndarray | None) -> str | None:
  """sha256 of a float32 array's shape and bytes (None for None): the settings' content hash."""
  if array is None:
    return None
  array = np.ascontiguousarray(array, np.float32)
  return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()


def bounds(config, gen_meta, caffe_shape) -> tuple[np.ndarray | None, np.ndarray | None, dict]:
  """(lower or None for 0, upper or None, both in Caffe order) and their description."""
  if config.bounds == 'none':
    return None, None, {'source': 'none'}
  signed = bool((gen_meta.get('generator') or {}).get('code_signed'))
  if config.bounds:
    if signed:
      raise ValueError(f'--bounds={config.bounds}: a bounds file gives the box [0, upper], but '
                       f'the generator {config.generator} takes signed codes; use its own box '
                       '(--bounds_k) or --bounds=none')
    upper = codes.read_bounds_file(config.bounds, caffe_shape)
    return None, upper, {'source': 'file', 'sha256': sha(upper)}
  box = codes.generator_box(config.generator, gen_meta, config.bounds_k)
  if box is None:
    raise ValueError(f'the generator checkpoint {config.generator} stores no code bounds; pass '
                     '--bounds=FILE (e.g. act_range/3x/fc6.txt) or --bounds=none')
  lower, upper = box
  if upper.shape != tuple(caffe_shape):
    raise ValueError(f'the generator bounds have shape {upper.shape}, the code {caffe_shape}')
  desc = {'source': 'checkpoint', 'k': config.bounds_k, 'sha256': sha(upper)}
  if signed:
    desc['lower_sha256'] = sha(lower)  # [0, ub] descriptions stay as they were (resumes)
    return lower, upper, desc
  return None, upper, desc


def _encode_image(config, pipe, clf_params, clf_meta, gen_meta, dtype):
  """The code of ``config.init_file`` (act_max.py ``get_code``), shape (1, *internal)."""
  if config.encoder:
    enc, enc_params, enc_meta = checkpoint.load_checkpoint(config.encoder, dtype=dtype)
    enc_dir = config.encoder
  else:
    enc, enc_params, enc_meta, enc_dir = pipe.classifier, clf_params, clf_meta, config.classifier
  mean = checkpoint.load_array(enc_dir, 'mean') if enc_meta.get('mean') else None
  order, scale = enc_meta.get('channel_order', 'BGR'), float(enc_meta.get('pixel_scale', 255))
  if mean is None and (order, scale) == ('BGR', 255.0):
    mean = nets.IMAGENET_MEAN_BGR  # act_max.py subtracts the ImageNet mean (image)
  img = codes.load_image(config.init_file, enc_meta['input_size'], mean, order, scale)
  gen_info = gen_meta['generator']
  blob = (gen_info.get('encoder') or {}).get('blob') or gen_info['code_layer']
  code = codes.encode_images(enc, enc_params, img[None], blob)
  if tuple(code.shape[1:]) != tuple(pipe.code_shape):
    raise ValueError(f'encoder blob {blob!r} has shape {code.shape[1:]}; the generator takes '
                     f'{pipe.code_shape}')
  return code.astype(np.float32), enc_dir


def initial_codes(config, requests, pipe, clf_params, clf_meta, gen_meta, caffe_shape, dtype):
  """(N, *internal) initial codes, their settings entry, and an extra checkpoint (encoder)."""
  n = len(requests)
  if config.init_codes:
    try:
      arr = np.load(config.init_codes, allow_pickle=False)
    except (ValueError, OSError) as e:  # a pickled or corrupt file: never unpickled
      raise ValueError(f'--init_codes {config.init_codes}: not a numeric .npy ({e})') from None
    if arr.shape != (n, *caffe_shape):
      raise ValueError(f'--init_codes {config.init_codes} has shape {arr.shape}; expected '
                       f'{(n, *caffe_shape)} (one row per request, Caffe order)')
    if not np.isfinite(arr).all():
      raise ValueError(f'--init_codes {config.init_codes} contains NaN or inf')
    arr = codes_from_caffe(arr.astype(np.float32))
    return arr, {'kind': 'codes', 'sha256': sha(arr)}, None
  if config.init == 'seeded':
    arr = codes.seeded_codes([r.seed for r in requests], [r.unit for r in requests],
                             pipe.code_shape)
    return arr, {'kind': 'seeded'}, None
  if config.init == 'original':
    per_seed = {s: codes.original_codes(s, 1, caffe_shape)[0] for s in config.seeds}
    return np.stack([per_seed[r.seed] for r in requests]), {'kind': 'original'}, None
  code, enc_dir = _encode_image(config, pipe, clf_params, clf_meta, gen_meta, dtype)
  with open(config.init_file, 'rb') as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  return np.repeat(code, n, axis=0), {'kind': 'image', 'file_sha256': digest}, enc_dir
