r"""Computes a generator's code bounds: per-unit mean and std of the encoder's code.

  python -m experiments.code_bounds --generator=checkpoints/cifar10/generator \
      --data=../shared/data/cifar10_jpeg.npz --split=test

The code is the encoder's post-ReLU blob (fc6) over held-out images (``--split``). The result is
stored in the generator checkpoint as ``bounds.npy`` of kind ``mean_std``: DGN-AM clips codes to
[0, mean + k std] with k = ``--bounds_k`` of ``experiments.synthesize`` (3 by default, as the
paper's [0, 3 sigma]). ``train_generator`` does this at export; this runner redoes it, e.g. over
other images or for a generator trained elsewhere.

A percentile box instead (a prior on codes fitted to real images; issue 21's lever 4):

  python -m experiments.code_bounds --generator=checkpoints/tinyimagenet200/generator \
      --data=../shared/data/tinyimagenet200_jpeg.npz --percentile=99 --out_file=p99.npy

writes the per-unit 99th percentile of the real codes as an upper-bounds file for
``synthesize --bounds=p99.npy`` (the box [0, p99]) and leaves the checkpoint unchanged.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app
from absl import flags

from dgnam_jax import files
from dgnam_jax.nets import checkpoint
from dgnam_jax.training import features, gen_eval
from experiments import _generator_flags as gflags

_GENERATOR = flags.DEFINE_string('generator', None, 'Generator checkpoint to write bounds into.')
_K = flags.DEFINE_float('bounds_k', 3.0, 'Default std multiple recorded with the bounds.')
_PERCENTILE = flags.DEFINE_float('percentile', None, 'Write the per-unit percentile of the codes '
                                 'to --out_file instead (an upper-bounds file for --bounds).',
                                 lower_bound=0.0, upper_bound=100.0)
_OUT_FILE = flags.DEFINE_string('out_file', None, 'The .npy written with --percentile.')
_CODES = flags.DEFINE_string('codes', None, 'For a generator of cached features '
                             '(train_generator --codes): the feature cache its codes come from.')


def write_bounds(generator: str, stats, bounds_k: float, source: str) -> None:
  """Stores (2, D) mean/std as the generator's bounds.npy and records it in dgnam.json."""
  meta = checkpoint.read_metadata(generator)
  shape = meta['generator']['code_shape']
  if list(stats.shape) != [2, *shape]:
    raise ValueError(f'{generator}: code statistics of shape {stats.shape[1:]}, the generator '
                     f'takes {shape}')
  files.atomic_save_npy(os.path.join(generator, 'bounds.npy'), stats)
  meta['generator'].update(bounds_file='bounds.npy', bounds_kind='mean_std', bounds_k=bounds_k,
                           bounds_from=source)
  files.atomic_write_text(os.path.join(generator, 'dgnam.json'), json.dumps(meta, indent=1))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if (_PERCENTILE.value is None) != (_OUT_FILE.value is None):
    raise app.UsageError('--percentile and --out_file go together')
  if _OUT_FILE.value and not _OUT_FILE.value.endswith('.npy'):
    raise app.UsageError(f'--out_file={_OUT_FILE.value}: must end in .npy')
  if not (_CODES.value or gflags.DATA.value):
    raise app.UsageError('pass --data (images to encode) or --codes (a feature cache)')
  gen = _GENERATOR.value
  try:  # the encoder only: the generator's parameters are not needed for its bounds
    meta = gen_eval.generator_metadata(gen)
    enc_path = gflags.ENCODER.value or gen_eval.encoder_checkpoint(gen, meta)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  layer = meta['generator'].get('code_layer', gen_eval.CODE_BLOB)
  if _PERCENTILE.value is not None and meta['generator'].get('code_signed'):
    raise app.UsageError(f'{gen} takes signed codes: a percentile file gives [0, upper]')
  if _CODES.value:  # another net's cached features: read, not recomputed
    codes, _ = features.load_features(_CODES.value, gflags.SPLIT.value, layer)
    return _write(gen, codes, None, f'{len(codes)} {gflags.SPLIT.value} features of {layer} in '
                  f'{files.relative_path(_CODES.value)}')
  if layer != gen_eval.CODE_BLOB or meta['generator']['encoder'].get('features'):
    raise app.UsageError(f'{gen} inverts {layer} of {enc_path} (cached features): pass '
                         '--codes=DIR, the feature cache it was trained on')
  encoder, params, enc_meta = checkpoint.load_checkpoint(enc_path)
  images, mean = gflags.images(), enc_meta['mean']['per_channel']
  source = f'{len(images)} {gflags.SPLIT.value} images of {gflags.DATA.value}'
  if _PERCENTILE.value is not None:
    return _write(gen, gen_eval.encode_codes(encoder, params, images, mean), None, source)
  return _write(gen, None, gen_eval.code_statistics(encoder, params, images, mean), source)


def _write(gen: str, codes, stats, source: str) -> int:
  """The percentile file (--percentile) or the checkpoint's mean/std bounds, from the codes
  (N, D) or their (2, D) statistics."""
  if _PERCENTILE.value is not None:
    upper = np.percentile(codes, _PERCENTILE.value, axis=0).astype(np.float32)
    files.atomic_save_npy(_OUT_FILE.value, upper)
    print(f'{_OUT_FILE.value}: per-unit {_PERCENTILE.value:g}th percentile of {codes.shape[1]} '
          f'code units over {source}; mean {upper.mean():.3f}, max {upper.max():.3f}; '
          f'{float((upper == 0).mean()):.0%} of units pinned at 0')
    return 0
  if stats is None:
    stats = gen_eval.statistics_of(codes)
  write_bounds(gen, stats, _K.value, source)
  upper = stats[0] + _K.value * stats[1]
  print(f'{gen}/bounds.npy: mean/std of {stats.shape[1]} code units over {source}; upper bound '
        f'(k={_K.value:g}) mean {upper.mean():.3f}, max {upper.max():.3f}; '
        f'{float((stats[0] == 0).mean()):.0%} of units never active')
  return 0


if __name__ == '__main__':
  flags.mark_flags_as_required(['generator'])
  app.run(lambda argv: sys.exit(main(argv)))
