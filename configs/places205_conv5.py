"""Places205-CaffeNet conv5 channels at the centre of the 13x13 map (the original's example 4).

The original script's settings (reference/original.md §4). The nets are your converted
checkpoints: pass --generator and --classifier (README: getting the weights).
"""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      generator=config_dict.placeholder(str), classifier=config_dict.placeholder(str),
      layer='conv5', units='8,55,154,181,45', lr=8.0,
      lr_end=1e-10, iters=200, l2=0.99, bounds_k=3.0))
