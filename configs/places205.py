"""Places205-CaffeNet fc8 scene classes (the paper's Fig. 4).

The original script's settings (reference/original.md §4). The nets are your converted
checkpoints: pass --generator and --classifier (README: getting the weights).
"""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      generator=config_dict.placeholder(str), classifier=config_dict.placeholder(str),
      layer='fc8', units='2,7,8,12,71', lr=8.0,
      lr_end=1e-10, iters=200, l2=0.99, bounds_k=3.0))
