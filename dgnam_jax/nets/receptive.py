"""Receptive fields of a Caffe net's blobs, from its layer definitions.

For a blob on a spatial grid, unit (y, x) sees the input pixels of a box centred at
``start + (y, x) * jump`` of side ``size`` (before clipping to the image): each convolution or
pooling layer with (dilated) kernel k, stride s and padding p maps (size, jump, start) to
(size + (k - 1) jump, jump s, start + ((k - 1) / 2 - p) jump). Element-wise layers keep the field;
after an InnerProduct (or a global pooling) every unit sees the whole input.
"""

from __future__ import annotations

import dataclasses

from dgnam_jax.caffe import netdef as nd

_SAME = ('ReLU', 'Dropout', 'LRN', 'BatchNorm', 'Scale', 'Softmax', 'Split')


@dataclasses.dataclass(frozen=True)
class Field:
  """The receptive field of a blob's units, per axis (y, x)."""
  size: tuple[int, int]
  jump: tuple[int, int]
  start: tuple[float, float]  # centre of unit (0, 0), in input pixels

  def box(self, y: int, x: int, image: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), bottom/right exclusive, of unit (y, x), clipped to the
    ``image`` (height, width)."""
    out = []
    for i, pos in enumerate((y, x)):
      centre = self.start[i] + pos * self.jump[i]
      lo = int(round(centre - (self.size[i] - 1) / 2))
      out += [max(0, lo), min(image[i], lo + self.size[i])]
    return out[0], out[1], out[2], out[3]


def receptive_fields(netdef: nd.NetDef) -> dict[str, Field | None]:
  """{blob: its :class:`Field`, or None where each unit sees the whole input}.

  Raises:
    ValueError: a layer whose field this module does not model, named.
  """
  fields: dict[str, Field | None] = {}
  for name, _ in netdef.inputs:
    fields[name] = Field((1, 1), (1, 1), (0.0, 0.0))
  for layer in netdef.layers:
    if layer.type == 'Input':
      continue
    f = fields[layer.bottoms[0]]
    if layer.type in _SAME:
      out = f
    elif layer.type == 'InnerProduct' or f is None:
      out = None
    elif layer.type == 'Convolution' or (layer.type == 'Pooling'
                                         and not layer.param.global_pooling):
      p = layer.param
      dilation = getattr(p, 'dilation', (1, 1))
      k = [d * (kk - 1) + 1 for kk, d in zip(p.kernel, dilation)]
      out = Field(tuple(f.size[i] + (k[i] - 1) * f.jump[i] for i in range(2)),
                  tuple(f.jump[i] * p.stride[i] for i in range(2)),
                  tuple(f.start[i] + ((k[i] - 1) / 2 - p.pad[i]) * f.jump[i] for i in range(2)))
    elif layer.type == 'Pooling':  # global
      out = None
    else:
      raise ValueError(f'layer {layer.name!r}: receptive fields of {layer.type} layers are not '
                       'modelled')
    for top in layer.tops:
      fields[top] = out
  return fields
