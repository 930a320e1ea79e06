r"""Evaluates finished ``synthesize`` runs: every metric of the evaluation suite, in one command.

  python -m experiments.evaluate --runs=out/eval/cifar10_classes,out/eval/cifar10_conv5 \
      --data=../shared/data/cifar10_jpeg.npz --judge=checkpoints/cifar10/judge \
      --out=out/eval/cifar10_metrics

For each run (a ``synthesize`` output directory, whose manifest names its layer and units) it
computes relative activation M1 (raw generator output and the uint8 photo, against each unit's
maximum over all train + test images), the judge's top-1/top-5 under both display conventions (all
images and distinct images only), KID and FID in the judge's pool5 features against held-out real
images of the same classes, seed diversity (judge features and pixels) and the pixel-space
memorization ratio. Output rows (classes) need the classifier's logit layer (``--output_layer``).
The generator and classifier are the ones the run used (``--generator`` / ``--classifier``, or
the run's preset). Writes ``<out>/metrics.json``, a top-k sheet per run (synthetic images next
to the 5 real images that drive the unit most) and rewrites each run's ``index.html`` with M1 and
the judge's verdict on every card. ``--extra_judges`` adds further judges' top-1/top-5 of the
class images (e.g. one of the visualized net's own architecture, which is easier to fool).
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

from dgnam_jax.evaluation import runs as eval_runs
from dgnam_jax import cli
from dgnam_jax.sweeps import configs

_RUNS = flags.DEFINE_list('runs', None, 'synthesize output directories.')
_DATA = flags.DEFINE_string('data', None, 'The dataset (JPEG-pack .npz or folder).')
_JUDGE = flags.DEFINE_string('judge', None, 'Independent classifier checkpoint.')
_EXTRA_JUDGES = flags.DEFINE_list('extra_judges', [], 'Further judge checkpoints that score '
                                  'the class images too (recognizability tables only).')
_OUT = flags.DEFINE_string('out', None, 'Directory for metrics.json and sheets.',
                           allow_override=True)
_PRESET = flags.DEFINE_string('preset', 'cifar10', 'Preset naming the generator/classifier.')
_GENERATOR = flags.DEFINE_string('generator', None, 'Generator checkpoint (default: preset\'s); a '
                                 'run made with another shows through its own (its manifest).')
_CLASSIFIER = flags.DEFINE_string('classifier', None, 'Classifier checkpoint (default: '
                                  'preset\'s).')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Decoded-image cache.')
_OUTPUT_LAYER = flags.DEFINE_string('output_layer', 'fc8', 'The classifier\'s logit layer.')
_MEMO_LAYERS = flags.DEFINE_list('memo_layers', ['pool5', 'fc6', 'fc7'], 'Classifier blobs whose '
                                  'code space the memorization check also uses.')
_BUDGET = flags.DEFINE_integer('subset_budget', 1000, 'N of the expected-max-of-N-real-images '
                               'baseline.')


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')

  def evaluate() -> str:
    preset = configs.load(_PRESET.value) if _PRESET.value else {}
    record = _evaluate(preset)
    return (f'wrote {os.path.join(_OUT.value, "metrics.json")} in {record["wall_s"]:.0f} s')

  return cli.run('evaluate', evaluate, resumable=False)


def _evaluate(preset: dict) -> dict:
  return eval_runs.evaluate_runs(
      _RUNS.value, generator=_GENERATOR.value or preset.get('generator'),
      classifier=_CLASSIFIER.value or preset.get('classifier'), judge_path=_JUDGE.value,
      data_path=_DATA.value, out=_OUT.value, cache_dir=_CACHE_DIR.value,
      output_layer=_OUTPUT_LAYER.value, subset_budget=_BUDGET.value,
      memo_layers=_MEMO_LAYERS.value, extra_judge_paths=_EXTRA_JUDGES.value,
      command='python -m experiments.evaluate ' + ' '.join(sys.argv[1:]),
      log=lambda message: cli.say('evaluate', message))


if __name__ == '__main__':
  flags.mark_flags_as_required(['runs', 'data', 'judge', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
