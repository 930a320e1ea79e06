r"""DGN-AM on a real ImageNet-1k net (EfficientNet-Lite1), judged by another (Lite2): one command.

  python -m experiments.imagenet_efficientnet --out=runs/imagenet_efficientnet \
      --data=../shared/data/tinyimagenet200_jpeg.npz --report=reports/imagenet_efficientnet.md

Classes: ``--seen`` ImageNet-1k classes among the 200 Tiny ImageNet classes the generator was
trained on and ``--unseen`` classes it never saw, each evenly spread over the label range
(``dgnam_jax.nets.imagenet.split_units``). Sweeps (resumable, under ``--out``): each of ``--methods`` on the target
net (``--target``) at ``--iters`` iterations, seed 0; and the reverse pairing (target
``--reverse_target``, judged by ``--target``) on ``--reverse_classes`` of the seen classes.
Then the evaluation: the judge's 1000-way top-1/top-5 (both display conventions; recognizability
counts the worse one), the project's Tiny ResNet judge on the seen classes (200-way), KID in
the judge's pooled features against real Tiny val images of the seen classes, M1 (the unit's
logit over its maximum over Tiny val images) - every table split seen/unseen - and a grid with
the methods side by side. ``--stage=synthesize`` stops after the sweeps; ``--stage=report``
rewrites the report from an earlier evaluation (e.g. with new ``--report_notes``).
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
from dgnam_jax import cli, files
from dgnam_jax.nets import imagenet
from dgnam_jax.sweeps import outputs
from dgnam_jax.sweeps import run as sweep
from experiments import imagenet_report

_OUT = flags.DEFINE_string('out', 'runs/imagenet_efficientnet', 'Root of the sweeps and metrics.')
_DATA = flags.DEFINE_string('data', '../shared/data/tinyimagenet200_jpeg.npz', 'Tiny ImageNet '
                            '(its wnids define the seen classes; its val images are the real '
                            'reference).')
_REPORT = flags.DEFINE_string('report', None, 'The Markdown report to write.')
_METHODS = flags.DEFINE_list('methods', ['dgnam', 'fourier'], 'Methods, at the same budget.')
_ITERS = flags.DEFINE_integer('iters', 200, 'Iterations of every method.', lower_bound=1)
_SEEN = flags.DEFINE_integer('seen', 50, 'Classes among the generator\'s training classes.')
_UNSEEN = flags.DEFINE_integer('unseen', 50, 'Classes the generator never saw.')
_TARGET = flags.DEFINE_string('target', 'efficientnet_lite1', 'The visualized net (registry).')
_JUDGE = flags.DEFINE_string('judge', 'efficientnet_lite2', 'The judge (registry).')
_REVERSE = flags.DEFINE_integer('reverse_classes', 20, 'Seen classes of the reverse pairing '
                                '(target and judge swapped); 0 skips it.')
_TINY_JUDGE = flags.DEFINE_string('tiny_judge', 'checkpoints/tinyimagenet200/judge',
                                  'Second judge of another family (Tiny classes only).')
_FOURIER_LR = flags.DEFINE_float('fourier_lr', 0.05, 'Adam learning rate of `fourier` (Lucid\'s '
                                 'default; the Tiny search found the same).')
_BATCH = flags.DEFINE_integer('batch_per_device', 10, 'Requests per compiled call.')
_STAGE = flags.DEFINE_enum('stage', 'all', ['synthesize', 'all', 'report'], '`synthesize` '
                           'stops after the sweeps; `report` only rewrites the report from '
                           '<out>/metrics.json and the grids of an earlier evaluation.')
_NOTES = flags.DEFINE_list('report_notes', [], 'Markdown files appended to the report (notes).')
_VAL_IMAGES = flags.DEFINE_integer('val_images', 0, 'Tiny val images for M1 and KID (0: all '
                                   '10,000; fewer for a quick check).', lower_bound=0)
_CACHE_DIR = flags.DEFINE_string('cache_dir', 'runs/data_cache', 'Decoded-image cache.')


def tiny_wnids(data_path: str) -> list[str]:
  """The 200 wnids of the Tiny ImageNet pack, in its label order."""
  with np.load(data_path, allow_pickle=False) as d:
    if 'wnids' not in d.files:
      raise ValueError(f'{data_path} has no wnids: not the Tiny ImageNet pack')
    return [str(w) for w in d['wnids']]


def _log(message: str) -> None:
  cli.say('imagenet_efficientnet', message)


def _sweep(out: str, target: str, method: str, units: list[int], generator: str) -> str:
  settings = dict(classifier=f'registry:{target}', layer='_fc', iters=_ITERS.value,
                  units=','.join(map(str, units)), seeds=(0,), out=out,
                  batch_per_device=_BATCH.value)
  if method == 'dgnam':
    settings['generator'] = generator
  else:
    settings.update(method=method, generator=None, lr=_FOURIER_LR.value)
  before = _rows_done(out)
  t = time.time()
  progress = cli.Progress('imagenet_efficientnet', 'requests')
  sweep.run_sweep(sweep.config_with_preset('efficientnet_lite1', **settings),
                  lambda p: progress(p.done, p.total, p.skipped, f'{os.path.basename(out)}: ',
                                     p.saved))
  seconds = time.time() - t
  _log(f'{out}: {seconds:.0f} s')
  if _rows_done(out) > before:  # a resumed, already finished sweep adds no time
    imagenet_report.record_time(os.path.dirname(out), os.path.basename(out), seconds,
                                _rows_done(out) - before)
  return out


def _rows_done(out: str) -> int:
  return sum(map(len, outputs.chunk_rows(out).values())) if os.path.isdir(out) else 0


def synthesize(out: str, seen: list[int], unseen: list[int]) -> dict[str, str]:
  generator = sweep.preset_settings('efficientnet_lite1')['generator']
  runs = {}
  for method in _METHODS.value:
    runs[f'{_TARGET.value}_{method}'] = _sweep(os.path.join(out, f'{_TARGET.value}_{method}'),
                                               _TARGET.value, method, seen + unseen, generator)
  if _REVERSE.value:
    few = seen[::max(1, len(seen) // _REVERSE.value)][:_REVERSE.value]
    for method in _METHODS.value:
      name = f'{_JUDGE.value}_{method}'
      runs[name] = _sweep(os.path.join(out, name), _JUDGE.value, method, few, generator)
  return runs


def _rewrite_report(out: str) -> None:
  if not _REPORT.value:
    raise app.UsageError('--stage=report needs --report')
  path = os.path.join(out, 'metrics.json')
  if not os.path.exists(path):
    raise ValueError(f'{path}: no evaluation to report (run --stage=all first)')
  with open(path) as f:
    record = json.load(f)
  fig_dir = os.path.splitext(_REPORT.value)[0] + '_figures'
  imagenet_report.write_report(record, _REPORT.value, fig_dir, _NOTES.value)
  _log(f'wrote {_REPORT.value}')


def _run() -> None:
  _sweep_flags.apply()  # before any JAX work
  out = os.path.abspath(_OUT.value)
  if _STAGE.value == 'report':
    _rewrite_report(out)
    return
  seen, unseen = imagenet.split_units(tiny_wnids(_DATA.value), _SEEN.value, _UNSEEN.value)
  os.makedirs(out, exist_ok=True)
  files.atomic_write_text(os.path.join(out, 'units.json'),
                          json.dumps({'seen': seen, 'unseen': unseen}) + '\n')
  t = time.time()
  runs = synthesize(out, seen, unseen)
  _log(f'all sweeps: {time.time() - t:.0f} s')
  if _STAGE.value == 'synthesize':
    return
  imagenet_report.evaluate_and_report(
      runs, seen=seen, unseen=unseen, out=out, data_path=_DATA.value, report=_REPORT.value,
      target=_TARGET.value, judge=_JUDGE.value, tiny_judge=_TINY_JUDGE.value,
      cache_dir=_CACHE_DIR.value, log=_log, val_images=_VAL_IMAGES.value,
      command='python -m experiments.imagenet_efficientnet ' + ' '.join(sys.argv[1:]),
      extra_md=_NOTES.value)


main = cli.absl_main('imagenet_efficientnet', _run)


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
