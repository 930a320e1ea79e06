"""Net registry: the paper's nets by name, plus the generic prototxt net.

``NETS[name]`` describes how to build a module and what its input means. Hand-written modules
(CaffeNet, Places205-AlexNet, DeePSim generators) are readable Flax code; GoogLeNet and ResNet-50
run on :class:`CaffeGraph` from the deploy prototxts shipped in ``dgnam_jax/nets/prototxt``.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any, Callable

from dgnam_jax.nets.caffenet import CaffeNet
from dgnam_jax.nets.deepsim import CODE_SHAPES, DeePSimGenerator
from dgnam_jax.nets.efficientnet_lite import CONFIGS as EFFICIENTNET_LITE, EfficientNetLite
from dgnam_jax.nets.graph import CaffeGraph, NetOutputs
from dgnam_jax.nets.small import CIFAR10_CONFIG, SmallCaffeNet
from dgnam_jax.nets.small_gen import CIFAR10_GEN_CONFIG, SmallDeePSim

IMAGENET_MEAN_BGR = (104.0, 117.0, 123.0)  # act_max.py's constant; the mean image averages these


@dataclasses.dataclass(frozen=True)
class NetInfo:
  """What the converter and loaders need to know about a named net.

  Attributes:
    kind: 'classifier' or 'generator'.
    prototxt: file name of the project's deploy prototxt (under dgnam_jax/nets/prototxt); empty
      for nets imported from PyTorch (``converters.torch_to_orbax``), which have none.
    input_size: (H, W) of the classifier input, or of the generator output.
    factory: builds the hand-written module from keyword args (dtype, precision), or None to run
      the generic :class:`CaffeGraph` on ``prototxt``.
    code_layer: for generators, the CaffeNet layer whose space the code lives in.
    output_blob: the blob a generator's image is read from.
  """
  kind: str
  prototxt: str
  input_size: tuple[int, int]
  factory: Callable[..., Any] | None = None
  code_layer: str | None = None
  output_blob: str | None = None


def _generator(variant):
  return NetInfo('generator', f'deepsim_{variant}.prototxt', (256, 256),
                 lambda **kw: DeePSimGenerator(variant, **kw), variant, 'deconv0')


NETS: dict[str, NetInfo] = {
    'caffenet': NetInfo('classifier', 'caffenet.prototxt', (227, 227),
                        lambda **kw: CaffeNet(1000, **kw)),
    'places205': NetInfo('classifier', 'places205.prototxt', (227, 227),
                         lambda **kw: CaffeNet(205, **kw)),
    'googlenet': NetInfo('classifier', 'googlenet.prototxt', (224, 224)),
    'resnet50': NetInfo('classifier', 'resnet50.prototxt', (224, 224)),
    'deepsim_fc6': _generator('fc6'),
    'deepsim_fc7': _generator('fc7'),
    'deepsim_pool5': _generator('pool5'),
    # The embedded CIFAR-10 classifier (dgnam_jax.nets.small; experiments/train_classifier.py).
    'cifar10_classifier': NetInfo('classifier', 'cifar10_classifier.prototxt', (32, 32),
                                  lambda **kw: SmallCaffeNet(CIFAR10_CONFIG, **kw)),
    # Its DeePSim-style fc6 generator (dgnam_jax.nets.small_gen; experiments/train_generator.py).
    'cifar10_generator': NetInfo('generator', 'cifar10_generator.prototxt', (32, 32),
                                 lambda **kw: SmallDeePSim(CIFAR10_GEN_CONFIG, **kw), 'fc6',
                                 'deconv0'),
}
# Real ImageNet-1k nets imported from PyTorch (dgnam_jax.nets.from_torch).
for _name, _config in EFFICIENTNET_LITE.items():
  NETS[_name] = NetInfo('classifier', '', (_config.image_size,) * 2,
                        lambda _c=_config, **kw: EfficientNetLite(_c, **kw))


def net_info(name: str) -> NetInfo:
  """Looks up a named net; an unknown name lists the valid ones."""
  if name not in NETS:
    raise ValueError(f'unknown net {name!r}; valid names: {", ".join(sorted(NETS))}')
  return NETS[name]


def prototxt_text(name: str) -> str:
  """The project's deploy prototxt of a named net."""
  return resources.files(__name__).joinpath('prototxt', net_info(name).prototxt).read_text()


__all__ = ['CODE_SHAPES', 'CaffeGraph', 'CaffeNet', 'DeePSimGenerator', 'EfficientNetLite', 'IMAGENET_MEAN_BGR',
           'NETS', 'NetInfo', 'NetOutputs', 'net_info', 'prototxt_text']
