"""Section 3 of reports/paper.md: snapshots of the CIFAR-10 classifier retrained with the
default's recipe and seed (20 epochs, a snapshot every 2), and nets fitting 10 % and 25 % of the
data (no augmentation, no dropout or label smoothing; epochs chosen to reach ~100 % train
accuracy), all visualized through the CIFAR-10 generator (Figs. S6, S9). Paths are relative to
the working directory (the repository root)."""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      section='evolution', preset='cifar10', epochs=20.0, snapshot_every_epochs=2.0,
      batch_size=128, width=1.0, fc_width=512, seed=0, subsets=((0.1, 40.0), (0.25, 24.0)),
      classes='0-9', seeds='0-1', iters=0, judge='checkpoints/cifar10/judge',
      data='../shared/data/cifar10_jpeg.npz', cache_dir='runs/data_cache'))
