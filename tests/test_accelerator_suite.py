"""The accelerator suite (benchmarks/accelerator/suite.py) end to end at tiny sizes on the CPU,
so that it cannot fail on a typo when a GPU is finally lent."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_suite_runs_every_part_at_tiny_size(tmp_path):
  proc = subprocess.run(
      [sys.executable, os.path.join('benchmarks', 'accelerator', 'suite.py'), '--size=tiny',
       '--classes=10', '--iters=3', '--torch_neurons=4', '--sweep_units=0-1', '--sweep_iters=2',
       f'--out_dir={tmp_path}'], cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = json.loads((tmp_path / 'accelerator_suite.json').read_text())
  assert [e['dtype'] for e in record['engine']] == ['float32', 'bfloat16']
  for e in record['engine']:
    assert 'error' not in e, e
    assert e['classes'] == 10 and e['batch_per_device'] == 10  # auto: all rows on one device
    assert e['neuron_iters_per_s'] > 0 and e['compile_s'] > 0 and e['rows_per_80gb'] > 0
  assert 'error' not in record['torch_batched'], record['torch_batched']
  assert [(s['preset'], s.get('requests')) for s in record['sweeps']] == [
      ('cifar10', 2), ('tinyimagenet200', 2)], record['sweeps']
  assert not record['skipped']
  text = (tmp_path / 'accelerator_suite.md').read_text()
  assert '| engine (10 classes x 3) | bfloat16 | 10 |' in text
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.suite_sweep')]
