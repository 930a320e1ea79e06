"""GoogLeNet classes through the CaffeNet-inverting generator (the paper's Sec. 3.5).

The original script's settings (reference/original.md §4). The nets are your converted
checkpoints: pass --generator and --classifier (README: getting the weights).
"""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      generator=config_dict.placeholder(str), classifier=config_dict.placeholder(str),
      layer='loss3/classifier', units='643,624,304,629,437', lr=2.0,
      lr_end=1e-10, iters=200, l2=0.99, bounds_k=3.0))
