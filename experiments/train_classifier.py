r"""Trains the project's CaffeNet-like classifier (CIFAR-10, Tiny ImageNet or an image folder).

  python -m experiments.train_classifier --data=../shared/data/cifar10_jpeg.npz \
      --workdir=runs/cifar10_classifier --out=runs/cifar10_classifier/export \
      --cache_dir=runs/data_cache --epochs=30

``--data`` is a JPEG-pack ``.npz`` (train + test/val splits) or a folder ``root/<class>/*.jpg``
(or ``root/train/<class>`` with ``root/test/`` or ``root/val/``). Decoded images are cached as
uint8 ``.npy`` under ``--cache_dir``.

The run is **resumable**: Orbax checkpoints go to ``--workdir`` every ``--checkpoint_every_secs``
and at each epoch end; rerunning the same command after a kill continues from the last save with
the same data order (other flags must not change; a mismatch is an error). The log is also
written to ``<workdir>/train.log`` and the curves to ``<workdir>/training_curves.png``. When the
schedule ends, the deploy net (BatchNorm folded into the convs) is written to ``--out`` in the
project checkpoint format (CHECKPOINTS.md). A second classifier (e.g. the judge) is the same
command with another ``--seed``/``--width``, ``--workdir`` and ``--out``.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from dgnam_jax.nets import small, small_resnet
from dgnam_jax.training import classifier
from experiments import _training_log as runner

_ARCH = flags.DEFINE_enum('arch', 'caffenet', ['caffenet', 'resnet'], 'caffenet: the CaffeNet-like '
                          'net DGN-AM visualizes; resnet: a small ResNet (the independent judge).')
_WIDTH = flags.DEFINE_float('width', 1.0, 'Conv channel multiplier (caffenet 1.0: 32-64-96-96-64; '
                            'resnet 1.0: 16-32-64).')
_FC_WIDTH = flags.DEFINE_integer('fc_width', 512, 'Units of fc6 and fc7 (caffenet).')
_BLOCKS = flags.DEFINE_integer('blocks', 2, 'Residual blocks per stage (resnet).')
_SEED = flags.DEFINE_integer('seed', 0, 'Init, data order, augmentation and dropout seed.')
_EPOCHS = flags.DEFINE_float('epochs', 30.0, 'Schedule length in epochs.')
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Images per step.')
_OPTIMIZER = flags.DEFINE_enum('optimizer', 'sgd', ['sgd', 'adamw'], 'SGD (Nesterov) or AdamW.')
_LR = flags.DEFINE_float('lr', 0.1, 'Peak learning rate (warmup, then cosine to 0).')
_MOMENTUM = flags.DEFINE_float('momentum', 0.9, 'SGD momentum / AdamW b1.')
_WD = flags.DEFINE_float('weight_decay', 5e-4, 'Weight decay of conv/fc kernels.')
_WARMUP = flags.DEFINE_float('warmup_epochs', 1.0, 'Linear warmup length in epochs.')
_SMOOTHING = flags.DEFINE_float('label_smoothing', 0.1, 'Label smoothing.')
_DROPOUT = flags.DEFINE_float('dropout', 0.3, 'Dropout after relu6/relu7.')
_PAD = flags.DEFINE_integer('pad', 4, 'Random-crop padding (0: no crops).')
_FLIP = flags.DEFINE_bool('flip', True, 'Random horizontal flips.')


def main(argv) -> int:
  return runner.run('train_classifier', argv, _train, lambda r: (
      f'deploy-net test accuracy {r["test_acc"]:.4f}'))


def _train(train, test, workdir, out, run_info, **loop) -> dict:
  """Builds the net and the schedule from the flags and trains; see the module docstring."""
  shape = dict(num_classes=len(train.class_names), input_size=train.images.shape[1],
               width=_WIDTH.value)
  if _ARCH.value == 'resnet':
    config = small_resnet.SmallResNetConfig(blocks=_BLOCKS.value, **shape)
  else:
    config = small.SmallNetConfig(fc_width=_FC_WIDTH.value, **shape)
  cfg = classifier.TrainConfig(
      epochs=_EPOCHS.value, batch_size=_BATCH.value, optimizer=_OPTIMIZER.value, lr=_LR.value,
      momentum=_MOMENTUM.value, weight_decay=_WD.value, warmup_epochs=_WARMUP.value,
      label_smoothing=_SMOOTHING.value, dropout=_DROPOUT.value, pad=_PAD.value,
      flip=_FLIP.value, seed=_SEED.value)
  return classifier.train_classifier(train, test, config, cfg, workdir, out, run_info, **loop)



if __name__ == '__main__':
  flags.mark_flags_as_required(['data', 'workdir'])
  app.run(lambda argv: sys.exit(main(argv)))
