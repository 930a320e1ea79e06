"""Section 7 of reports/paper.md: two-neuron blends on the CIFAR-10 default (Figs. S11, S12).
Paths are relative to the working directory (the repository root)."""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      section='blends', preset='cifar10', classes='0-9', seeds='0-1',
      gammas=(0.0, 0.03, 0.1, 0.3, 1.0), iters=0,  # 0: the preset's iterations
      judge='checkpoints/cifar10/judge', data='../shared/data/cifar10_jpeg.npz',
      cache_dir='runs/data_cache'))
