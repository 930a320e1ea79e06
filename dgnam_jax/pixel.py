"""Pixel-space activation maximization: the hand-designed priors DGN-AM is compared with.

Each method optimizes an image directly (or its Fourier spectrum) for the same objective
(:mod:`dgnam_jax.targets`) and budget as DGN-AM. One image's step is written once and
``jax.vmap``-ed; iterations run as a jitted step called from Python (like
:func:`dgnam_jax.optimize.optimize_codes`); a request's randomness (start image, jitter) comes from
``fold_in(key(seed), unit)``, so results do not depend on the batch. Methods (:data:`METHODS`):

* ``pixel``: plain ascent with DGN-AM's normalized step ``x += lr_i g / mean|g|``, pixels kept in
  the valid range [-mean, 255 - mean] (Caffe space).
* ``pixel_l2``: plus a decay factor per step (the L2 prior of Simonyan et al. 2014).
* ``pixel_blur``: Yosinski et al. 2015: L2 decay, a Gaussian blur every few steps, jitter, and
  zeroing pixels of small norm and of small contribution ``|x * g|``.
* ``pixel_tv``: Mahendran & Vedaldi 2016: total-variation penalty (beta = 2) plus jitter.
* ``fourier``: Lucid-style: a decorrelated Fourier parameterization (spectrum scaled by 1/f,
  ImageNet colour decorrelation, sigmoid to [0, 255]) optimized with Adam under random jitter,
  scale and rotation (transformation robustness).

Jitter and the other transformations apply only to the image the gradient is taken on; the image
returned (and scored) is the untransformed one.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax import targets as targets_lib
from dgnam_jax.optimize import OptimizeResult, normalized, pack_slots
from dgnam_jax.units import SLOT_SEED_STRIDE

INIT_STD = 10.0  # pixel units (0-255 scale): faint noise around the mean image
# Square root of ImageNet's RGB colour covariance (as Lucid's color_correlation_svd_sqrt),
# normalised by its largest column norm; maps decorrelated channels to RGB.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]],
                       np.float32)
_COLOR_SQRT = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))


@dataclasses.dataclass(frozen=True)
class PixelMethod:
  """A pixel-space method's static settings (hashable: part of the compiled step).

  Attributes:
    name: the method's name (``--method``).
    l2: decay factor applied to the image after each step (1: none).
    blur_every, blur_sigma: Gaussian blur of the image every ``blur_every`` steps (0: never).
    jitter: largest random shift in pixels of the image the gradient is taken on.
    norm_pct: zero pixels whose channel norm is below this percentile of the image's (0: off).
    contrib_pct: zero pixels whose contribution sum_c |x g| is below this percentile (0: off).
    tv: weight of the total-variation penalty (mean squared neighbour difference, pixel units).
    fourier: optimize a decorrelated Fourier spectrum with Adam instead of the pixels.
    decay_power: the spectrum's 1/f^power scaling.
    scale, rotate_deg: random scale in [1 - scale, 1 + scale] and rotation in degrees (fourier's
      transformation robustness).
  """
  name: str
  l2: float = 1.0
  blur_every: int = 0
  blur_sigma: float = 0.0
  jitter: int = 0
  norm_pct: float = 0.0
  contrib_pct: float = 0.0
  tv: float = 0.0
  fourier: bool = False
  decay_power: float = 1.0
  scale: float = 0.0
  rotate_deg: float = 0.0


METHODS: dict[str, PixelMethod] = {
    'pixel': PixelMethod('pixel'),
    'pixel_l2': PixelMethod('pixel_l2', l2=0.99),
    'pixel_blur': PixelMethod('pixel_blur', l2=0.999, blur_every=4, blur_sigma=0.5, jitter=1,
                              norm_pct=10.0, contrib_pct=10.0),
    'pixel_tv': PixelMethod('pixel_tv', tv=0.05, jitter=1),
    'fourier': PixelMethod('fourier', fourier=True, jitter=2, scale=0.1, rotate_deg=5.0),
}


def with_args(method: PixelMethod, args: str) -> PixelMethod:
  """``method`` with 'name=value,...' overrides of its fields (a clear error for unknown ones)."""
  if not args:
    return method
  fields = {f.name for f in dataclasses.fields(PixelMethod)} - {'name'}
  changes = {}
  for item in args.split(','):
    key, sep, value = item.partition('=')
    key = key.strip()
    if not sep or key not in fields:
      raise ValueError(f'--method_args: {item!r}: expected name=value with name in '
                       f'{sorted(fields)}')
    current = getattr(method, key)
    try:
      changes[key] = (value.strip().lower() in ('1', 'true') if isinstance(current, bool)
                      else type(current)(float(value)))
    except ValueError:
      raise ValueError(f'--method_args: {item!r}: {value!r} is not a number') from None
  return dataclasses.replace(method, **changes)


def param_shape(method: PixelMethod, size: Sequence[int]) -> tuple[int, ...]:
  """Shape of one request's parameters: the image (H, W, 3) or its spectrum (H, W//2+1, 3, 2)."""
  h, w = size
  return (h, w // 2 + 1, 3, 2) if method.fourier else (h, w, 3)


def initial_params(method: PixelMethod, seeds: Sequence[int], units: Sequence[int],
                   size: Sequence[int]) -> np.ndarray:
  """(N, *param_shape) starts: faint pixel noise N(0, INIT_STD^2), or a small random spectrum."""
  shape = param_shape(method, size)
  std = 0.01 if method.fourier else INIT_STD
  out = [np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(s), u), shape))
         for s, u in zip(seeds, units)]
  return (np.stack(out) * std).astype(np.float32)


def initial_images(seeds: Sequence[int], units: Sequence[int], shape: Sequence[int]
                   ) -> np.ndarray:
  """(N, *shape) start images of the pixel methods (:func:`initial_params` of ``pixel``)."""
  return initial_params(METHODS['pixel'], seeds, units, tuple(shape)[:2])


def _spectrum_scale(h: int, w: int, power: float) -> np.ndarray:
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  freq = np.sqrt(fx * fx + fy * fy)
  return (1.0 / np.maximum(freq, 1.0 / max(h, w)) ** power).astype(np.float32)


def render(method: PixelMethod, p: jax.Array, mean_bgr: jax.Array) -> jax.Array:
  """One request's parameters -> its image in the classifier's space (BGR minus mean)."""
  if not method.fourier:
    return p
  h = p.shape[0]
  w = 2 * (p.shape[1] - 1)
  spec = (p[..., 0] + 1j * p[..., 1]) * _spectrum_scale(h, w, method.decay_power)[..., None]
  img = jnp.fft.irfft2(spec, s=(h, w), axes=(0, 1)) * np.sqrt(h * w) / 4.0
  rgb = jax.nn.sigmoid(img @ jnp.asarray(_COLOR_SQRT.T))
  return rgb[..., ::-1] * 255.0 - mean_bgr


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian blur of an (H, W, C) image (edges repeated)."""
  radius = max(1, int(np.ceil(3 * sigma)))
  t = np.arange(-radius, radius + 1, dtype=np.float32)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  k = jnp.asarray(k / k.sum())
  xp = jnp.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode='edge')
  n = 2 * radius + 1
  y = sum(k[i] * xp[i:i + x.shape[0]] for i in range(n))
  return sum(k[i] * y[:, i:i + x.shape[1]] for i in range(n))


def total_variation(x: jax.Array) -> jax.Array:
  """Mean squared difference between neighbouring pixels (TV with beta = 2)."""
  return (jnp.mean(jnp.square(x[1:] - x[:-1])) + jnp.mean(jnp.square(x[:, 1:] - x[:, :-1])))


def _transform(method: PixelMethod, x: jax.Array, key: jax.Array) -> jax.Array:
  """Random jitter (roll), and for ``fourier`` random scale and rotation about the centre."""
  k1, k2, k3 = jax.random.split(key, 3)
  if method.jitter:
    dy, dx = jax.random.randint(k1, (2,), -method.jitter, method.jitter + 1)
    x = jnp.roll(x, (dy, dx), axis=(0, 1))
  if method.scale or method.rotate_deg:
    h, w = x.shape[:2]
    s = 1.0 + jax.random.uniform(k2, (), minval=-method.scale, maxval=method.scale)
    a = jnp.deg2rad(jax.random.uniform(k3, (), minval=-method.rotate_deg,
                                       maxval=method.rotate_deg))
    yy, xx = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2,
                          indexing='ij')
    src_y = (jnp.cos(a) * yy - jnp.sin(a) * xx) / s + (h - 1) / 2
    src_x = (jnp.sin(a) * yy + jnp.cos(a) * xx) / s + (w - 1) / 2
    x = jnp.stack([jax.scipy.ndimage.map_coordinates(x[..., c], [src_y, src_x], order=1,
                                                     mode='nearest')
                   for c in range(x.shape[-1])], axis=-1)
  return x


def _percentile_mask(v: jax.Array, pct: float) -> jax.Array:
  return v >= jnp.percentile(v, pct)


def method_step(method: PixelMethod, classify, clf_params, objective, carry, target, key,
                lr_i, mean_bgr, lower, upper):
  """One step for ONE request. ``carry``: {'p', 'm', 'v', 't'} (Adam moments for fourier)."""
  p = carry['p']

  def obj(q):
    x = render(method, q, mean_bgr)
    xt = _transform(method, x, key)
    act = targets_lib.activation(classify(clf_params, xt[None]), target, objective)
    penalty = method.tv * total_variation(x) if method.tv else 0.0
    return act - penalty, act

  (_, act), g = jax.value_and_grad(obj, has_aux=True)(p)
  out = dict(carry)
  if method.fourier:  # Adam ascent (Lucid's optimizer), bias-corrected
    t = carry['t'] + 1
    m = 0.9 * carry['m'] + 0.1 * g
    v = 0.999 * carry['v'] + 0.001 * g * g
    step = (m / (1 - 0.9 ** t)) / (jnp.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    out.update(p=p + lr_i * step, m=m, v=v, t=t)
    return out, act
  step, _ = normalized(g)
  x = p + lr_i * step
  if method.l2 < 1:
    x = x * method.l2
  if method.norm_pct:
    x = x * _percentile_mask(jnp.linalg.norm(x, axis=-1), method.norm_pct)[..., None]
  if method.contrib_pct:
    x = x * _percentile_mask(jnp.sum(jnp.abs(x * g), axis=-1), method.contrib_pct)[..., None]
  out['p'] = jnp.clip(x, lower, upper)
  return out, act


@functools.lru_cache(maxsize=None)
def _compiled(method: PixelMethod, classify, objective, iters: int):
  def step(clf_params, carry, targets, keys, lr, lr_end, mean_bgr, i):
    lr_i = lr + (lr_end - lr) * i.astype(jnp.float32) / iters
    one = lambda c, t, k, l: method_step(
        method, classify, clf_params, objective, c, t, jax.random.fold_in(k, i), l, mean_bgr,
        -mean_bgr, 255.0 - mean_bgr)
    carry, act = jax.vmap(one)(carry, targets, keys, lr_i)
    if method.blur_every:  # Yosinski: blur every few steps (after the update)
      blur = jax.vmap(lambda x: gaussian_blur(x, method.blur_sigma))
      carry['p'] = jnp.where((i + 1) % method.blur_every == 0, blur(carry['p']), carry['p'])
    return carry, act

  def finish(clf_params, carry, targets, mean_bgr):
    x = jax.vmap(lambda q: render(method, q, mean_bgr))(carry['p'])
    act = jax.vmap(lambda v, t: targets_lib.activation(classify(clf_params, v[None]), t,
                                                       objective))(x, targets)
    return x, act

  return jax.jit(step, donate_argnums=(1,)), jax.jit(finish)


def optimize_pixels(classify, clf_params, x0, tgts, objective, *, iters: int, lr: float,
                    lr_end: float = 1e-10, l2: float = 1.0, mean_bgr=(0.0, 0.0, 0.0),
                    batch: int = 64, method: PixelMethod | str = 'pixel',
                    seeds: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-space ascent for N requests with one of :data:`METHODS` (:func:`run_requests`).

  Args:
    classify: ``(params, x) -> outputs`` (e.g. ``Pipeline.classify``); hashable.
    clf_params: the classifier's parameters.
    x0: (N, *param_shape) starts (:func:`initial_params`; for pixel methods the images).
    tgts: N stacked targets (:func:`dgnam_jax.targets.make_targets`).
    objective: the static objective.
    iters, lr, lr_end: iterations and linear lr decay (pixel units per normalized step; Adam's
      step size for ``fourier``).
    l2: overrides the method's decay factor when < 1 (``pixel_l2`` search).
    mean_bgr: the classifier's mean: pixels stay in ``[-mean, 255 - mean]``.
    batch: requests per compiled call.
    method: a :class:`PixelMethod` or a name in :data:`METHODS`.
    seeds: per-request seeds of the jitter/transform randomness (default 0).

  Returns:
    (final images (N, H, W, C) in the classifier's space, their activations (N,)).
  """
  method = METHODS[method] if isinstance(method, str) else method
  if l2 < 1:
    method = dataclasses.replace(method, l2=l2)
  n = len(x0)
  seeds = np.zeros(n, np.int64) if seeds is None else np.asarray(seeds, np.int64)
  # The sweep's slot key (units.Request.slot_key): requests that share a unit still fill distinct
  # slots, so N requests take ceil(N / batch) calls instead of one call per repeat of a unit.
  slot_keys = np.asarray(tgts.unit, np.int64) + SLOT_SEED_STRIDE * seeds
  res = run_requests(method, classify, clf_params, np.asarray(x0), tgts, objective, iters=iters,
                     lr=lr, lr_end=lr_end, mean_bgr=mean_bgr, seeds=seeds,
                     batch_per_device=batch, slot_keys=slot_keys)
  return res.images, res.activations


def run_requests(method: PixelMethod, classify, clf_params, params0, tgts, objective, *,
                 iters: int, lr, lr_end, mean_bgr=(0.0, 0.0, 0.0),
                 seeds: Sequence[int], batch_per_device: int = 8, slot_keys=None,
                 on_batch=None) -> OptimizeResult:
  """The sweep's entry point: N requests in fixed-shape, slot-keyed batches (bitwise the same in
  any batch, as ``optimize_codes``), returned as an :class:`~dgnam_jax.optimize.OptimizeResult`.

  ``codes`` and ``final_codes`` are the final parameters (the image, or its spectrum), and
  ``images`` their untransformed rendering; ``trajectory`` holds the activation of each step's
  (transformed) image. ``lr``/``lr_end`` are scalars or per-request arrays.
  """
  n = len(params0)
  full = lambda v: np.broadcast_to(np.asarray(v, np.float32), (n,)).copy()
  lr, lr_end = full(lr), full(lr_end)
  mean = jnp.asarray(mean_bgr, jnp.float32)
  step, finish = _compiled(method, classify, objective, iters)
  units = np.asarray(tgts.unit)
  keys = [jax.random.fold_in(jax.random.key(int(s) + 7919), int(u)) for s, u in zip(seeds, units)]
  slot_keys = units if slot_keys is None else np.asarray(slot_keys)
  out = {k: None for k in ('codes', 'images', 'activations', 'initial_activations',
                           'trajectory', 'iterations')}
  done = 0
  for idx in pack_slots(slot_keys, batch_per_device):
    real = idx >= 0
    src = np.where(real, idx, idx[real][0])
    p = jnp.asarray(params0)[src]
    carry = {'p': p, 'm': jnp.zeros_like(p), 'v': jnp.zeros_like(p),
             't': jnp.zeros((len(src),), jnp.float32)}
    t_rows = jax.tree.map(lambda t: t[src], tgts)
    k_rows = jnp.stack([keys[i] for i in src])
    traj = []
    for i in range(iters):
      carry, act = step(clf_params, carry, t_rows, k_rows, jnp.asarray(lr[src]),
                        jnp.asarray(lr_end[src]), mean, jnp.int32(i))
      traj.append(act)
    x, a = finish(clf_params, carry, t_rows, mean)
    res = {'codes': carry['p'], 'images': x, 'activations': a,
           'trajectory': jnp.stack(traj, axis=1)}
    for key, value in res.items():
      value = np.asarray(value)
      if out[key] is None:
        out[key] = np.zeros((n,) + value.shape[1:], value.dtype)
      out[key][idx[real]] = value[real]
    done += int(real.sum())
    if on_batch is not None:
      on_batch(done, n)
  out['initial_activations'] = out['trajectory'][:, 0]
  out['iterations'] = np.full(n, iters, np.int32)
  return OptimizeResult(final_codes=out['codes'], snapshots=None, **out)
