"""DGN-AM on a real ImageNet-1k net: EfficientNet-Lite1 (imported from its registry package,
converted on first use), through the project's Tiny ImageNet fc6 generator.

The generator's 64 px images are resized bilinearly to the net's 240 px input inside the
differentiable pipeline. Units are ImageNet-1k class indices (or wnids) on the logits ``_fc``.
The update settings are the Tiny default's (the DGN-AM step is normalised by the gradient's mean
magnitude, so its learning rate does not depend on the net's logit scale).
Paths are relative to this file.
"""

from ml_collections import config_dict


def get_config():
  return config_dict.ConfigDict(dict(
      generator='../checkpoints/tinyimagenet200/generator',
      classifier='registry:efficientnet_lite1',
      layer='_fc', units='1,281', lr=8.4519, lr_end=1e-10, iters=200, l2=0.99, bounds_k=2.0,
      batch_per_device=10, gallery_scale=2))
