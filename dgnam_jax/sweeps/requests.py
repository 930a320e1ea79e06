"""What a sweep asks for: the ``--units`` syntax, one :class:`Request` per (unit, seed), grouping
of requests by their static :class:`~dgnam_jax.synthesis.objectives.Objective`, and short class
names.

``--units`` is a comma-separated list of items (spaces are ignored):

  ``17``         unit 17 (on a conv layer: channel 17 at the centre of the map, the original's xy)
  ``0-9``        units 0 to 9 inclusive
  ``12@3x5``     conv channel 12 at row 3, column 5
  ``mean:12``    the spatial mean of conv channel 12 (``mean:0-9`` for a range)
  ``n01443537``  the output unit of that WordNet id (nets whose class names start with wnids:
                 ImageNet-1k nets, the Tiny ImageNet classifier)
  ``643+945``    the paper's two-unit blend a1 + a2 - gamma (a1 - a2)^2 (``12@3x5+4`` blends two
                 channels at one position; ``mean:3+mean:5`` two channel means)

Order is kept exactly as written (never sorted); the same request twice is an error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from dgnam_jax.synthesis.batching import SLOT_SEED_STRIDE
from dgnam_jax.synthesis.objectives import Objective

UNITS_HELP = ('comma-separated units: 17 (one unit; conv layer: the centre position), 0-9 (a '
              'range), 12@3x5 (conv channel 12 at row 3, column 5), mean:12 (channel mean; '
              'mean:0-9), 643+945 (two-unit blend, see --gamma; 12@3x5+4 blends at one '
              'position). Order is kept; duplicates are an error.')

_TERM = re.compile(r'^(mean:)?(\d+)(?:@(\d+)x(\d+))?$')
_RANGE = re.compile(r'^(mean:)?(\d+)-(\d+)$')
_WNID = re.compile(r'^(n\d{8})\s+(.*)$')
_PLACES = re.compile(r'^/[a-z]/(\S+?)(?:\s+\d+)?$')  # categoryIndex_places205.txt: '/a/alley 2'


@dataclasses.dataclass(frozen=True)
class Request:
  """One image to synthesise.

  Attributes:
    unit: unit (fc) or channel (conv) index.
    position: (y, x) on a conv map; None means the centre (or not applicable).
    channel_mean: maximise the channel's spatial mean instead of one position.
    blend_unit: the second unit of a two-unit blend (same position / kind as ``unit``).
    seed: random seed of the initial code.
  """
  unit: int
  position: tuple[int, int] | None = None
  channel_mean: bool = False
  blend_unit: int | None = None
  seed: int = 0

  @property
  def kind(self) -> str:
    return 'channel_mean' if self.channel_mean else 'unit'

  @property
  def blend(self) -> bool:
    return self.blend_unit is not None

  def spec(self) -> str:
    """The request's ``--units`` item (without the seed)."""
    text = ('mean:' if self.channel_mean else '') + str(self.unit)
    if self.position is not None:
      text += f'@{self.position[0]}x{self.position[1]}'
    if self.blend:
      text += '+' + ('mean:' if self.channel_mean else '') + str(self.blend_unit)
    return text

  @property
  def slot_key(self) -> int:
    """The request's batch-slot key (``optimize_codes(slot_keys=...)``): its unit and seed only.

    ``unit + 1009 * seed``: consecutive units with a few seeds land in distinct slots of the usual
    power-of-two batches (1009 = 17 mod 32, 49 mod 64), so e.g. 10 classes x 2 seeds fill one
    call of 32; ``unit + seed`` would put (1, 0) and (0, 1) in the same slot, i.e. another call.
    """
    return self.unit + SLOT_SEED_STRIDE * self.seed

  def key(self) -> tuple:
    """Identity for duplicate detection: a blend is symmetric in its two units."""
    units = frozenset((self.unit, self.blend_unit)) if self.blend else self.unit
    return (units, self.position, self.channel_mean, self.seed)


def _term(text: str, item: str) -> tuple[int, tuple[int, int] | None, bool]:
  m = _TERM.match(text)
  if not m:
    raise ValueError(f'--units: cannot read {item!r}; expected 17, 0-9, 12@3x5, mean:12 or '
                     '643+945')
  mean, unit, y, x = m.groups()
  if mean and y is not None:
    raise ValueError(f'--units: {item!r}: a channel mean has no position')
  return int(unit), None if y is None else (int(y), int(x)), bool(mean)


_WNID_TOKEN = re.compile(r'n\d{8}')


def resolve_wnids(spec: str, class_names: Sequence[str] | None) -> str:
  """Replaces every wnid in a ``--units`` string by its output index among ``class_names``
  ('n01443537 goldfish, ...'); a wnid the net does not have is an error naming it."""
  if not _WNID_TOKEN.search(spec):
    return spec
  index = {}
  for i, name in enumerate(class_names or []):
    m = _WNID.match(name)
    if m:
      index[m.group(1)] = i
  if not index:
    raise ValueError(f'--units: {spec!r} names wnids, but the classifier has no wnid class names')

  def sub(m):
    if m.group(0) not in index:
      raise ValueError(f'--units: the classifier has no class {m.group(0)}')
    return str(index[m.group(0)])
  return _WNID_TOKEN.sub(sub, spec)


def parse_units(spec: str) -> list[Request]:
  """Parses a ``--units`` string (module docstring) into requests with seed 0, in order.

  Raises:
    ValueError: on a malformed item, an empty list, or a duplicate request.
  """
  out: list[Request] = []
  for item in (s.strip() for s in spec.replace(' ', '').split(',')):
    if not item:
      raise ValueError(f'--units: empty item in {spec!r}')
    m = _RANGE.match(item)
    if m:
      mean, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
      if hi < lo:
        raise ValueError(f'--units: empty range {item!r}')
      out += [Request(u, channel_mean=bool(mean)) for u in range(lo, hi + 1)]
      continue
    first, plus, second = item.partition('+')
    unit, pos, mean = _term(first, item)
    if not plus:
      out.append(Request(unit, pos, mean))
      continue
    unit2, pos2, mean2 = _term(second, item)
    if pos2 is not None:
      raise ValueError(f'--units: {item!r}: put the position on the first unit '
                       f'({unit}@{pos2[0]}x{pos2[1]}+{unit2} blends both at that position)')
    if mean != mean2:
      raise ValueError(f'--units: {item!r}: a blend needs two units or two channel means')
    if unit == unit2:
      raise ValueError(f'--units: {item!r} blends a unit with itself')
    out.append(Request(unit, pos, mean, unit2))
  check_unique(out)
  return out


def parse_seeds(spec: str | Sequence[str], flag: str = '--seeds') -> tuple[int, ...]:
  """Seeds from '0-4,7' (or a list of such items): integers and inclusive ranges a-b, in order.

  The one seed syntax of every runner (``--seeds``, ``--class_seeds``, ``--hidden_seeds``, ...).

  Raises:
    ValueError: naming ``flag`` for a malformed item, an empty range or list, or a repeat.
  """
  items = spec.split(',') if isinstance(spec, str) else [i for s in spec for i in s.split(',')]
  out: list[int] = []
  for item in (i.strip() for i in items):
    m = re.match(r'^(\d+)(?:-(\d+))?$', item)
    if not m:
      raise ValueError(f'{flag}: cannot read {item!r}; expected integers or ranges a-b, e.g. 0-4,7')
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if hi < lo:
      raise ValueError(f'{flag}: empty range {item!r}')
    out += range(lo, hi + 1)
  if not out:
    raise ValueError(f'{flag}: no seeds given')
  if len(set(out)) != len(out):
    raise ValueError(f'{flag}: a seed is repeated in {spec!r}')
  return tuple(out)


def check_unique(requests: Sequence[Request]) -> None:
  """Raises ValueError naming the first request that appears twice."""
  seen = set()
  for r in requests:
    if r.key() in seen:
      raise ValueError(f'--units: {r.spec()!r} is requested twice')
    seen.add(r.key())


def with_seeds(units: Sequence[Request], seeds: Sequence[int]) -> list[Request]:
  """Every unit with every seed: unit-major in ``units`` order, seeds inner."""
  if not seeds:
    raise ValueError('--seeds: at least one seed is needed')
  if len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise ValueError(f'--seeds: need distinct non-negative integers, got {list(seeds)}')
  return [dataclasses.replace(u, seed=int(s)) for u in units for s in seeds]


def objective_of(request: Request, layer: str, output: str, use_blob: bool) -> Objective:
  """The static objective a request compiles under (requests sharing it share one program)."""
  return Objective(layer, kind=request.kind, output=output, use_blob=use_blob,
                   blend=request.blend)


def short_class_name(entry: str) -> tuple[str, str | None]:
  """('tench', 'n01440764') for 'n01440764 tench, Tinca tinca'; ('alley', None) for Places'
  '/a/alley 2'; otherwise the first comma-separated gloss and None."""
  text, wnid = entry.strip(), None
  m = _WNID.match(text)
  if m:
    wnid, text = m.group(1), m.group(2)
  m = _PLACES.match(text)
  if m:
    text = m.group(1)
  return text.split(',')[0].strip(), wnid
