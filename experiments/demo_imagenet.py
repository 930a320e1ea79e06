r"""``make demo-imagenet``: DGN-AM on a real ImageNet-1k net (EfficientNet-Lite1) on the CPU.

  python -m experiments.demo_imagenet --out=out/demo/imagenet

Synthesises the preferred image of 20 ImageNet-1k classes of EfficientNet-Lite1 through the
project's Tiny ImageNet generator (64 px images, resized bilinearly to the net's 240 px inside the
pipeline): 10 classes among the 200 the generator was trained on and 10 it never saw, each spread
over the label range. The net's weights come from its registry package (the ``imagenet`` extra)
and are converted on first use into ``~/.cache/dgnam_jax`` (``$DGNAM_JAX_CACHE``), outside the
repository. ``out/demo/imagenet/`` is an ordinary ``synthesize`` output directory (manifest rows'
``unit`` = ImageNet-1k index, ``index.html``, ``grid.png``); a rerun resumes.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags

from experiments import _sweep_flags
from dgnam_jax import cli
from dgnam_jax.nets import imagenet
from dgnam_jax.synthesis import batching
from dgnam_jax.sweeps import run as sweep

_OUT = flags.DEFINE_string('out', 'out/demo/imagenet', 'Output directory.')
_CLASSES = flags.DEFINE_integer('classes', 20, 'ImageNet classes (half seen by the generator).',
                                lower_bound=2)
_ITERS = flags.DEFINE_integer('iters', 100, 'Iterations (the preset has 200).', lower_bound=1)

PRESET = 'efficientnet_lite1'


def _run() -> str:
  _sweep_flags.apply()  # before any JAX work
  t0 = time.time()
  generator = sweep.preset_settings(PRESET)['generator']
  seen, unseen = imagenet.split_units(imagenet.encoder_wnids(generator), _CLASSES.value // 2,
                                _CLASSES.value - _CLASSES.value // 2)
  units = seen + unseen
  config = sweep.config_with_preset(PRESET, out=os.path.abspath(_OUT.value), seeds=(0,),
                                    units=','.join(map(str, units)), iters=_ITERS.value,
                                    batch_per_device=batching.least_padding_batch(units))
  progress = cli.Progress('demo_imagenet', 'images')
  manifest = sweep.run_sweep(config, lambda p: progress(p.done, p.total, p.skipped,
                                                        saved=p.saved), argv=sys.argv)
  names = ', '.join(r.get('class_name') or str(r['unit']) for r in manifest['rows'][:4])
  return (f'demo_imagenet: {len(manifest["rows"])} ImageNet classes of {PRESET} ({names}, ...) '
          f'in {time.time() - t0:.0f} s\ndemo_imagenet: open '
          f'{os.path.join(config.out, "index.html")}')


main = cli.absl_main('demo_imagenet', _run)


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
