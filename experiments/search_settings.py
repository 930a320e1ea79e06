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
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

from experiments import _sweep_flags
from dgnam_jax import files
from dgnam_jax.evaluation import judging
from dgnam_jax import cli
from dgnam_jax.sweeps import configs
from dgnam_jax.sweeps import run as sweep
from dgnam_jax.sweeps.requests import parse_seeds
from dgnam_jax.synthesis import codes as codes_lib
from dgnam_jax.synthesis import methods as methods_lib
from dgnam_jax.nets.loading import load_pair

_PRESET = flags.DEFINE_string('preset', 'cifar10', 'Base settings and nets: a preset name (' +
                             ', '.join(configs.names()) + ') or a config file.')
_METHOD = flags.DEFINE_string('method', 'dgnam', 'The registered method whose settings are '
                              'searched (its own search space, dgnam_jax.synthesis.methods).')
_GENERATOR = flags.DEFINE_string('generator', None, 'Generator checkpoint (default: the '
                                 'preset\'s).')
_CLASSIFIER = flags.DEFINE_string('classifier', None, 'Classifier checkpoint (default: the '
                                  'preset\'s).')
_JUDGE = flags.DEFINE_string('judge', None, 'Independent classifier checkpoint (not the '
                             'visualized one).')
_OUT = flags.DEFINE_string('out', None, 'Output directory (resumed).', allow_override=True)
_BOUNDS = flags.DEFINE_string('bounds', None, 'An upper-bounds file for every trial (e.g. a '
                              'percentile box of experiments.code_bounds) instead of the '
                              "checkpoint's mean + k std (the k draws then have no effect).")
_METHOD_ARGS = flags.DEFINE_string('method_args', None, 'Options of the method fixed in every '
                                   'trial (e.g. shrink=0.02); replaces any drawn ones.')
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
_BASELINE = flags.DEFINE_string('baseline_method', 'pixel', 'The no-prior baseline run at '
                                 '--pixel_lrs beside the best trial.')
_PIXEL_LRS = flags.DEFINE_list('pixel_lrs', ['1', '4', '16'], 'Learning rates (pixel units) of '
                               'the pixel-space ascent baseline, run with the best trial\'s '
                               'iterations and seeds (empty: no baseline).')


def draw_settings(n: int, seed: int, base: dict, method: str = 'dgnam') -> list[dict]:
  """Trial settings: the method's first trial, then ``n - 1`` random draws from its search
  space (:class:`dgnam_jax.synthesis.methods.Method`).

  Every trial keeps the preset's iterations (the same budget) and, for methods on generator
  codes, its L2 and bounds, unless the method's space draws them (DGN-AM draws lr, iterations,
  L2 and the bounds multiple from the flags' ranges).
  """
  spec = methods_lib.get(method)
  ranges = methods_lib.SearchRanges(
      lr=tuple(float(v) for v in _LR.value), iters=tuple(int(v) for v in _ITERS.value),
      l2=tuple(float(v) for v in _L2.value), bounds_k=tuple(float(v) for v in _K.value))
  fixed = {'iters': base['iters']}
  if spec.uses_generator:
    fixed.update(l2=base['l2'], bounds_k=base['bounds_k'])
  rng = np.random.default_rng(seed)
  out = [{**fixed, **spec.search_first(base)}]
  for _ in range(50 * n):
    if len(out) >= n:
      break
    trial = {**fixed, **spec.search_draw(rng, ranges)}
    if trial not in out:
      out.append(trial)
  return out


def main(argv) -> int:
  _sweep_flags.apply()  # before any JAX work
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  return cli.run('search_settings', _run)


def _run() -> None:
  methods_lib.get(_METHOD.value).with_args(_METHOD_ARGS.value or '')  # checked before --out
  seeds = parse_seeds(_SEEDS.value)
  base = sweep.preset_settings(_PRESET.value)
  if _BASE_ITERS.value:
    base = dict(base, iters=_BASE_ITERS.value)
  nets_ = {'generator': _GENERATOR.value or base['generator'],
           'classifier': _CLASSIFIER.value or base['classifier']}
  pipe, gen_params, _, gen_meta, clf_meta = load_pair(nets_['generator'], nets_['classifier'])
  judge = judging.task_judge(_JUDGE.value, clf_meta.get('class_names'))
  mean = clf_meta['mean']['per_channel']
  method = _METHOD.value
  fixed = {}
  if _BOUNDS.value:  # checked before --out is created
    if not methods_lib.get(method).uses_generator:
      raise ValueError(f'--bounds: {method} has no generator codes to bound')
    codes_lib.read_bounds_file(_BOUNDS.value, gen_meta['generator']['code_shape'])
    fixed['bounds'] = _BOUNDS.value
  out = os.path.abspath(_OUT.value)
  os.makedirs(out, exist_ok=True)
  results = []
  if not methods_lib.get(method).uses_generator:
    nets_['generator'] = None
  for i, trial in enumerate(draw_settings(_TRIALS.value, _SEARCH_SEED.value, base, method)):
    if _METHOD_ARGS.value:  # the fixed options override the drawn ones of the same name
      drawn = trial.get('method_args')
      trial = dict(trial, method_args=f'{drawn},{_METHOD_ARGS.value}' if drawn
                   else _METHOD_ARGS.value)
    trial.update(fixed)
    config = sweep.config_with_preset(_PRESET.value, out=os.path.join(out, f'trial_{i:02d}'),
                                      seeds=seeds, method=method, units=_UNITS.value,
                                      **nets_, **trial)
    result, labels = _run_and_score(config, judge, pipe, gen_params, mean, out)
    results.append({'trial': i, **trial, **result})
    cli.say('search_settings', f'trial {i}: {trial}: judge top-1 '
            f'{result["top1_original"]:.2f} (original) / {result["top1_photo"]:.2f} (photo), '
            f'diversity {result["diversity_original"]["mean"]:.2f}, {result["wall_s"]:.0f} s')
  ranked = rank_trials(results)
  record = {'preset': _PRESET.value, 'judge': files.relative_path(_JUDGE.value),
            'seeds': list(seeds), 'units': _UNITS.value, 'classes': len(set(labels)),
            'command': 'python -m experiments.search_settings ' + ' '.join(sys.argv[1:]),
            'trials': ranked}
  best = ranked[0]
  record['pixel'] = []
  for lr in _PIXEL_LRS.value:  # no-prior pixel ascent on the same requests and budget
    config = sweep.config_with_preset(_PRESET.value, out=os.path.join(out, f'pixel_lr{lr}'),
                                      seeds=seeds, method=_BASELINE.value, generator=None,
                                      units=_UNITS.value,
                                      classifier=nets_['classifier'], iters=best['iters'],
                                      lr=float(lr))
    result, _ = _run_and_score(config, judge, pipe, gen_params, mean, out)
    record['pixel'].append({'method': _BASELINE.value, 'lr': float(lr), 'iters': best['iters'],
                            **result})
  files.atomic_write_text(os.path.join(out, 'search.json'), json.dumps(record, indent=1))
  files.atomic_write_text(os.path.join(out, 'best_settings.json'),
                           json.dumps(best_settings(method, best), indent=1))
  files.atomic_write_text(os.path.join(out, 'search.md'), format_table(ranked, judge.path))
  print(format_table(ranked, judge.path))
  for r in record['pixel']:
    print(f"pixel ascent lr {r['lr']:g}, {r['iters']} iters: judge top-1 "
          f"{r['top1_original']:.2f} / {r['top1_photo']:.2f}, diversity "
          f"{r['diversity_original']['mean']:.2f} / {r['diversity_photo']['mean']:.2f}")
  return None


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
  keys = ('lr', 'iters', 'l2', 'bounds_k', 'bounds', 'method_args')
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
    if r.get('bounds'):  # a bounds file replaced the k box
      code[1] = os.path.basename(r['bounds'])
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
