"""The embedded default: the CIFAR-10 pair trained by this project (checkpoints/cifar10).

Settings: the best trial of the random search recorded in checkpoints/cifar10/MODEL_CARD.md.
Batch 10: the 10 classes fill whole calls for any number of seeds, densely packed (the default)
and with --slot_keyed too (slot (unit + 1009 seed) mod batch, and 1009 = 9 mod 10). Paths are
relative to this file.
"""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      generator='../checkpoints/cifar10/generator',
      classifier='../checkpoints/cifar10/classifier',
      layer='fc8', units='0-9', lr=4.5467, lr_end=1e-10, iters=200, l2=0.995, bounds_k=1.5,
      batch_per_device=10, gallery_scale=4))
