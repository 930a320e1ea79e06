r"""Trains a DeePSim-style generator that inverts a project classifier's fc6 code.

  python -m experiments.train_generator --data=../shared/data/cifar10_jpeg.npz \
      --classifier=checkpoints/cifar10/classifier --workdir=runs/cifar10_generator/work \
      --out=runs/cifar10_generator/export --cache_dir=runs/data_cache

The classifier (``--classifier``, a project checkpoint) is the encoder (its post-ReLU fc6 is the
code), the comparator (its conv3 and pool5 blobs) and defines the pixel space (its mean). The
losses, their weights and the D/G balancing are DeePSim's (Dosovitskiy & Brox 2016), with the
terms normalised; see :mod:`dgnam_jax.training.generator`.

The run is **resumable** like ``train_classifier``: rerun the same command after a kill. Each
epoch writes ``training_curves.png`` and ``reconstructions.png`` (held-out images above G(E(x)))
to the workdir. At the end the generator is exported to ``--out`` with ``bounds.npy`` (per-unit
mean and std of fc6 over the held-out split; upper bound mean + 3 std) and its encoder's path.

With ``--codes=DIR`` (a cache of another net's features over the same dataset,
``experiments.encode_features``) G inverts that net's ``--code_layer`` instead, e.g.
EfficientNet-Lite1's pooled features; the classifier stays the comparator and pixel space, and
the exported generator names the cached net as its encoder. ``--upsample=resize_conv`` trains the
trunk as resize + conv (no checkerboard); the exported net is the same Caffe net.
``--comparator=registry:efficientnet_lite1`` adds a real net's feature loss (its
``--comparator_layers`` on images resized to ``--comparator_size``, weight ``--w_comp``).
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from dgnam_jax.nets import checkpoint
from dgnam_jax.nets import small_gen
from dgnam_jax.training import comparator, features, gen_eval, generator
from experiments import _training_log as runner

_DEFAULT = generator.GenTrainConfig()
_CLASSIFIER = flags.DEFINE_string('classifier', None, 'The classifier checkpoint to invert.')
_FC_WIDTHS = flags.DEFINE_list('fc_widths', ['1024', '1024'], 'Outputs of defc7 and defc6.')
_CODES = flags.DEFINE_string('codes', None, 'A feature cache (experiments.encode_features) of '
                             'the same dataset: G inverts its --code_layer instead of the '
                             'classifier\'s fc6; the classifier stays the comparator. Needs '
                             '--noflip --pad=0.')
_CODE_LAYER = flags.DEFINE_string('code_layer', '_avg_pooling', 'The cached layer G inverts.')
_UPSAMPLE = flags.DEFINE_enum('upsample', 'deconv', list(small_gen.UPSAMPLING), 'Trunk '
                              'upsampling: DeePSim\'s free deconvolutions, or nearest-neighbour '
                              'resize + 3x3 conv (no checkerboard; exported as the same deconvs).')
_COMPARATOR = flags.DEFINE_string('comparator', None, 'A real net as feature loss (e.g. '
                                  'registry:efficientnet_lite1), beside the classifier\'s own.')
_COMP_LAYERS = flags.DEFINE_list('comparator_layers', ['_blocks.4', '_blocks.10'],
                                 'Its compared outputs.')
_COMP_SIZE = flags.DEFINE_integer('comparator_size', 128, 'Images are resized to this side for '
                                  'it (bilinear).', lower_bound=8)
_W_COMP = flags.DEFINE_float('w_comp', 1.0, 'Weight of its feature loss (with --comparator).')
_START = flags.DEFINE_integer('start_channels', 192, 'Channels of the 4x4 map after defc5.')
_TRUNK = flags.DEFINE_list('trunk', None, 'Channels per stride-2 up-convolution; the image side is '
                           '4 * 2^len (default 128,64,32 for 32 px; 256,128,64,32 for 64 px).')
_EPOCHS = flags.DEFINE_float('epochs', _DEFAULT.epochs, 'Schedule length in epochs.')
_BATCH = flags.DEFINE_integer('batch_size', _DEFAULT.batch_size, 'Images per step.')
_LR = flags.DEFINE_float('lr', _DEFAULT.lr, 'Peak Adam learning rate of G (cosine decay).')
_LR_FLOOR = flags.DEFINE_float('lr_floor', _DEFAULT.lr_floor, 'Final G lr as a fraction of --lr.')
_LR_D = flags.DEFINE_float('lr_d', _DEFAULT.lr_d, 'Adam learning rate of D.')
_B1 = flags.DEFINE_float('b1', _DEFAULT.b1, 'Adam beta1 (G and D).')
_W_IMG = flags.DEFINE_float('w_img', _DEFAULT.w_img, 'Weight of the pixel loss.')
_W_CONV3 = flags.DEFINE_float('w_conv3', _DEFAULT.w_conv3, 'Weight of the conv3 feature loss.')
_W_POOL5 = flags.DEFINE_float('w_pool5', _DEFAULT.w_pool5, 'Weight of the pool5 feature loss.')
_W_ADV = flags.DEFINE_float('w_adv', _DEFAULT.w_adv, 'Weight of the adversarial loss (0: none).')
_SCALE = flags.DEFINE_float('output_scale', _DEFAULT.output_scale, 'G output multiplier while '
                            'training (folded into deconv0 on export).')
_BALANCE = flags.DEFINE_bool('balance', _DEFAULT.balance, "The original's D/G balancing.")
_PAD = flags.DEFINE_integer('pad', _DEFAULT.pad, 'Random-crop padding of the real images.')
_FLIP = flags.DEFINE_bool('flip', _DEFAULT.flip, 'Random horizontal flips.')
_SEED = flags.DEFINE_integer('seed', _DEFAULT.seed, 'Init, data order and augmentation seed.')
_EVAL_IMAGES = flags.DEFINE_integer('eval_images', 1000, 'Held-out images scored per epoch.')
_INIT_FROM = flags.DEFINE_string('init_from', None, 'A previous run\'s workdir (same '
                                 'architecture), or a .npz of its G and D written by '
                                 'dgnam_jax.training.generator.save_stage: start this run (a '
                                 'new stage with its own schedule and loss weights) from them.')
_EXPORT_PARTIAL = flags.DEFINE_bool('export_partial', False, 'With --stop_at_step: export the '
                                    'generator there (to look at a run mid-schedule).')


def main(argv) -> int:
  return runner.run('train_generator', argv, _train, lambda r: gen_eval.describe(r['metrics']))


def _train(train, test, workdir, out, run_info, **loop) -> dict:
  """Builds G and the schedule from the flags and trains; see the module docstring."""
  size = train.images.shape[1]
  trunk = _TRUNK.value or (['256'] if size > 32 else []) + ['128', '64', '32']
  if flags.FLAGS['w_comp'].present and not _COMPARATOR.value:
    raise ValueError('--w_comp weighs the --comparator loss: pass --comparator too')
  codes = features.cached_codes(_CODES.value, _CODE_LAYER.value) if _CODES.value else None
  if codes is not None:
    train = codes.train_subset(train)
  comp = (comparator.load_comparator(_COMPARATOR.value, _COMP_LAYERS.value, _COMP_SIZE.value)
          if _COMPARATOR.value else None)
  config = small_gen.SmallGenConfig(
      code_dim=codes.dim if codes else _code_dim(_CLASSIFIER.value),
      fc_widths=tuple(int(v) for v in _FC_WIDTHS.value),
      start_channels=_START.value, trunk=tuple(int(v) for v in trunk),
      upsample=_UPSAMPLE.value)
  cfg = generator.GenTrainConfig(
      epochs=_EPOCHS.value, batch_size=_BATCH.value, lr=_LR.value, lr_floor=_LR_FLOOR.value,
      lr_d=_LR_D.value, b1=_B1.value, w_img=_W_IMG.value, w_conv3=_W_CONV3.value,
      w_pool5=_W_POOL5.value, w_adv=_W_ADV.value, output_scale=_SCALE.value,
      balance=_BALANCE.value, pad=_PAD.value, flip=_FLIP.value, seed=_SEED.value,
      w_comp=_W_COMP.value if comp else 0.0)
  return generator.train_generator(train, test, _CLASSIFIER.value, config, cfg, workdir, out,
                                   run_info, eval_images=_EVAL_IMAGES.value,
                                   export_partial=_EXPORT_PARTIAL.value,
                                   init_from=_INIT_FROM.value, codes=codes, comparator=comp,
                                   **loop)


def _code_dim(classifier_path: str) -> int:
  meta = checkpoint.read_metadata(classifier_path)
  shape = next((b['shape'] for b in meta['blobs'] if b['name'] == generator.CODE_BLOB), None)
  if shape is None:
    raise ValueError(f'{classifier_path}: the classifier has no {generator.CODE_BLOB} blob')
  return int(shape[1])


if __name__ == '__main__':
  flags.mark_flags_as_required(['data', 'classifier', 'workdir'])
  app.run(lambda argv: sys.exit(main(argv)))
