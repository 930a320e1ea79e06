r"""Runs one of the paper's experiments and rewrites ``reports/paper.md``.

  python -m experiments.paper --config=configs/paper/blends.py
  python -m experiments.paper --config=configs/paper/blends.py --config.seeds=0-3
  python -m experiments.paper --collect      # only rewrite the report from the results

Sweeps and trainings go under ``--runs_dir/<section>`` (a rerun of the same command resumes
them), figures and ``result.json`` under ``--report_dir/<section>``, and the report to
``--report``. The config names the section (``section``) and its settings; paths in it are
relative to the working directory (the repository root).
"""

from __future__ import annotations

import datetime
import os
import shlex
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

from dgnam_jax import cli
from experiments import _sweep_flags
from experiments.paper import common
from experiments.paper import report as report_lib
from experiments.paper.sections import SECTIONS

config_flags.DEFINE_config_file('config', None, 'The experiment: configs/paper/<section>.py '
                                '(--config.NAME=VALUE overrides one setting).', lock_config=True)
_RUNS = flags.DEFINE_string('runs_dir', 'runs/paper', 'Sweeps and trainings (resumable).')
_REPORT_DIR = flags.DEFINE_string('report_dir', 'reports/paper', 'Figures and results.')
_REPORT = flags.DEFINE_string('report', 'reports/paper.md', 'The report rewritten at the end.')
_COLLECT = flags.DEFINE_bool('collect', False, 'Only rewrite --report from the results.')
FLAGS = flags.FLAGS


def _run() -> str:
  if _COLLECT.value:
    return f'wrote {report_lib.write(_REPORT.value, _REPORT_DIR.value)}'
  if FLAGS.config is None:
    raise ValueError('pass --config=configs/paper/<section>.py (or --collect); sections: '
                     + ', '.join(SECTIONS))
  cfg = FLAGS.config
  if cfg.get('section') not in SECTIONS:
    raise ValueError(f'{config_flags.get_config_filename(FLAGS["config"])}: section '
                     f'{cfg.get("section")!r} is not one of {", ".join(SECTIONS)}')
  section = SECTIONS[cfg.section]
  cfg = common.normalized(cfg)
  t = time.time()
  ctx = common.Context(runs=os.path.join(_RUNS.value, section.name),
                       figures=os.path.join(_REPORT_DIR.value, section.name),
                       log=lambda m: cli.say(f'paper {section.name}', m))
  res = section.run(cfg, ctx)
  res.update(section=section.name, verdict=section.verdict(res), wall_s=time.time() - t,
             machine=cli.machine(), date=datetime.date.today().isoformat(),
             command='python -m experiments.paper ' + ' '.join(
                 shlex.quote(a) for a in sys.argv[1:]),
             config=cfg.to_dict())
  if res['verdict'] not in common.VERDICTS:
    raise AssertionError(f'{section.name}: verdict {res["verdict"]!r}')
  common.write_result(ctx, res)
  path = report_lib.write(_REPORT.value, _REPORT_DIR.value)
  return f'{section.number}. {section.title}: {res["verdict"]} ({res["wall_s"]:.0f} s); {path}'


def main(argv) -> int:
  _sweep_flags.apply()  # before any JAX work
  return cli.absl_main('paper', _run)(argv)


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
