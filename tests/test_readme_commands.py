"""Every shell command of the README runs verbatim, in order, in a scratch working directory,
except that the flags a test may shrink (``SHRUNK``) get small values, and the commands that need
the paper's weights (which cannot be downloaded here) must fail with one clear error line.

Slow (it trains, searches and evaluates, shrunk: several minutes): ``make test-slow``.
"""

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'images', 'cifar10_tiny_jpeg.npz')
# The flags a test may shrink (issue 19's allow-list), and the values it gives them ('DATA': the
# fixture's 100 training images repeated to 300, more than one of the trainers' batches).
SHRUNK = {'--iters': '2', '--epochs': '0.5', '--units': '0-1', '--seeds': '0', '--data': 'DATA'}


def _data(path) -> str:
  """A JPEG pack of the fixture's images, the training split repeated three times."""
  with np.load(FIXTURE, allow_pickle=False) as z:
    d = {k: z[k] for k in z.files}
  jpeg, off = d['jpeg_train'], d['offsets_train']
  d['jpeg_train'] = np.concatenate([jpeg] * 3)
  d['offsets_train'] = np.concatenate([off[:-1] + i * off[-1] for i in range(3)] + [[3 * off[-1]]])
  for key in ('y_train', 'files_train'):
    d[key] = np.concatenate([d[key]] * 3)
  np.savez(path, **d)
  return str(path)
# Synopsis lines of the converters (placeholders, optional flags): documentation, not commands.
SYNOPSIS = re.compile(r'\[--|=P\b|=DIR\b|=IN\.npz')
PAPER_WEIGHTS = re.compile(r'checkpoints/(caffenet|googlenet|resnet50|places205|deepsim_\w+)\b|'
                           r'\.caffemodel\b')


def readme_commands() -> list[str]:
  """The shell lines of the README's unlabeled code blocks, continuation lines joined."""
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    text = f.read()
  blocks, lines, fence = [], [], None
  for line in text.splitlines():
    if line.startswith('```'):
      if fence is None:
        fence, lines = line[3:].strip(), []
      else:
        if not fence:  # unlabeled: shell
          blocks.append('\n'.join(lines))
        fence = None
    elif fence is not None:
      lines.append(line)
  out = []
  for block in blocks:
    for line in block.replace('\\\n', ' ').splitlines():
      line = re.split(r'\s#\s', line)[0].strip()
      if line.startswith(('python ', 'make ')):
        out.append(line)
  return out


def _shrunk(command: str, data: str = 'DATA') -> list[str]:
  args = shlex.split(command)
  for i, arg in enumerate(args):
    flag, eq, _ = arg.partition('=')
    if eq and flag in SHRUNK:
      args[i] = f'{flag}={data if flag == "--data" else SHRUNK[flag]}'
  args[0] = sys.executable
  return args


def test_the_readme_lists_the_commands_this_test_runs():
  commands = readme_commands()
  assert commands[:2] == ['make demo', 'make test']
  assert sum(c.startswith('python -m experiments.') for c in commands) >= 14


@pytest.mark.slow
def test_readme_commands_run_verbatim(tmp_path):
  for name in ('checkpoints', 'configs', 'tests'):
    os.symlink(os.path.join(ROOT, name), tmp_path / name)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
  data = _data(tmp_path / 'data.npz')
  ran = 0
  for command in readme_commands():
    if command.startswith('make ') or SYNOPSIS.search(command):
      continue  # make demo and make test are the demo and this suite; synopses are not commands
    proc = subprocess.run(_shrunk(command, data), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1800)
    if PAPER_WEIGHTS.search(command):
      err = proc.stderr.strip().splitlines()
      assert proc.returncode == 1 and len(err) == 1 and 'error:' in err[0], (command, err)
      continue
    assert proc.returncode == 0, (command, proc.stderr[-3000:])
    ran += 1
  assert ran >= 13  # the runnable commands (13 today)
