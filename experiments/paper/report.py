"""``reports/paper.md``: every section's claim, rule, measured numbers, verdict and command."""

from __future__ import annotations

import os

from dgnam_jax import files
from experiments.paper import common
from experiments.paper.sections import SECTIONS

HEADER = """# The paper's findings, reproduced

Each section below is one of the experiments of Nguyen et al. (NIPS 2016) and its supplement,
rerun by one command on this project's nets: the paper's claim, the verdict rule fixed before
the experiment ran, what was measured, the verdict (**holds / partly / does not hold**), the
command and its wall time. Recognizability is always reported beside KID: at 32 px every method
fools small judges. Written by `python -m experiments.paper --collect` from the results in
`reports/paper/<section>/result.json`; each experiment rewrites it when it finishes.
"""


def section_markdown(section: common.Section, res: dict | None, figures: str) -> str:
  """One section; ``figures`` is its figure folder relative to the report."""
  head = f'## {section.number}. {section.title} ({section.figures})\n\n'
  text = f'**Claim.** {section.claim}\n\n**Verdict rule (fixed before running).** {section.rule}\n\n'
  if res is None:
    return head + text + '**Not run yet.**\n'
  link = lambda name: f'{figures}/{name}'
  return (head + text + '**Measured.**\n\n' + section.describe(res, link) + '\n\n'
          f'**Verdict: {res["verdict"]}.**\n\n'
          f'Command (`{res["machine"]}`, {res["wall_s"]:.0f} s wall, {res["date"]}):\n\n'
          f'```sh\n{res["command"]}\n```\n')


def write(report: str, report_dir: str) -> str:
  """Rewrites ``report`` from the results under ``report_dir``; returns the path."""
  results = {name: common.read_result(os.path.join(report_dir, name)) for name in SECTIONS}
  rows = [[s.number, s.title, s.figures, results[n]['verdict'] if results[n] else 'not run']
          for n, s in SECTIONS.items()]
  body = [HEADER, common.table(['', 'experiment', 'paper', 'verdict'], rows), '']
  rel = os.path.relpath(report_dir, os.path.dirname(os.path.abspath(report)) or '.')
  body += [section_markdown(s, results[n], f'{rel}/{n}') for n, s in SECTIONS.items()]
  return files.atomic_write_text(report, '\n'.join(body))
