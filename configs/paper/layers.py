"""Section 1 of reports/paper.md: generators inverting conv3, pool5, fc6 and fc7 of the CIFAR-10
classifier (Fig. S13), one recipe (the CIFAR-10 generator's losses and lr, codes from a feature
cache, so no flips) and one budget each. Paths are relative to the working directory (the
repository root)."""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      section='layers', preset='cifar10', layers=('conv3', 'pool5', 'fc6', 'fc7'), cells=8,
      epochs=1.0, batch_size=64, lr=4e-4, w_img=6.0, fc_widths=(1024, 1024),
      start_channels=192, trunk=(128, 64, 32), eval_images=1000,
      classes='0-9', seeds='0-4', search_seeds='100-101', lr_grid=(1.0, 4.0, 16.0), iters=0,
      judge='checkpoints/cifar10/judge', data='../shared/data/cifar10_jpeg.npz',
      cache_dir='runs/data_cache'))
