"""Section 5 of reports/paper.md: a CIFAR-10 classifier with horse split into colour / grayscale
and ship into upright / upside down, visualized through the CIFAR-10 generator (Fig. S7).
The classifier's recipe is the default's (train_classifier's settings, seed 0) for 10 epochs
instead of 20 (CPU budget). Paths are relative to the working directory (the repository root).
"""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      section='split_classes', preset='cifar10', splits=((7, 'grayscale'), (8, 'upside_down')),
      split_seed=0, epochs=10.0, batch_size=128, width=1.0, fc_width=512, dropout=0.3, seed=0,
      seeds='0-29',
      iters=0, judge='checkpoints/cifar10/judge', data='../shared/data/cifar10_jpeg.npz',
      cache_dir='runs/data_cache'))
