r"""Random search over DGN-AM settings, scored by an independent judge (as the paper tuned by eye).

  python -m experiments.search_settings --preset=cifar10 --judge=runs/judge/export \
      --trials=12 --seeds=0-4 --out=runs/search_cifar10

Trial 0 is the preset itself; the others draw lr (log-uniform), iterations, the L2 decay factor
and the bounds multiple k at random (``--search_seed``). Each trial synthesizes every class of the
preset's classifier (fc8) for ``--seeds`` with ``experiments.synthesize``'s engine into
``<out>/trial_XX/`` (resumable), and is scored by the judge's top-1 / top-5 under both display
conventions (the saved stretch, and generator output + mean clipped to 0-255) and by seed
diversity (share of same-class image pairs with mean absolute difference >= 20/255). Results go
to ``<out>/search.json`` and a Markdown table ``<out>/search.md``, best first
(:func:`rank_trials`: trials whose seeds stay distinct first, then the lower of the two top-1
scores, then diversity); the best trial's settings also go to ``<out>/best_settings.json``
({method: settings}, for ``experiments.evaluate_preset --method_settings``). With
``--pixel_lrs``, no-prior pixel ascent runs the same requests with the best trial's iterations
into ``<out>/pixel_lr<lr>/``. Look at the trials' ``grid.png`` before picking.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

from dgnam_jax import judging, pixel, report, sweep, sweep_plan
from dgnam_jax.sweep_plan import load_pair

_PRESET = flags.DEFINE_enum('preset', 'cifar10', list(sweep.PRESETS), 'Base settings and nets.')
_METHOD = flags.DEFINE_enum('method', 'dgnam', list(sweep_plan.METHODS), 'The method whose '
                            'settings are searched (its own space; see draw_settings).')
_GENERATOR = flags.DEFINE_string('generator', None, 'Generator checkpoint (default: the '
                                 'preset\'s).')
_CLASSIFIER = flags.DEFINE_string('classifier', None, 'Classifier checkpoint (default: the '
                                  'preset\'s).')
_JUDGE = flags.DEFINE_string('judge', None, 'Independent classifier checkpoint (not the '
                             'visualized one).')
_OUT = flags.DEFINE_string('out', None, 'Output directory (resumed).', allow_override=True)
_TRIALS = flags.DEFINE_integer('trials', 12, 'Trials, the preset included.')
_SEEDS = flags.DEFINE_string('seeds', '0-4', 'Seeds per class (a range a-b or a list).')
_UNITS = flags.DEFINE_string('units', None, 'Classes searched (--units syntax; default: the '
                             'preset\'s, e.g. all 200 of tinyimagenet200).')
_SEARCH_SEED = flags.DEFINE_integer('search_seed', 0, 'Seed of the setting draws.')
_LR = flags.DEFINE_list('lr_range', ['0.5', '16'], 'Log-uniform lr range.')
_ITERS = flags.DEFINE_list('iters_choices', ['100', '200', '300'], 'Iteration counts.')
_L2 = flags.DEFINE_list('l2_choices', ['0.99', '0.995', '0.999', '1.0'], 'Code decay factors.')
_K = flags.DEFINE_list('bounds_k_choices', ['1', '1.5', '2', '3', '4', '6'], 'Bounds multiples.')
_BASE_ITERS = flags.DEFINE_integer('iters', None, 'The preset\'s iterations replaced (the first '
                                   'trial and the fixed budget of the other methods; smoke runs).')
_PIXEL_LRS = flags.DEFINE_list('pixel_lrs', ['1', '4', '16'], 'Learning rates (pixel units) of '
                               'the pixel-space ascent baseline, run with the best trial\'s '
                               'iterations and seeds (empty: no baseline).')


def _loguniform(rng, lo: float, hi: float) -> float:
  return round(float(math.exp(rng.uniform(math.log(lo), math.log(hi)))), 4)


def _choice(rng, values):
  return values[int(rng.integers(len(values)))]


# Per method: its first trial (besides the preset's iterations) and how the others are drawn.
# lr is in the method's own units: code units (dgnam), Adam step (dgnam_adam, fourier), pixels.
_FIRST = {'dgnam_adam': {'lr': 0.05}, 'pixel': {'lr': 8.0}, 'pixel_l2': {'lr': 8.0},
          'pixel_blur': {'lr': 8.0}, 'pixel_tv': {'lr': 8.0}, 'fourier': {'lr': 0.05}}
_DRAWS = {
    'dgnam_adam': lambda r: {'lr': _loguniform(r, 0.005, 0.5),
                             'l2': _choice(r, [0.99, 0.999, 1.0]),
                             'bounds_k': _choice(r, [1.0, 2.0, 3.0, 6.0])},
    'pixel': lambda r: {'lr': _loguniform(r, 0.5, 32)},
    'pixel_l2': lambda r: {'lr': _loguniform(r, 0.5, 32),
                           'method_args': f'l2={_choice(r, [0.9, 0.95, 0.98, 0.99, 0.995])}'},
    'pixel_blur': lambda r: {'lr': _loguniform(r, 0.5, 32), 'method_args': (
        f'blur_sigma={_choice(r, [0.3, 0.5, 1.0])},blur_every={_choice(r, [2, 4, 8])},'
        f'norm_pct={_choice(r, [0, 10, 30])},contrib_pct={_choice(r, [0, 10, 30])}')},
    'pixel_tv': lambda r: {'lr': _loguniform(r, 0.5, 32),
                           'method_args': f'tv={_loguniform(r, 0.005, 2.0)}'},
    'fourier': lambda r: {'lr': _loguniform(r, 0.005, 0.2),
                          'method_args': f'decay_power={_choice(r, [0.5, 1.0, 1.5])}'},
}


def draw_settings(n: int, seed: int, base: dict, method: str = 'dgnam') -> list[dict]:
  """Trial settings: the preset's (or the method's defaults), then ``n - 1`` random draws.

  DGN-AM draws lr, iterations, L2 and the bounds multiple (the flags' ranges); the other methods
  keep the preset's iterations (the same budget) and draw their own settings.
  """
  rng = np.random.default_rng(seed)
  if method == 'dgnam':
    lo, hi = (float(v) for v in _LR.value)
    first = {k: base[k] for k in ('lr', 'iters', 'l2', 'bounds_k')}
    draw = lambda r: {'lr': _loguniform(r, lo, hi),
                      'iters': int(_choice(r, [int(v) for v in _ITERS.value])),
                      'l2': float(_choice(r, [float(v) for v in _L2.value])),
                      'bounds_k': float(_choice(r, [float(v) for v in _K.value]))}
  else:
    fixed = {'iters': base['iters']}  # the same budget; code settings only where codes exist
    if method not in pixel.METHODS:
      fixed.update(l2=base['l2'], bounds_k=base['bounds_k'])
    first = {**fixed, **_FIRST[method]}
    draw = lambda r: {**fixed, **_DRAWS[method](r)}
  out = [first]
  for _ in range(50 * n):
    if len(out) >= n:
      break
    trial = draw(rng)
    if trial not in out:
      out.append(trial)
  return out


def _seeds(text: str) -> tuple[int, ...]:
  if '-' in text and ',' not in text:
    a, b = (int(v) for v in text.split('-'))
    return tuple(range(a, b + 1))
  return tuple(int(v) for v in text.split(','))


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  out = os.path.abspath(_OUT.value)
  os.makedirs(out, exist_ok=True)
  base = sweep.PRESETS[_PRESET.value]
  if _BASE_ITERS.value:
    base = dict(base, iters=_BASE_ITERS.value)
  judge = judging.Judge(_JUDGE.value)
  nets_ = {'generator': _GENERATOR.value or base['generator'],
           'classifier': _CLASSIFIER.value or base['classifier']}
  pipe, gen_params, _, _, clf_meta = load_pair(nets_['generator'], nets_['classifier'])
  mean = clf_meta['mean']['per_channel']
  seeds = _seeds(_SEEDS.value)
  results = []
  method = _METHOD.value
  if method in pixel.METHODS:
    nets_['generator'] = None
  for i, trial in enumerate(draw_settings(_TRIALS.value, _SEARCH_SEED.value, base, method)):
    config = sweep.config_with_preset(_PRESET.value, out=os.path.join(out, f'trial_{i:02d}'),
                                      seeds=seeds, method=method, units=_UNITS.value,
                                      **nets_, **trial)
    result, labels = _run_and_score(config, judge, pipe, gen_params, mean, out)
    results.append({'trial': i, **trial, **result})
    print(f'trial {i}: {trial}: judge top-1 {result["top1_original"]:.2f} (original) / '
          f'{result["top1_photo"]:.2f} (photo), diversity '
          f'{result["diversity_original"]["mean"]:.2f}, {result["wall_s"]:.0f} s', flush=True)
  ranked = rank_trials(results)
  record = {'preset': _PRESET.value, 'judge': os.path.abspath(_JUDGE.value),
            'seeds': list(seeds), 'units': _UNITS.value, 'classes': len(set(labels)),
            'command': ' '.join(sys.argv),
            'trials': ranked}
  best = ranked[0]
  record['pixel'] = []
  for lr in _PIXEL_LRS.value:  # no-prior pixel ascent on the same requests and budget
    config = sweep.config_with_preset(_PRESET.value, out=os.path.join(out, f'pixel_lr{lr}'),
                                      seeds=seeds, method='pixel', generator=None,
                                      units=_UNITS.value,
                                      classifier=nets_['classifier'], iters=best['iters'],
                                      lr=float(lr))
    result, _ = _run_and_score(config, judge, pipe, gen_params, mean, out)
    record['pixel'].append({'method': 'pixel', 'lr': float(lr), 'iters': best['iters'],
                            **result})
  report.atomic_write_text(os.path.join(out, 'search.json'), json.dumps(record, indent=1))
  report.atomic_write_text(os.path.join(out, 'best_settings.json'),
                           json.dumps(best_settings(method, best), indent=1))
  report.atomic_write_text(os.path.join(out, 'search.md'), format_table(ranked, judge.path))
  print(format_table(ranked, judge.path))
  for r in record['pixel']:
    print(f"pixel ascent lr {r['lr']:g}, {r['iters']} iters: judge top-1 "
          f"{r['top1_original']:.2f} / {r['top1_photo']:.2f}, diversity "
          f"{r['diversity_original']['mean']:.2f} / {r['diversity_photo']['mean']:.2f}")
  return 0


def rank_trials(results: list[dict], min_diversity: float = 0.8) -> list[dict]:
  """Best first: trials whose seeds do not collapse (distinct pairs >= ``min_diversity`` under
  both conventions) before those that do, then the lower of the two judge top-1 scores, then
  diversity."""
  def key(r):
    div = min(r['diversity_original']['mean'], r['diversity_photo']['mean'])
    return (div < min_diversity, -min(r['top1_original'], r['top1_photo']), -div)
  return sorted(results, key=key)


def best_settings(method: str, trial: dict) -> dict:
  """{method: settings} of a trial, the format ``experiments.evaluate_preset`` reads."""
  keys = ('lr', 'iters', 'l2', 'bounds_k', 'method_args')
  return {method: {k: trial[k] for k in keys if trial.get(k) is not None}}


def _run_and_score(config, judge, pipe, gen_params, mean, out: str) -> tuple[dict, list[int]]:
  """Runs (or resumes) one sweep over the classes and scores it with the judge."""
  t0 = time.time()
  manifest = sweep.run_sweep(config, argv=sys.argv)
  labels = [r['unit'] for r in manifest['rows']]
  rendered = judging.render_sweep(config.out, pipe, gen_params, mean)
  scores = judging.score_class_images(judge, rendered, labels)
  acts = [r['activation'] for r in manifest['rows']]
  return {'dir': os.path.relpath(config.out, out), 'median_activation': float(np.median(acts)),
          **scores, 'wall_s': round(time.time() - t0, 1)}, labels


def format_table(ranked: list[dict], judge: str) -> str:
  """Markdown table of the trials, best first."""
  lines = [f'Judge: `{judge}`. top-1/top-5: share of images the judge assigns to the target '
           'class; diversity: share of same-class image pairs with MAD >= 20/255.', '',
           '| trial | lr | iters | L2 | k | method args | top-1 orig | top-1 photo | top-5 orig '
           '| top-5 photo | diversity orig | diversity photo | median act |', '|' + '---|' * 13]
  for r in ranked:
    code = [f"{r[k]:g}" if k in r else '-' for k in ('l2', 'bounds_k')]
    lines.append(f"| {r['trial']} | {r['lr']:g} | {r['iters']} | {code[0]} | {code[1]} | "
                 f"{r.get('method_args') or '-'} | "
                 f"{r['top1_original']:.2f} | {r['top1_photo']:.2f} | "
                 f"{r['top5_original']:.2f} | {r['top5_photo']:.2f} | "
                 f"{r['diversity_original']['mean']:.2f} | {r['diversity_photo']['mean']:.2f} | "
                 f"{r['median_activation']:.1f} |")
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  flags.mark_flags_as_required(['judge', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
