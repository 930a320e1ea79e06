r"""``make demo``: DGN-AM on the embedded defaults (committed checkpoints, CPU).

  python -m experiments.demo --out=out/demo
  python -m experiments.demo --out=out/demo --tiny_classes=all --tiny_iters=0   # make demo-full

Synthesises the preferred image of each of the 10 CIFAR-10 classes (fc8 logits, 2 seeds each)
and of 8 hidden conv5 units with the ``cifar10`` preset of ``experiments.synthesize``, unchanged:
``out/demo/cifar10/`` and ``out/demo/cifar10_conv5/`` are ordinary ``synthesize`` output
directories (images, codes, ``manifest.json``, ``index.html``, ``grid.png``). When the Tiny
ImageNet-200 default is committed (``checkpoints/tinyimagenet200``), ``out/demo/tinyimagenet200/``
adds 20 of its classes spread over the class list, one seed each, with the ``tinyimagenet200``
preset at 120 iterations instead of its 300 (``--tiny_iters``; at 300 the 20 images alone take
~3.6 min on 2 CPU cores, and the demo's budget is 3 min in all); ``--tiny_classes=all
--tiny_iters=0`` (``make demo-full``): all 200 classes with the preset unchanged.
``out/demo/index.html`` shows every run, enlarged nearest-neighbour, with class names and
activations. A rerun resumes (and so returns at once when everything is there).
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags

from experiments import _sweep_flags
from dgnam_jax.sweeps import outputs
from dgnam_jax import cli
from dgnam_jax.sweeps import configs
from dgnam_jax.sweeps import run as sweep

_OUT = flags.DEFINE_string('out', 'out/demo', 'Output directory.', allow_override=True)
_SEEDS = flags.DEFINE_list('seeds', ['0', '1'], 'Seeds per class.')
_CONV5_UNITS = flags.DEFINE_string('conv5_units', '0-7', 'Hidden conv5 channels (centre '
                                   'position) to visualise.')
_ITERS = flags.DEFINE_integer('iters', None, 'Iterations (default: the preset\'s).')
_GENERATOR = flags.DEFINE_string('generator', None, 'Generator checkpoint (default: the '
                                 'committed CIFAR-10 one).')
_CLASSIFIER = flags.DEFINE_string('classifier', None, 'Classifier checkpoint (default: the '
                                  'committed CIFAR-10 one).')
_TINY_CLASSES = flags.DEFINE_string('tiny_classes', '20', 'Tiny ImageNet-200 classes: a count '
                                    'spread over the list, "all", or 0 for none.')
_TINY_ITERS = flags.DEFINE_integer('tiny_iters', 120, 'Iterations of the Tiny ImageNet run (0: '
                                   'the preset\'s 300; --iters overrides both).', lower_bound=0)

PRESET = 'cifar10'
TINY = 'tinyimagenet200'


def _runs(out: str) -> list[tuple[str, str, sweep.SweepConfig]]:
  """(section title, subdirectory, config) of each demo sweep."""
  common = dict(seeds=tuple(int(s) for s in _SEEDS.value), iters=_ITERS.value,
                generator=_GENERATOR.value, classifier=_CLASSIFIER.value)
  runs = [
      ('CIFAR-10 classes (fc8 logits)', 'cifar10',
       sweep.config_with_preset(PRESET, out=os.path.join(out, 'cifar10'), **common)),
      ('Hidden conv5 units (centre position, before relu5)', 'cifar10_conv5',
       sweep.config_with_preset(PRESET, out=os.path.join(out, 'cifar10_conv5'), layer='conv5',
                                units=_CONV5_UNITS.value, **dict(common, seeds=(0,)))),
  ]
  tiny = configs.load(TINY)
  units = tiny_units(_TINY_CLASSES.value)
  if units and os.path.isdir(tiny['generator']):
    config = sweep.config_with_preset(TINY, out=os.path.join(out, TINY), units=units, seeds=(0,),
                                      iters=_ITERS.value or _TINY_ITERS.value or None)
    runs.append((f'Tiny ImageNet-200 classes (fc8 logits, 64 px, {config.iters} iterations)',
                 TINY, config))
  elif units:
    print(f'demo: {tiny["generator"]} is not there yet; Tiny ImageNet skipped', file=sys.stderr)
  return runs


def tiny_units(spec: str, n_classes: int = 200) -> str:
  """Units for --tiny_classes: 'all', or a count spread evenly over the classes ('' for 0)."""
  if spec == 'all':
    return f'0-{n_classes - 1}'
  k = int(spec)
  if not 0 <= k <= n_classes:
    raise ValueError(f'--tiny_classes must be "all" or 0..{n_classes}, got {spec!r}')
  return ','.join(str(i * n_classes // k) for i in range(k)) if k else ''


def _progress(name: str):
  def log(p: sweep.Progress) -> None:
    if p.done == p.total or p.done % 8 == 0:
      cli.say('demo', f'{name}: {p.done}/{p.total} images')
  return log


def main(argv) -> int:
  _sweep_flags.apply()  # before any JAX work
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  out = os.path.abspath(_OUT.value)
  t0 = time.time()
  sections, grids = [], []  # the montages get their own section: they are much wider than a card
  try:
    runs = _runs(out)
    for title, sub, config in runs:
      manifest = sweep.run_sweep(config, _progress(sub), argv=sys.argv)
      # Each run at its own preset's enlargement (64 px Tiny ImageNet images at 2x, CIFAR at 4x).
      rows = [dict(r, image=f'{sub}/{r["image"]}', scale=config.gallery_scale)
              for r in manifest['rows']]
      sections.append((f'{title}: {len(rows)} images ({sub}/)', rows))
      grids.append({'image': f'{sub}/grid.png', 'label': f'{sub}/grid.png', 'scale': 1})
  except (ValueError, OSError) as e:
    print(f'demo: error: {e}', file=sys.stderr)
    return 1
  settings = runs[0][2]
  title = (f'DGN-AM on the embedded defaults (CIFAR-10: {settings.iters} iterations, lr '
           f'{settings.lr:g}, L2 {settings.l2:g}, bounds [0, mean + {settings.bounds_k:g} std])')
  n_images = sum(len(s[1]) for s in sections)
  page = outputs.write_gallery(out, [], title=title, scale=settings.gallery_scale, columns=10,
                              extra_sections=sections + [('Montages (grid.png)', grids)])
  print(f'demo: {n_images} images in {time.time() - t0:.0f} s')
  print(f'demo: open {page}')
  for _, sub, _ in runs:
    print(f'demo: {os.path.join(out, sub)}/ (manifest.json, grid.png, index.html)')
  print('demo: DGN-AM on a real ImageNet-1k net (EfficientNet-Lite1): make demo-imagenet '
        '(README, "Real ImageNet nets")')
  return 0


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
