"""Smoke test of benchmarks/bench_engine.py on the tiny nets (every method, JSON written)."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KEYS = ('batched_neuron_iters_per_s', 'per_neuron_loop_neuron_iters_per_s',
        'per_iteration_loop_neuron_iters_per_s', 'torch_per_neuron_loop_neuron_iters_per_s',
        'torch_batched_neuron_iters_per_s', 'batched_over_per_neuron_loop',
        'batched_over_per_iteration_loop', 'batched_over_torch', 'batched_over_torch_batched',
        'batched_fraction_of_peak', 'device', 'dtype', 'neurons', 'iters', 'size',
        'flops_per_neuron_iter', 'peak_rss_mib', 'methods', 'targets')


def test_tiny_benchmark_writes_json(tmp_path):
  out = tmp_path / 'bench.json'
  # A subprocess: runners share flag names (--out, --seed), so tests never import two of them.
  # One row per call lets the batched and per-neuron paths share compiled programs (compiling is
  # most of the cost); one PyTorch thread avoids per-op barrier stalls on a busy machine.
  subprocess.run([sys.executable, os.path.join('benchmarks', 'bench_engine.py'), '--size=tiny',
                  '--neurons=2', '--iters=2', '--repeats=1', '--batch_per_device=1',
                  '--torch_threads=1', f'--out={out}'], cwd=ROOT, check=True,
                 capture_output=True)
  record = json.loads(out.read_text())
  assert set(KEYS) <= set(record)
  assert (record['size'], record['neurons'], record['iters']) == ('tiny', 2, 2)
  for key in KEYS[:3]:
    assert record[key] > 0
  # The loops and the batched engine ran the same optimisation.
  assert max(record['final_code_max_abs_diff_vs_batched'].values()) < 1e-3
  if importlib.util.find_spec('torch') is None:
    assert record['torch_per_neuron_loop_neuron_iters_per_s'] is None
    assert record['torch_batched_neuron_iters_per_s'] is None
  else:  # same nets, same weights: the comparison is apples to apples
    assert record['parity_ok'], record['parity']
    assert record['batched_over_torch'] > 0 and record['batched_over_torch_batched'] > 0


@pytest.mark.slow
def test_torch_batched_loop_equals_its_per_neuron_loop():
  """The batched PyTorch baseline does the per-neuron loop's work, rows never mixing."""
  torch = pytest.importorskip('torch')
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  import bench_engine  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(1)
  setup = bench_engine.build_setup('tiny')
  prob = bench_engine.make_problem(setup, 'fc8', 3, 4, 0)
  runner = bench_engine.TorchRunner(bench_engine._load_torch_reference(), setup, prob, 1)
  one_by_one = runner.loop(range(3))
  together = runner.batched(range(3), 3)
  assert np.abs(together - one_by_one).max() <= 1e-4 * np.abs(one_by_one).max()
