"""Message tree (from text or binary; V0, V1 or V2 net) -> :class:`NetDef`.

Follows what Caffe does between reading a net and running it in the TEST phase: the V0 -> V1 -> V2
upgrades (``upgrade_proto.cpp``: padding layers folded into the next conv/pool, enum types to
strings, net-level inputs to an "input" layer of type Input), ``Net::FilterNet`` (NetStateRule
include/exclude for phase TEST, level 0 and the prototxt's stages), then ``InsertSplits``. Layers
a deploy net does not run (data, loss, accuracy, ...) are dropped before the graph is checked.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dgnam_jax.caffe import netdef as nd
from dgnam_jax.caffe import schema
from dgnam_jax.caffe import typed_params
from dgnam_jax.caffe.textformat import Ident, Message

_DROPPED_TYPES = frozenset(('Data', 'ImageData', 'HDF5Data', 'MemoryData', 'WindowData',
                            'DummyData', 'Accuracy', 'Silence', 'HDF5Output'))

# V0 field -> (V2 parameter message, field) per V0 type; None: accepted and ignored (fillers).
_CONV_V0 = {'num_output': 'num_output', 'biasterm': 'bias_term', 'pad': 'pad',
            'kernelsize': 'kernel_size', 'group': 'group', 'stride': 'stride',
            'weight_filler': None, 'bias_filler': None}
_V0_FIELDS: dict[str, tuple[str, dict[str, str | None]]] = {
    'conv': ('convolution_param', _CONV_V0),
    'innerproduct': ('inner_product_param', {'num_output': 'num_output', 'biasterm': 'bias_term',
                                             'weight_filler': None, 'bias_filler': None}),
    'pool': ('pooling_param', {'pad': 'pad', 'kernelsize': 'kernel_size', 'stride': 'stride',
                               'pool': 'pool'}),
    'dropout': ('dropout_param', {'dropout_ratio': 'dropout_ratio'}),
    'lrn': ('lrn_param', {'local_size': 'local_size', 'alpha': 'alpha', 'beta': 'beta',
                          'k': 'k'}),
    'concat': ('concat_param', {'concat_dim': 'concat_dim'}),
}
_V0_ANY_TYPE = frozenset(('name', 'type', 'blobs', 'blobs_lr', 'weight_decay'))


def is_dropped_type(layer_type: str) -> bool:
  """Whether a deploy (TEST-phase forward) net drops layers of this V2 type."""
  return layer_type in _DROPPED_TYPES or layer_type.endswith('Loss')


@dataclasses.dataclass
class _Raw:
  """A layer after the version upgrade, before filtering and typing."""
  name: str
  type: str
  bottoms: list[str]
  tops: list[str]
  msg: Message  # holds the `<x>_param` fields under their V2 names
  table: str  # schema table for the unknown-field check of `msg` ('' = synthesised)
  line: int = 0
  include: list[Any] = dataclasses.field(default_factory=list)
  exclude: list[Any] = dataclasses.field(default_factory=list)
  param: nd.LayerParam | None = None  # prebuilt (the net-input layer)
  v0: Message | None = None  # the original V0 layer, checked against its own table
  v0_bad_field: str | None = None


class _Ctx:
  """Error formatting for one file."""

  def __init__(self, filename: str):
    self.filename = filename

  def error(self, what: str, line: int = 0) -> nd.CaffeFormatError:
    where = f'{self.filename}:{line}' if line else self.filename
    return nd.CaffeFormatError(f'{where}: {what}')

  def strings(self, msg: Message, name: str, where: str) -> list[str]:
    values = msg.getall(name)
    for v in values:
      if not isinstance(v, str):
        raise self.error(f'{where}: {name} must be a string, got {v!r}', msg.lines.get(name, 0))
    return [str(v) for v in values]

  def string(self, msg: Message, name: str, where: str) -> str:
    values = self.strings(msg, name, where)
    return values[-1] if values else ''


def check_fields(msg: Message, table: str, where: str, ctx: _Ctx,
                 skip: frozenset[str] = frozenset()) -> None:
  """Rejects field names ``table`` does not have (text input); recurses into known messages."""
  known = schema.BY_NAME[table]
  for name, values in msg.fields.items():
    line = msg.lines.get(name, msg.line)
    if name not in known:
      raise ctx.error(f'unknown field {name!r} in {where}', line)
    field = known[name][1]
    if name in skip:
      continue
    is_msg = field.kind == 'message'
    for v in values:
      if isinstance(v, Message) != is_msg:
        want = 'a message { ... }' if is_msg else 'a value, not a message'
        raise ctx.error(f'field {name!r} in {where} must be {want}', line)
      if is_msg and field.sub is not None:
        check_fields(v, field.sub, f'{name} in {where}', ctx)


def _from_v2(m: Message, ctx: _Ctx) -> _Raw:
  name = ctx.string(m, 'name', 'layer')
  where = f'layer {name!r}'
  return _Raw(name, ctx.string(m, 'type', where), ctx.strings(m, 'bottom', where),
              ctx.strings(m, 'top', where), m, 'LayerParameter', m.line, m.getall('include'),
              m.getall('exclude'))


def _from_v1(m: Message, ctx: _Ctx) -> _Raw:
  name = ctx.string(m, 'name', 'layer')
  where = f'layer {name!r}'
  value, enum = m.get('type', 0), schema.ENUMS['V1LayerType']
  if isinstance(value, int) and not isinstance(value, bool) and value in enum:
    value = enum[value]
  if not isinstance(value, Ident) and value not in schema.V1_TO_V2_TYPE:
    raise ctx.error(f'{where}: type {value!r} is not a V1 layer type (an enum such as '
                    'CONVOLUTION)', m.lines.get('type', m.line))
  layer_type = schema.V1_TO_V2_TYPE.get(str(value), str(value))
  return _Raw(name, layer_type, ctx.strings(m, 'bottom', where), ctx.strings(m, 'top', where),
              m, 'V1LayerParameter', m.line, m.getall('include'), m.getall('exclude'))


def _from_v0(entry: Message, v0: Message, bottoms: list[str], ctx: _Ctx) -> _Raw:
  name = ctx.string(v0, 'name', 'layer')
  where = f'layer {name!r}'
  type0 = ctx.string(v0, 'type', where)
  v1_type = schema.V0_TO_V1_TYPE.get(type0)
  layer_type = schema.V1_TO_V2_TYPE[v1_type] if v1_type else type0
  param_name, mapping = _V0_FIELDS.get(type0, ('', {}))
  msg, param, bad = Message(v0.line), Message(v0.line), None
  for field, values in v0.fields.items():
    if field in _V0_ANY_TYPE:
      continue
    if field in mapping:
      if mapping[field] is not None:
        for v in values:
          param.add(mapping[field], v, v0.lines.get(field, 0))
    elif not is_dropped_type(layer_type):  # data layers' own fields: the layer goes anyway
      bad = bad or field
  if param.fields:
    msg.add(param_name, param, v0.line)
  return _Raw(name, layer_type, bottoms, ctx.strings(entry, 'top', where), msg, '',
              entry.line, v0=v0, v0_bad_field=bad)


def _fold_v0(entries: list[Message], inputs: list[str], ctx: _Ctx) -> list[_Raw]:
  """Converts V0 entries, folding each "padding" layer into the conv/pool layer it feeds."""
  producer: dict[str, int] = {name: -1 for name in inputs}
  pads: dict[int, tuple[str, Any]] = {}  # padding layer index -> (its bottom, pad)
  out = []
  for i, entry in enumerate(entries):
    v0 = entry.get('layer')
    if not isinstance(v0, Message):
      raise ctx.error('a V0 "layers" entry must hold one "layer { ... }" message', entry.line)
    name = ctx.string(v0, 'name', 'layer')
    where = f'layer {name!r}'
    type0 = ctx.string(v0, 'type', where)
    bottoms = ctx.strings(entry, 'bottom', where)
    for j, bottom in enumerate(bottoms):
      src = producer.get(bottom, -1)
      if src not in pads:
        continue
      if type0 not in ('conv', 'pool') or len(bottoms) != 1:
        raise ctx.error(f'{where}: a V0 padding layer can only feed a single-input conv or pool '
                        f'layer, not {type0!r}', entry.line)
      bottoms[j], pad = pads[src]
      v0 = _with_field(v0, 'pad', pad)
    if type0 == 'padding':
      tops = ctx.strings(entry, 'top', where)
      if len(bottoms) != 1 or len(tops) != 1:
        raise ctx.error(f'{where}: a V0 padding layer needs exactly one bottom and one top',
                        entry.line)
      pads[i] = (bottoms[0], v0.get('pad', 0))
    else:
      out.append(_from_v0(entry, v0, bottoms, ctx))
    for top in ctx.strings(entry, 'top', where):
      producer[top] = i
  return out


def _with_field(msg: Message, name: str, value: Any) -> Message:
  copy = Message(msg.line)
  copy.fields = {k: list(v) for k, v in msg.fields.items()}
  copy.lines = dict(msg.lines)
  copy.fields[name] = [value]
  return copy


def _input_layer(msg: Message, ctx: _Ctx) -> _Raw | None:
  """Net-level ``input`` + ``input_shape``/``input_dim`` -> the layer Caffe's upgrader makes."""
  inputs = ctx.strings(msg, 'input', 'net')
  if not inputs:
    return None
  line = msg.lines.get('input', 0)
  p = typed_params.Params(msg, 'net')
  shapes, dims = p.shapes('input_shape'), p.ints('input_dim')
  if shapes and dims:
    raise ctx.error('give input_shape or input_dim for the net inputs, not both', line)
  if dims:
    if len(dims) != 4 * len(inputs):
      raise ctx.error(f'input_dim must hold 4 values per input: {len(dims)} values for '
                      f'{len(inputs)} inputs', line)
    shapes = [tuple(dims[i:i + 4]) for i in range(0, len(dims), 4)]
  if len(shapes) != len(inputs):
    raise ctx.error(f'each net input needs one input_shape (or 4 input_dim values): '
                    f'{len(inputs)} inputs, {len(shapes)} shapes', line)
  for shape in shapes:
    if any(d < 1 for d in shape):
      raise ctx.error(f'net input shape {shape} has a dim < 1', line)
  return _Raw('input', 'Input', [], inputs, Message(), '', line,
              param=nd.InputParam(shapes=tuple(shapes)))


def _meets_rule(rule: Message, stages: set[str]) -> bool:
  """Caffe's StateMeetsRule for the state (phase TEST, level 0, ``stages``)."""
  p = typed_params.Params(rule, 'rule')
  if p.has('phase') and p.enum('phase', 'Phase', 'TEST') != 'TEST':
    return False
  if p.int('min_level', 0) > 0 or p.int('max_level', 0) < 0:
    return False
  if any(s not in stages for s in rule.getall('stage')):
    return False
  return not any(s in stages for s in rule.getall('not_stage'))


def _keep(raw: _Raw, stages: set[str], ctx: _Ctx) -> bool:
  if raw.include and raw.exclude:
    raise ctx.error(f'layer {raw.name!r}: give include rules or exclude rules, not both',
                    raw.line)
  if raw.include:
    return any(_meets_rule(r, stages) for r in raw.include)
  return not any(_meets_rule(r, stages) for r in raw.exclude)


def _typed(raw: _Raw, ctx: _Ctx) -> nd.LayerDef:
  where = f'layer {raw.name!r}'
  if raw.table:
    check_fields(raw.msg, raw.table, where, ctx, skip=frozenset(('layer',)))
  if raw.v0 is not None:
    check_fields(raw.v0, 'V0LayerParameter', where, ctx)
    if raw.v0_bad_field:
      raise ctx.error(f'{where}: field {raw.v0_bad_field!r} is not valid in a V0 layer of type '
                      f'{raw.v0.get("type")!r}', raw.v0.lines.get(raw.v0_bad_field, raw.line))
  if raw.type not in typed_params.SUPPORTED_TYPES:
    raise ctx.error(f'unsupported layer type {raw.type or "(none)"} in layer {raw.name!r} '
                    f'({ctx.filename})', raw.line)
  param = raw.param
  if param is None:
    field = typed_params.PARAM_FIELD.get(raw.type)
    try:
      param = typed_params.build(raw.type, raw.msg.get(field) if field else None, raw.bottoms,
                                 raw.tops)
    except typed_params.ParamError as err:
      raise ctx.error(f'{where} ({raw.type}): {err}', raw.line) from None
  return nd.LayerDef(raw.name, raw.type, tuple(raw.bottoms), tuple(raw.tops), param)


def _check_graph(layers: list[nd.LayerDef], lines: list[int], ctx: _Ctx) -> None:
  seen: dict[str, int] = {}
  produced: set[str] = set()
  for layer, line in zip(layers, lines):
    if layer.name in seen:
      raise ctx.error(f'duplicate layer name {layer.name!r}', line)
    seen[layer.name] = line
    for bottom in layer.bottoms:
      if bottom not in produced:
        raise ctx.error(
            f'layer {layer.name!r} takes bottom blob {bottom!r}, which no earlier layer produces '
            '(data, loss and accuracy layers are skipped: use a deploy prototxt with an Input '
            'layer or net-level input)', line)
    for j, top in enumerate(layer.tops):
      in_place = j < len(layer.bottoms) and layer.bottoms[j] == top
      if top in produced and not in_place:
        raise ctx.error(f'layer {layer.name!r}: top blob {top!r} is already produced by an '
                        'earlier layer (only in-place reuse, top == bottom, is allowed)', line)
      produced.add(top)


def insert_splits(layers: list[nd.LayerDef]) -> list[nd.LayerDef]:
  """Caffe's InsertSplits: a top read by several bottoms gets a Split layer after its producer.

  The Split layer is named ``<blob>_<producer>_<top index>_split`` and its tops
  ``<blob>_<producer>_<top index>_split_<i>``; the i-th consumer (in layer order) reads the i-th.
  """
  last_top: dict[str, tuple[int, int]] = {}
  source: dict[tuple[int, int], tuple[int, int]] = {}  # (layer, bottom) -> (layer, top)
  readers: dict[tuple[int, int], int] = {}
  for i, layer in enumerate(layers):
    for j, bottom in enumerate(layer.bottoms):
      source[i, j] = last_top[bottom]
      readers[last_top[bottom]] = readers.get(last_top[bottom], 0) + 1
    for j, top in enumerate(layer.tops):
      last_top[top] = (i, j)
  taken: dict[tuple[int, int], int] = {}
  out = []
  for i, layer in enumerate(layers):
    bottoms = list(layer.bottoms)
    for j, bottom in enumerate(bottoms):
      src = source[i, j]
      if readers[src] > 1:
        k = taken.get(src, 0)
        taken[src] = k + 1
        bottoms[j] = f'{bottom}_{layers[src[0]].name}_{src[1]}_split_{k}'
    out.append(dataclasses.replace(layer, bottoms=tuple(bottoms)))
    for j, top in enumerate(layer.tops):
      n = readers.get((i, j), 0)
      if n > 1:
        stem = f'{top}_{layer.name}_{j}_split'
        out.append(nd.LayerDef(stem, 'Split', (top,), tuple(f'{stem}_{k}' for k in range(n))))
  return out


def normalize(msg: Message, filename: str) -> nd.NetDef:
  """Turns a parsed NetParameter (text or binary, V0/V1/V2) into the TEST-phase :class:`NetDef`.

  Raises:
    CaffeFormatError: naming ``filename`` (and the layer and line where known).
  """
  ctx = _Ctx(filename)
  check_fields(msg, 'NetParameter', 'the net', ctx, skip=frozenset(('layer', 'layers')))
  v2, v1 = msg.getall('layer'), msg.getall('layers')
  if v2 and v1:
    raise ctx.error('the net mixes "layer" (V2) and "layers" (V1/V0) entries')
  for entry in v2 + v1:
    if not isinstance(entry, Message):
      raise ctx.error('"layer"/"layers" entries must be messages { ... }')
  inputs = ctx.strings(msg, 'input', 'net')
  raws = [r for r in [_input_layer(msg, ctx)] if r is not None]
  if v2:
    raws += [_from_v2(m, ctx) for m in v2]
  else:
    v0 = [m for m in v1 if 'layer' in m]
    if v0 and len(v0) != len(v1):
      raise ctx.error('the net mixes V0 ("layers { layer { ... } }") and V1 entries')
    raws += _fold_v0(v1, inputs, ctx) if v0 else [_from_v1(m, ctx) for m in v1]
  state = msg.get('state')
  stages = set(ctx.strings(state, 'stage', 'state')) if isinstance(state, Message) else set()
  kept = [r for r in raws if _keep(r, stages, ctx) and not is_dropped_type(r.type)]
  layers = [_typed(r, ctx) for r in kept]
  _check_graph(layers, [r.line for r in kept], ctx)
  return nd.NetDef(name=ctx.string(msg, 'name', 'net'), layers=tuple(insert_splits(layers)),
                   source=ctx.filename)
