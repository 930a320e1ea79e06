"""Section 9 of reports/paper.md: memorization and real vs synthetic (Figs. S22, S23), on both
embedded defaults. Paths are relative to the working directory (the repository root)."""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      section='memorization', use=('cifar10', 'tinyimagenet200'),
      parts=dict(
          cifar10=dict(preset='cifar10', classes='0-9', seeds='0-9', iters=0,
                       code_layers=('fc6',), judge='checkpoints/cifar10/judge',
                       data='../shared/data/cifar10_jpeg.npz', cache_dir='runs/data_cache'),
          tinyimagenet200=dict(preset='tinyimagenet200', classes=','.join(str(c) for c in range(0, 200, 10)), seeds='0-4',
                               iters=0, code_layers=('fc6',),
                               judge='registry:efficientnet_lite2',
                               data='../shared/data/tinyimagenet200_jpeg.npz',
                               cache_dir='runs/data_cache'))))
