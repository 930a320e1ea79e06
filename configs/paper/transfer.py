"""Section 8 of reports/paper.md: the CIFAR-10 fc6 generator on a classifier of another family
(the project's CIFAR-10 ResNet), judged by judge_caffenet (Sec. 3.5). Paths are relative to the
working directory (the repository root)."""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      section='transfer', preset='cifar10', classes='0-9', seeds='0-9', iters=0,
      other_classifier='checkpoints/cifar10/judge', judge='checkpoints/cifar10/judge_caffenet',
      data='../shared/data/cifar10_jpeg.npz', cache_dir='runs/data_cache',
      # Quoted from that report (its command and numbers are there).
      real_net=dict(
          report='reports/imagenet_efficientnet.md', link='imagenet_efficientnet.md',
          text='the Tiny ImageNet fc6 generator on EfficientNet-Lite1, judged by Lite2 on 50 '
               'classes seen in Tiny ImageNet: DGN-AM top-5 6.0 % (Fourier 98.0 %), KID 0.121 '
               '(Fourier 0.199); 50 unseen classes: top-5 12.0 % (Fourier 98.0 %). The '
               'generator keeps its realism on the new net but loses recognizability.')))
