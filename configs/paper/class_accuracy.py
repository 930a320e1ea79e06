"""Section 4 of reports/paper.md: per-class accuracy vs per-class recognizability on the 200
Tiny ImageNet classes (Fig. S10), judged by EfficientNet-Lite2. Paths are relative to the working
directory (the repository root)."""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      section='class_accuracy', preset='tinyimagenet200', classes='0-199', seeds='0-2',
      iters=0, judge='registry:efficientnet_lite2',
      data='../shared/data/tinyimagenet200_jpeg.npz', cache_dir='runs/data_cache'))
