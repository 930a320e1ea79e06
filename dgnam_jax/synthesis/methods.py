"""Methods are values: a registry from a name to (recipe builder, static options, search space).

Built in (``reference/peers.md``; the paper's Fig. S17 comparison):

* ``dgnam``: the original (act_max.py): generator codes, the normalized step on the image and on
  the code, the code box and the L2 factor, stop at a zero gradient, the last drawn image.
* ``dgnam_adam``: the ablation Lucent's GAN parameterization uses: Adam on the code's raw
  gradient (``lr`` is Adam's step size); box and L2 unchanged.
* ``pixel``: plain ascent on the pixels with DGN-AM's normalized step, pixels kept in
  ``[-mean, 255 - mean]``; ``pixel_l2`` adds a decay factor per step (Simonyan et al. 2014);
  ``pixel_blur`` is Yosinski et al. 2015 (decay, a blur every few steps, jitter, zeroing weak
  pixels); ``pixel_tv`` is Mahendran & Vedaldi 2016 (total variation, jitter).
* ``fourier``: Lucid's decorrelated Fourier parameterization with Adam under random jitter,
  scale and rotation.

A new method is one :class:`Method` passed to :func:`register`; synthesis, settings search,
evaluation, reports and the demo find it by name. Outside this package, a module that registers
methods and is named in ``$DGNAM_JAX_METHODS`` (comma-separated) is imported with this one, so
the runners accept its methods too. A method's static options (``--method_args``,
e.g. ``tv=0.1,jitter=2``) are the fields of its ``options`` dataclass.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dgnam_jax.synthesis import parameterizations as params_lib
from dgnam_jax.synthesis import regularizers as regs
from dgnam_jax.synthesis.loop import Recipe, Returns, Stop
from dgnam_jax.synthesis.transforms import ADAM, NORMALIZED


@dataclasses.dataclass(frozen=True)
class NoOptions:
  """A method without static options."""


@dataclasses.dataclass(frozen=True)
class PixelOptions:
  """Static options of the pixel-space methods (``--method_args``)."""
  l2: float = 1.0  # decay factor applied to the image after each step (1: none)
  blur_every: int = 0  # Gaussian blur of the image every this many steps (0: never)
  blur_sigma: float = 0.0  # its standard deviation in pixels
  jitter: int = 0  # largest random shift (pixels) of the image the gradient is taken on
  norm_pct: float = 0.0  # zero pixels whose channel norm is below this percentile (0: off)
  contrib_pct: float = 0.0  # zero pixels whose contribution sum_c |x g| is below it (0: off)
  tv: float = 0.0  # weight of the total-variation penalty (mean squared neighbour difference)
  decay_power: float = 1.0  # the Fourier spectrum's 1/f^power scaling
  scale: float = 0.0  # random scale in [1 - scale, 1 + scale]
  rotate_deg: float = 0.0  # random rotation in [-rotate_deg, rotate_deg] degrees


def _image_regularizers(o: PixelOptions) -> list:
  out = []
  if o.jitter or o.scale or o.rotate_deg:
    out.append(regs.RandomTransform(o.jitter, o.scale, o.rotate_deg))
  if o.tv:
    out.append(regs.TotalVariation(o.tv))
  return out


def pixel_recipe(o: PixelOptions) -> Recipe:
  """Pixels, the normalized step, then decay, weak-pixel zeroing, the pixel range and a blur."""
  out = _image_regularizers(o)
  if o.l2 < 1:
    out.append(regs.Decay(o.l2))
  if o.norm_pct or o.contrib_pct:
    out.append(regs.ZeroWeakPixels(o.norm_pct, o.contrib_pct))
  out.append(regs.PixelRange())
  if o.blur_every:
    out.append(regs.BlurEvery(o.blur_every, o.blur_sigma))
  return Recipe(params_lib.Pixels(), NORMALIZED, regularizers=tuple(out))


def fourier_recipe(o: PixelOptions) -> Recipe:
  """Lucid: a decorrelated spectrum, Adam, transformation robustness (no projection)."""
  return Recipe(params_lib.FourierSpectrum(decay_power=o.decay_power), ADAM,
                regularizers=tuple(_image_regularizers(o)))


@dataclasses.dataclass(frozen=True)
class CodeOptions:
  """Static options of the methods on generator codes (``--method_args``)."""
  shrink: float = 0.0  # soft threshold after each step, before box and L2 (an L1 prior; 0: off)


def _code_regularizers(o: CodeOptions | None) -> tuple:
  if o and not (np.isfinite(o.shrink) and o.shrink >= 0):
    raise ValueError(f'--method_args: shrink must be a finite number >= 0, not {o.shrink}')
  # Shrink before the box, so a box away from 0 (signed codes) still holds afterwards.
  shrink = (regs.Shrink(o.shrink),) if o and o.shrink else ()
  return shrink + (regs.CodeBox(), regs.Decay())


def dgnam_recipe(options: CodeOptions | None = None) -> Recipe:
  """act_max.py: normalized image and code steps, code box then L2, zero-gradient stop."""
  return Recipe(params_lib.GeneratorCode(), NORMALIZED, image_update=NORMALIZED,
                regularizers=_code_regularizers(options), stop=Stop.ZERO_GRADIENT,
                returns=Returns.LAST_DRAWN)


def dgnam_adam_recipe(options: CodeOptions | None = None) -> Recipe:
  """The Adam ablation: Adam on the raw code gradient; box and L2 as DGN-AM."""
  return Recipe(params_lib.GeneratorCode(), ADAM, regularizers=_code_regularizers(options),
                stop=Stop.ZERO_OR_NONFINITE, returns=Returns.LAST_DRAWN)


def loguniform(rng, lo: float, hi: float) -> float:
  """A log-uniform draw rounded to 4 decimals (settings searches)."""
  return round(float(math.exp(rng.uniform(math.log(lo), math.log(hi)))), 4)


def choice(rng, values):
  """One of ``values``, uniformly."""
  return values[int(rng.integers(len(values)))]


@dataclasses.dataclass(frozen=True)
class SearchRanges:
  """The settings search's ranges for code settings (``experiments.search_settings`` flags)."""
  lr: tuple[float, float] = (1.0, 16.0)
  iters: tuple[int, ...] = (200,)
  l2: tuple[float, ...] = (0.99,)
  bounds_k: tuple[float, ...] = (3.0,)


def _code_search_first(base: Mapping[str, Any]) -> dict:
  return {k: base[k] for k in ('lr', 'iters', 'l2', 'bounds_k')}


def _code_search_draw(rng, ranges: SearchRanges) -> dict:
  return {'lr': loguniform(rng, *ranges.lr), 'iters': int(choice(rng, ranges.iters)),
          'l2': float(choice(rng, ranges.l2)), 'bounds_k': float(choice(rng, ranges.bounds_k))}


@dataclasses.dataclass(frozen=True)
class Method:
  """A registered method.

  Attributes:
    name: the ``--method`` name.
    build: ``build(options) -> Recipe`` (a module-level function).
    options: the default static options (a frozen dataclass; ``--method_args`` replaces fields).
    summary: one line for help texts and reports.
    search_first: ``search_first(base_settings) -> dict``: a settings search's first trial
      (beside the budget it keeps fixed).
    search_draw: ``search_draw(rng, SearchRanges) -> dict``: one random trial.
  """
  name: str
  build: Callable[[Any], Recipe]
  options: Any = NoOptions()
  summary: str = ''
  search_first: Callable[[Mapping[str, Any]], dict] = lambda base: {}
  search_draw: Callable[[Any, SearchRanges], dict] = lambda rng, ranges: {}

  def with_args(self, args: str) -> Any:
    """The options with 'name=value,...' overrides (a clear error naming a bad item)."""
    return parse_options(self.options, args, self.name)

  def recipe(self, args: str = '') -> Recipe:
    """The method's :class:`Recipe` under ``--method_args`` overrides."""
    return self.build(self.with_args(args))

  @property
  def uses_generator(self) -> bool:
    """Whether it optimizes generator codes (needs a generator; bounds and --init apply)."""
    return self.recipe().parameterization.uses_generator


def parse_options(options: Any, args: str, name: str = 'the method') -> Any:
  """``options`` with 'field=value,...' overrides of its dataclass fields."""
  if not args:
    return options
  fields = {f.name for f in dataclasses.fields(options)}
  if not fields:
    raise ValueError(f'--method_args: {name} takes no options (got {args!r})')
  changes = {}
  for item in args.split(','):
    key, sep, value = item.partition('=')
    key = key.strip()
    if not sep or key not in fields:
      raise ValueError(f'--method_args: {item!r}: expected name=value with name in '
                       f'{sorted(fields)}')
    current = getattr(options, key)
    try:
      changes[key] = (value.strip().lower() in ('1', 'true') if isinstance(current, bool)
                      else type(current)(float(value)))
    except ValueError:
      raise ValueError(f'--method_args: {item!r}: {value!r} is not a number') from None
  return dataclasses.replace(options, **changes)


_REGISTRY: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
  """Adds a method to the registry (``replace=True`` to redefine a name)."""
  if method.name in _REGISTRY and not replace:
    raise ValueError(f'method {method.name!r} is already registered')
  method.recipe()  # fails now, not mid-sweep, if its default options do not build
  _REGISTRY[method.name] = method
  return method


def unregister(name: str) -> None:
  """Removes a method (tests register throwaway ones)."""
  _REGISTRY.pop(name, None)


def get(name: str) -> Method:
  """The method of that name; a ValueError listing the valid names otherwise."""
  _load_plugins_once()
  if name not in _REGISTRY:
    raise ValueError(f'unknown method {name!r}; valid: {", ".join(_REGISTRY)}')
  return _REGISTRY[name]


def names() -> tuple[str, ...]:
  """Registered method names, in registration order."""
  _load_plugins_once()
  return tuple(_REGISTRY)


def _pixel_lr(lo: float, hi: float) -> Callable[[Any, SearchRanges], dict]:
  return lambda rng, ranges: {'lr': loguniform(rng, lo, hi)}


register(Method('dgnam', dgnam_recipe, CodeOptions(),
                summary='DGN-AM (act_max.py): normalized steps on codes',
                search_first=_code_search_first, search_draw=_code_search_draw))
register(Method(
    'dgnam_adam', dgnam_adam_recipe, CodeOptions(),
    summary='DGN-AM codes optimized by Adam (ablation)',
    search_first=lambda base: {'lr': 0.05},
    search_draw=lambda rng, ranges: {'lr': loguniform(rng, 0.005, 0.5),
                                     'l2': choice(rng, [0.99, 0.999, 1.0]),
                                     'bounds_k': choice(rng, [1.0, 2.0, 3.0, 6.0])}))
register(Method('pixel', pixel_recipe, PixelOptions(), 'plain pixel-space ascent',
                lambda base: {'lr': 8.0}, _pixel_lr(0.5, 32)))
register(Method(
    'pixel_l2', pixel_recipe, PixelOptions(l2=0.99), 'pixel ascent with L2 decay',
    lambda base: {'lr': 8.0},
    lambda rng, ranges: {'lr': loguniform(rng, 0.5, 32),
                         'method_args': f'l2={choice(rng, [0.9, 0.95, 0.98, 0.99, 0.995])}'}))
register(Method(
    'pixel_blur', pixel_recipe,
    PixelOptions(l2=0.999, blur_every=4, blur_sigma=0.5, jitter=1, norm_pct=10.0,
                 contrib_pct=10.0), 'Yosinski et al. 2015: decay, blur, jitter, weak pixels',
    lambda base: {'lr': 8.0},
    lambda rng, ranges: {'lr': loguniform(rng, 0.5, 32), 'method_args': (
        f'blur_sigma={choice(rng, [0.3, 0.5, 1.0])},blur_every={choice(rng, [2, 4, 8])},'
        f'norm_pct={choice(rng, [0, 10, 30])},contrib_pct={choice(rng, [0, 10, 30])}')}))
register(Method(
    'pixel_tv', pixel_recipe, PixelOptions(tv=0.05, jitter=1),
    'Mahendran & Vedaldi 2016: total variation, jitter', lambda base: {'lr': 8.0},
    lambda rng, ranges: {'lr': loguniform(rng, 0.5, 32),
                         'method_args': f'tv={loguniform(rng, 0.005, 2.0)}'}))
register(Method(
    'fourier', fourier_recipe, PixelOptions(jitter=2, scale=0.1, rotate_deg=5.0),
    'Lucid: decorrelated Fourier spectrum, Adam, transformation robustness',
    lambda base: {'lr': 0.05},
    lambda rng, ranges: {'lr': loguniform(rng, 0.005, 0.2),
                         'method_args': f'decay_power={choice(rng, [0.5, 1.0, 1.5])}'}))


BUILTIN: tuple[Method, ...] = tuple(_REGISTRY.values())  # before any plugin


def initial_state(method: Method | str, pipe, seeds, units, args: str = '') -> np.ndarray:
  """(N, *shape) default starts of a method's parameterization for (seed, unit) requests."""
  method = get(method) if isinstance(method, str) else method
  return method.recipe(args).parameterization.initial(pipe, list(seeds), list(units))


def load_plugins(modules: str | None = None) -> list[str]:
  """Imports method modules named in ``modules`` or ``$DGNAM_JAX_METHODS`` (comma-separated).

  Each such module calls :func:`register`; the runners (``experiments/``) then accept its
  methods by name like the built-in ones. Returns the modules imported.
  """
  names = [m.strip() for m in (modules if modules is not None
                               else os.environ.get(PLUGINS_ENV, '')).split(',') if m.strip()]
  for name in names:
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ValueError(f'${PLUGINS_ENV}: cannot import method module {name!r}: {e}') from None
  return names


PLUGINS_ENV = 'DGNAM_JAX_METHODS'
_plugins_loaded = False


def _load_plugins_once() -> None:
  """Imports the ``$DGNAM_JAX_METHODS`` modules at the first lookup, when ``dgnam_jax`` is fully
  imported (a plugin may then use ``dgnam_jax.methods.register``)."""
  global _plugins_loaded
  if not _plugins_loaded:
    _plugins_loaded = True
    load_plugins()
