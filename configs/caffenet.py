"""CaffeNet fc8 classes with the DeePSim fc6 generator: the paper's main setting (Fig. 1).

The original script's settings (reference/original.md §4). The nets are your converted
checkpoints: pass --generator and --classifier (README: getting the weights).
"""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      generator=config_dict.placeholder(str), classifier=config_dict.placeholder(str),
      layer='fc8', units='643,624,304,629,437', lr=8.0,
      lr_end=1e-10, iters=200, l2=0.99, bounds_k=3.0))
