"""Presets as config files: lookup, path resolution, overrides, and the runner's --config."""

import json
import os
import subprocess
import sys

import pytest

from dgnam_jax.sweeps import configs
from dgnam_jax.sweeps import run as sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_preset_is_a_config_file_of_sweep_settings():
  assert {'caffenet', 'places205', 'places205_conv5', 'googlenet', 'cifar10',
          'tinyimagenet200'} <= set(configs.names())
  for name in configs.names():
    values = configs.load(name)
    assert sweep.config_with_preset(values, generator='g', classifier='c', out='o').units
    assert configs.find(name).endswith(os.path.join('configs', name + '.py'))


def test_paths_resolve_relative_to_the_config_file(tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)
  cifar = configs.load('cifar10')
  assert cifar['generator'] == os.path.join('checkpoints', 'cifar10', 'generator')
  assert os.path.isdir(cifar['classifier'])
  user = tmp_path / 'exp' / 'mine.py'
  user.parent.mkdir()
  user.write_text('from ml_collections import config_dict\n'
                  'def get_config():\n'
                  '  return config_dict.ConfigDict(dict(generator="nets/g", classifier="/abs/c",'
                  ' bounds="none", units="1-2", lr=3.0))\n')
  values = configs.load(str(user))
  assert values['generator'] == str(tmp_path / 'exp' / 'nets' / 'g')
  assert values['classifier'] == '/abs/c' and values['bounds'] == 'none'
  cfg = sweep.config_with_preset(str(user), out='o', lr=5.0)  # explicit settings win
  assert (cfg.lr, cfg.units, cfg.iters) == (5.0, '1-2', 200)


def test_bad_configs_name_the_culprit(tmp_path):
  with pytest.raises(ValueError, match='unknown preset'):
    configs.find('vgg')
  with pytest.raises(ValueError, match='does not exist'):
    configs.find(str(tmp_path / 'nope.py'))
  broken = tmp_path / 'broken.py'
  broken.write_text('def get_config():\n  return 1 / 0\n')
  with pytest.raises(ValueError, match='broken.py: ZeroDivisionError'):
    configs.load(str(broken))
  typo = tmp_path / 'typo.py'
  typo.write_text('def get_config():\n  return dict(units="1", lrr=3.0)\n')
  with pytest.raises(ValueError, match="unknown settings \\['lrr'\\]"):
    sweep.config_with_preset(str(typo), generator='g', classifier='c', out='o')


def test_synthesize_reads_a_config_with_overrides(tmp_path):
  out = tmp_path / 'run'
  cmd = [sys.executable, '-m', 'experiments.synthesize', '--config=configs/cifar10.py',
         '--config.lr=3.5', '--config.iters=2', '--iters=1', '--units=0-1', '--seeds=0-1',
         f'--out={out}']
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  with open(out / 'manifest.json') as f:
    settings = json.load(f)['settings']
  # --config.lr overrides the file, the explicit --iters overrides --config.iters.
  assert (settings['lr'], settings['iters'], settings['seeds']) == (3.5, 1, [0, 1])
  proc = subprocess.run(cmd[:4] + ['--preset=cifar10', f'--out={tmp_path / "x"}'], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 1 and 'pass one of them' in proc.stderr
  assert not (tmp_path / 'x').exists()


def test_command_line_overrides_of_config_paths_are_relative_to_the_working_directory():
  path = os.path.join(ROOT, 'configs', 'caffenet.py')
  own = configs.read(path, resolve_paths=False)
  values = dict(own, generator='nets/deepsim_fc6', units='1')
  got = configs.with_overrides(path, values)
  assert got['generator'] == 'nets/deepsim_fc6' and got['units'] == '1'
  cifar = os.path.join(ROOT, 'configs', 'cifar10.py')
  got = configs.with_overrides(cifar, configs.read(cifar, resolve_paths=False))
  assert got['generator'] == os.path.join(ROOT, 'checkpoints', 'cifar10', 'generator')
