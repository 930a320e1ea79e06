r"""The whole evaluation of an embedded default in one command: synthesize, evaluate, report.

  python -m experiments.evaluate_preset --preset=cifar10 \
      --data=../shared/data/cifar10_jpeg.npz --judge=checkpoints/cifar10/judge \
      --out=out/eval/cifar10 --report=reports/cifar10.md

Runs (resumable ``synthesize`` sweeps under ``--out``): every class of the preset's classifier
(fc8) for ``--class_seeds`` with each of ``--methods`` (DGN-AM with the preset's settings; other
methods with the settings in ``--method_settings``, JSON files {method: {lr, method_args, ...}}
written by their searches; the DGN-AM ablations of ``dgnam_jax.sweeps.run.ABLATIONS`` with the
preset's settings but one changed), and ``--hidden_units`` of each of ``--hidden_layers``
(DGN-AM) for ``--hidden_seeds``. Then ``experiments.evaluate``'s metrics over all runs and
``experiments.report``'s Markdown (``--report``). Timings of each stage go into the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

from experiments import _sweep_flags
from dgnam_jax.evaluation import runs as eval_runs
from dgnam_jax import cli
from dgnam_jax.sweeps import configs
from dgnam_jax.sweeps import run as sweep
from dgnam_jax.sweeps.requests import parse_seeds
from dgnam_jax.synthesis import methods as methods_lib

_PRESET = flags.DEFINE_string('preset', 'cifar10', 'The embedded default: a preset name (' +
                             ', '.join(configs.names()) + ') or a config file.')
_DATA = flags.DEFINE_string('data', None, 'Its dataset.')
_JUDGE = flags.DEFINE_string('judge', None, 'The independent judge checkpoint.')
_OUT = flags.DEFINE_string('out', None, 'Root of the runs and metrics.', allow_override=True)
_REPORT = flags.DEFINE_string('report', None, 'The Markdown report to write.')
_TITLE = flags.DEFINE_string('title', None, 'Report title.')
_CLASS_SEEDS = flags.DEFINE_string('class_seeds', '0-49', 'Seeds per class (integers and ranges '
                                   'a-b).')
_METHODS = flags.DEFINE_list('methods', ['dgnam'], 'Methods run on the classes: '
                             'synthesize\'s --method values and the DGN-AM ablations '
                             + ', '.join(sweep.ABLATIONS) + '.')
_BASELINE_SEEDS = flags.DEFINE_string('baseline_seeds', None, 'Seeds per class of the methods '
                                      'other than the preset\'s (default: --class_seeds).')
_METHOD_SETTINGS = flags.DEFINE_list('method_settings', [], 'JSON files {method: settings} '
                                     '(search_settings\' best_settings.json), merged.')
_HIDDEN_LAYERS = flags.DEFINE_list('hidden_layers', ['conv3', 'conv5', 'fc6', 'fc7'],
                                   'Hidden layers (DGN-AM only).')
_HIDDEN_UNITS = flags.DEFINE_string('hidden_units', '0-63', 'Units per hidden layer.')
_HIDDEN_SEEDS = flags.DEFINE_string('hidden_seeds', '0-4', 'Seeds per hidden unit.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Decoded-image cache.')
_ITERS = flags.DEFINE_integer('iters', None, 'Override every method\'s iterations (smoke tests).')
_EXTRA = flags.DEFINE_list('extra_md', [], 'Markdown appended to the report.')
_EVALUATE = flags.DEFINE_bool('evaluate', True, 'Evaluate and report after synthesis '
                              '(--noevaluate: synthesis only, e.g. on an accelerator machine '
                              'without the dataset; a later run resumes the finished sweeps).')


def _log(msg: str) -> None:
  cli.say('evaluate_preset', msg)


def main(argv) -> int:
  _sweep_flags.apply()  # before any JAX work
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  return cli.run('evaluate_preset', _run)


def _run() -> None:
  out = os.path.abspath(_OUT.value)
  preset = sweep.preset_settings(_PRESET.value)
  name = os.path.splitext(os.path.basename(_PRESET.value))[0]  # a preset name or its file
  settings = {}
  for path in _METHOD_SETTINGS.value:
    with open(path) as f:
      settings.update(json.load(f))
  unknown = [m for m in _METHODS.value
             if m not in methods_lib.names() and m not in sweep.ABLATIONS]
  if unknown:  # before any run starts: no partial output
    raise app.UsageError(f'--methods: unknown method(s) {", ".join(unknown)}; valid: '
                         f'{", ".join([*methods_lib.names(), *sweep.ABLATIONS])}')
  if _EVALUATE.value and not (_DATA.value and _JUDGE.value):
    raise app.UsageError('--data and --judge are needed to evaluate (or pass --noevaluate)')
  timings, runs = {}, []
  main_method = preset.get('method', sweep.SweepConfig.method)
  for method in _METHODS.value:
    extra = dict(sweep.ABLATIONS.get(method) or dict(settings.get(method, {}), method=method),
                 iters=_ITERS.value)
    if not methods_lib.get(extra['method']).uses_generator:
      extra['generator'] = None
    run = os.path.join(out, f'{name}_{method}_classes')
    # The preset's own method gets the class seeds; baselines and ablations may get fewer.
    seeds, flag = _CLASS_SEEDS.value, '--class_seeds'
    if method != main_method and _BASELINE_SEEDS.value:
      seeds, flag = _BASELINE_SEEDS.value, '--baseline_seeds'
    t = time.time()
    sweep.run_sweep(sweep.config_with_preset(
        _PRESET.value, out=run, seeds=parse_seeds(seeds, flag), **extra))
    timings[f'synthesize {os.path.basename(run)}'] = round(time.time() - t, 1)
    _log(f'{run}: {timings[f"synthesize {os.path.basename(run)}"]:.0f} s')
    runs.append(run)
  for layer in _HIDDEN_LAYERS.value:
    run = os.path.join(out, f'{name}_dgnam_{layer}')
    t = time.time()
    sweep.run_sweep(sweep.config_with_preset(
        _PRESET.value, out=run, layer=layer, units=_HIDDEN_UNITS.value,
        seeds=parse_seeds(_HIDDEN_SEEDS.value, '--hidden_seeds'), iters=_ITERS.value))
    timings[f'synthesize {os.path.basename(run)}'] = round(time.time() - t, 1)
    _log(f'{run}: {timings[f"synthesize {os.path.basename(run)}"]:.0f} s')
    runs.append(run)
  if not _EVALUATE.value:
    return None
  t = time.time()
  metrics_dir = os.path.join(out, 'metrics')
  eval_runs.evaluate_runs(
    runs, generator=preset['generator'], classifier=preset['classifier'],
    judge_path=_JUDGE.value, data_path=_DATA.value, out=metrics_dir,
    cache_dir=_CACHE_DIR.value, log=_log,
    command='python -m experiments.evaluate_preset ' + ' '.join(sys.argv[1:]))
  timings['evaluation (synthesis excluded)'] = round(time.time() - t, 1)
  _log(f'evaluation: {timings["evaluation (synthesis excluded)"]:.0f} s')
  timing_md = os.path.join(metrics_dir, 'timings.md')
  with open(timing_md, 'w') as f:
    f.write(f'## Wall times ({cli.machine()})\n\n| stage | s |\n|---|---|\n' + ''.join(
        f'| {k} | {v:.0f} |\n' for k, v in timings.items()))
  if _REPORT.value:
    subprocess.run([sys.executable, '-m', 'experiments.report',
                    f'--metrics={os.path.join(metrics_dir, "metrics.json")}',
                    f'--out={_REPORT.value}', f'--title={_TITLE.value or name}',
                    f'--extra_md={",".join([timing_md, *_EXTRA.value])}'], check=True)
  return None


if __name__ == '__main__':
  flags.mark_flags_as_required(['out'])
  app.run(lambda argv: sys.exit(main(argv)))
