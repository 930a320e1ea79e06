"""Section 2 of reports/paper.md: hidden units of the CIFAR-10 classifier at their receptive
field (Figs. S14-S16, S23). Paths are relative to the working directory (the repository root)."""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      section='receptive_fields', preset='cifar10',
      layers=('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7'), units='0-3',
      seeds='0', iters=0, data='../shared/data/cifar10_jpeg.npz', cache_dir='runs/data_cache'))
