"""The 64 px default: the Tiny ImageNet-200 pair trained by this project
(checkpoints/tinyimagenet200).

Settings from its own search (checkpoints/tinyimagenet200/settings_search.md). Batch 21: densely
packed (the default) the demo's 20 classes take one call; it is also coprime with 10, so with
--slot_keyed the demo's classes 0, 10, ..., 190 (and the search's 5, 15, ..., 195) still fill 20
distinct slots of one call (slot = (unit + 1009 seed) mod batch). Paths are relative to this
file.
"""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      generator='../checkpoints/tinyimagenet200/generator',
      classifier='../checkpoints/tinyimagenet200/classifier',
      layer='fc8', units='0-199', lr=8.4519, lr_end=1e-10, iters=300, l2=0.99, bounds_k=2.0,
      batch_per_device=21, gallery_scale=2))
