"""What to maximise: a static :class:`Objective` (which layer, which kind of unit) and traced
:class:`Target` rows (which unit, where, which sign), so one compiled program serves any units.

Sign convention: every objective returns a value to *maximise*; ``sign=-1`` minimises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

KINDS = ('unit', 'channel_mean')
OUTPUTS = ('logit', 'softmax')


@dataclasses.dataclass(frozen=True)
class Objective:
  """The static part of a target (changing it recompiles).

  Attributes:
    layer: layer name in the classifier (Caffe's name, e.g. 'fc8', 'conv5', 'loss3/classifier').
    kind: 'unit' (an fc unit, or a conv channel at one (y, x)) or 'channel_mean' (conv only).
    output: 'logit' (the raw activation) or 'softmax' (probability over the layer's units;
      fc layers, the paper's S8 note).
    use_blob: read Caffe's blob of that name (after in-place layers such as ReLU) instead of the
      layer's raw output. The original uses the raw output (conv5 before relu5).
    blend: the paper's two-neuron blend: a1 + a2 - gamma * (a1 - a2)^2.
  """
  layer: str
  kind: str = 'unit'
  output: str = 'logit'
  use_blob: bool = False
  blend: bool = False

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'unknown objective kind {self.kind!r}; valid: {KINDS}')
    if self.output not in OUTPUTS:
      raise ValueError(f'unknown objective output {self.output!r}; valid: {OUTPUTS}')
    if self.output == 'softmax' and self.kind == 'channel_mean':
      raise ValueError('a softmax objective needs a single unit, not a channel mean')


@flax.struct.dataclass
class Target:
  """One request (or N stacked along a leading axis). All fields are traced int32/float32.

  Attributes:
    unit: unit (fc) or channel (conv) index.
    y, x: position on a conv map (-1: the centre, as the original's ``xy`` default); ignored
      for fc layers and channel means.
    unit2, y2, x2: the blend partner (ignored unless ``Objective.blend``).
    sign: +1 to maximise, -1 to minimise.
    gamma: weight of the blend penalty (a1 - a2)^2.
  """
  unit: jax.Array
  y: jax.Array
  x: jax.Array
  unit2: jax.Array
  y2: jax.Array
  x2: jax.Array
  sign: jax.Array
  gamma: jax.Array


def make_targets(units: Sequence[int], positions: Sequence[tuple[int, int] | None] | None = None,
                 partners: Sequence[int | None] | None = None,
                 partner_positions: Sequence[tuple[int, int] | None] | None = None,
                 minimize: bool | Sequence[bool] = False, gamma: float = 0.0) -> Target:
  """Stacks N requests into one :class:`Target` with a leading axis of N."""
  n = len(units)
  pos = lambda seq: [(-1, -1) if p is None else tuple(p) for p in (seq or [None] * n)]
  p1, p2 = pos(positions), pos(partner_positions)
  partners = [u if p is None else p for u, p in zip(units, partners or [None] * n)]
  signs = [-1.0 if m else 1.0 for m in (minimize if isinstance(minimize, Sequence)
                                         else [minimize] * n)]
  i32 = lambda v: jnp.asarray(np.asarray(v, np.int32))
  f32 = lambda v: jnp.asarray(np.asarray(v, np.float32))
  return Target(unit=i32(units), y=i32([p[0] for p in p1]), x=i32([p[1] for p in p1]),
                unit2=i32(partners), y2=i32([p[0] for p in p2]), x2=i32([p[1] for p in p2]),
                sign=f32(signs), gamma=f32([gamma] * n))


def _read(value: jax.Array, unit, y, x, objective: Objective) -> jax.Array:
  """The scalar activation of one unit of one sample (``value`` has no batch axis)."""
  if value.ndim == 1:  # fc layer
    if objective.output == 'softmax':
      return jax.nn.softmax(value)[unit]
    return value[unit]
  if value.ndim != 3:
    raise ValueError(f'layer {objective.layer!r} has a {value.ndim + 1}-D output; expected an '
                     'fc (N, C) or conv (N, H, W, C) layer')
  if objective.kind == 'channel_mean':
    return value[:, :, unit].mean()
  h, w = value.shape[:2]
  y = jnp.where(y < 0, h // 2, y)  # the original's xy=6 on 13x13 conv5 is the centre
  x = jnp.where(x < 0, w // 2, x)
  if objective.output == 'softmax':
    return jax.nn.softmax(value[y, x])[unit]
  return value[y, x, unit]


def activation(outputs, target: Target, objective: Objective) -> jax.Array:
  """The value to maximise for one sample.

  Args:
    outputs: a classifier's outputs for ONE sample with a leading batch axis of 1: either
      :class:`dgnam_jax.nets.NetOutputs` or a plain mapping from layer name to array.
    target: one (unbatched) :class:`Target`.
    objective: the static objective.

  Returns:
    A float32 scalar: sign * activation (or the blend of two activations).
  """
  if isinstance(outputs, Mapping):
    table = outputs
  else:
    table = outputs.blobs if objective.use_blob else outputs.layers
  if objective.layer not in table:
    raise KeyError(f'the classifier has no layer {objective.layer!r}')
  value = table[objective.layer][0].astype(jnp.float32)
  a1 = _read(value, target.unit, target.y, target.x, objective)
  if objective.blend:
    a2 = _read(value, target.unit2, target.y2, target.x2, objective)
    a1 = a1 + a2 - target.gamma * (a1 - a2) ** 2
  return target.sign * a1


def validate(objective: Objective, layer_shape: Sequence[int], units: Sequence[int],
             positions: Sequence[tuple[int, int] | None]) -> None:
  """Raises a clear ValueError for a unit or position outside the layer (NHWC/NC shape)."""
  channels = layer_shape[-1]
  for i, unit in enumerate(units):
    if not 0 <= unit < channels:
      raise ValueError(f'unit {unit} is out of range for layer {objective.layer!r} '
                       f'({channels} units)')
    pos = positions[i] if positions else None
    if pos is not None:
      if len(layer_shape) != 4:
        raise ValueError(f'unit {unit}: a position needs a conv layer; {objective.layer!r} is '
                         'fully connected')
      y, x = pos
      if not (0 <= y < layer_shape[1] and 0 <= x < layer_shape[2]):
        raise ValueError(f'unit {unit}: position ({y}, {x}) is outside the '
                         f'{layer_shape[1]}x{layer_shape[2]} map of {objective.layer!r}')
  if objective.kind == 'channel_mean' and len(layer_shape) != 4:
    raise ValueError(f'a channel mean needs a conv layer; {objective.layer!r} is fully connected')
