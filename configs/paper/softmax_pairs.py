"""Section 6 of reports/paper.md: similar classes, logit vs softmax objective (Fig. S8).

CIFAR-10 pairs on the CIFAR-10 default; ImageNet pairs (classes also in Tiny ImageNet, so KID
has real images) on the real net EfficientNet-Lite1, judged by Lite2. Paths are relative to the
working directory (the repository root)."""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      section='softmax_pairs',
      cifar=dict(preset='cifar10', pairs=((3, 5), (1, 9), (4, 7)), seeds='0-19', iters=0,
                 judge='checkpoints/cifar10/judge', data='../shared/data/cifar10_jpeg.npz',
                 cache_dir='runs/data_cache'),
      # tabby / Egyptian cat, golden / Labrador retriever, orange / lemon, sports car / wagon
      imagenet=dict(preset='efficientnet_lite1', pairs=((281, 285), (207, 208), (950, 951),
                                                         (817, 436)),
                    seeds='0-1', iters=0, judge='registry:efficientnet_lite2',
                    data='../shared/data/tinyimagenet200_jpeg.npz', cache_dir='runs/data_cache')))
