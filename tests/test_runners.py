"""Command-line conventions: documented scripts answer --help without side effects, and the
shared CLI helpers behave as the runners rely on."""

import glob
import os
import subprocess
import sys

import pytest

from dgnam_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('script', sorted(glob.glob(os.path.join(ROOT, 'benchmarks',
                                                                  'accelerator', '*.py'))))
def test_accelerator_scripts_answer_help_and_write_nothing(script, tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
  proc = subprocess.run([sys.executable, script, '--help'], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0 and 'usage:' in proc.stdout, proc.stderr
  assert os.listdir(tmp_path) == []
  proc = subprocess.run([sys.executable, script], cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 2 and os.listdir(tmp_path) == []


def test_cli_run_maps_errors_and_interrupts(capsys):
  def bad():
    raise ValueError('--units: cannot read x')

  def interrupted():
    raise KeyboardInterrupt

  assert cli.run('prog', lambda: 'fine') == 0 and capsys.readouterr().out == 'fine\n'
  assert cli.run('prog', bad) == 1
  assert capsys.readouterr().err == 'prog: error: --units: cannot read x\n'
  assert cli.run('prog', interrupted) == cli.INTERRUPTED
  assert capsys.readouterr().err.strip() == 'prog: stopped; rerun the same command to resume'
  assert cli.run('prog', interrupted, resumable=False) == cli.INTERRUPTED
  assert capsys.readouterr().err.strip() == 'prog: stopped'


def test_progress_lines(capsys):
  line = cli.Progress('prog', 'requests')
  line(4, 10, skipped=4)
  assert capsys.readouterr().err == 'prog: 4/10 requests (4 done before this run, starting)\n'
  line(10, 10, skipped=10)
  assert capsys.readouterr().err == 'prog: 10/10 requests (all done before this run)\n'
  line(10, 10, skipped=4)
  err = capsys.readouterr().err
  assert err.startswith('prog: 10/10 requests, 4 resumed, ') and 'nan' not in err


def test_progress_shows_saved_requests_when_fewer_than_computed(capsys):
  line = cli.Progress('prog', 'requests')
  line(6, 10, prefix='chunk 2/3: ', saved=4)
  err = capsys.readouterr().err
  assert err.startswith('prog: chunk 2/3: 6/10 requests (4 saved), ') and 's left' in err
