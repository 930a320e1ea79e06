r"""The accelerator suite (issue 22): everything worth measuring on a lent GPU, in < 8 minutes.

  python benchmarks/accelerator/suite.py --out_dir=reports/benchmarks          # on the GPU
  python benchmarks/accelerator/suite.py --size=tiny --classes=10 --iters=3 \
      --torch_neurons=4 --sweep_units=0-1 --sweep_iters=2 --out_dir=OUT  # CPU check

Parts, each recorded even when a later one fails or the time budget runs out:

1. ``engine``: every fc8 class of the pair (full size: DeePSim fc6 + CaffeNet, random weights),
   ``--iters`` iterations, float32 then bfloat16, the batch from ``--batch_per_device=auto``
   (``dgnam_jax.synthesis.sizing``). Timed twice: the first run includes compilation, the
   second does not (compile = first - second). Neurons/s, neuron-iterations/s, achieved
   FLOP/s and the fraction of the card's dense peak (the peak named: ``bench_engine.PEAK_TFLOPS``;
   float32 runs as TF32 under JAX's default precision), peak device memory, and the sizing
   (bytes per row, fixed bytes, rows that fit in 80 GB).
2. ``torch_batched``: the same nets and weights in PyTorch, ``--torch_neurons`` neurons batched
   as the engine batches them (``torch_dgnam.dgnam_batch``), float32 with TF32 on.
3. ``sweeps``: ``experiments.synthesize`` with the cifar10 and tinyimagenet200 presets (committed
   checkpoints), all their classes, in a subprocess with XLA's deterministic GPU ops
   (``--xla_gpu_deterministic_ops=true``): their images must be reproducible.

Writes ``<out_dir>/accelerator_suite.json`` and ``.md``. Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(_HERE))
sys.path[:0] = [p for p in (os.path.dirname(_HERE), ROOT) if p not in sys.path]

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np

import bench_engine
from dgnam_jax.synthesis import api, methods, sizing
from dgnam_jax.synthesis.batching import Devices
from dgnam_jax.synthesis.loop import NetParams
from dgnam_jax.synthesis.objectives import make_targets
# pylint: enable=g-import-not-at-top,wrong-import-position

GIB = 2**30
SWEEP_PRESETS = ('cifar10', 'tinyimagenet200')


def _device_peak_bytes() -> int | None:
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def engine(size: str, dtype: str, classes: int, iters: int, seed: int = 0) -> dict:
  """Part 1 for one dtype: auto batch, a cold and a warm run of every class."""
  setup = bench_engine.build_setup(size, dtype, seed)
  prob = bench_engine.make_problem(setup, 'fc8', classes, iters, seed)
  params = NetParams(setup.gen_params, setup.clf_params)
  devices = jax.local_device_count()
  found = sizing.auto_batch(methods.dgnam_recipe(), setup.pipe, params,
                            make_targets(prob.units[:1]), objective=prob.objective,
                            iters=iters, max_rows=-(-classes // devices))

  def run():
    t = time.perf_counter()
    res = api.optimize_codes(setup.pipe, params, prob.codes0, prob.targets,
                             objective=prob.objective, hyper=prob.hyper, bounds=prob.bounds,
                             iters=iters, batch_per_device=found.batch, mesh=Devices.ALL,
                             slot_keys=np.arange(classes))
    return time.perf_counter() - t, res

  cold, _ = run()
  warm, res = run()
  flops = bench_engine.flops_per_neuron_iter(setup, 'fc8')
  device = jax.local_devices()[0]
  peak = bench_engine.default_peak_tflops(device.device_kind, dtype)
  rate = classes * iters / warm
  return {
      'size': size, 'dtype': dtype, 'classes': classes, 'iters': iters, 'devices': devices,
      'batch_per_device': found.batch, 'sizing': found.describe(),
      'rows_per_80gb': sizing.rows_within(80e9, found.per_row, found.fixed),
      'first_run_s': cold, 'run_s': warm, 'compile_s': cold - warm,
      'neurons_per_s': classes / warm, 'neuron_iters_per_s': rate,
      'flops_per_neuron_iter': flops, 'achieved_tflops': rate * flops / 1e12,
      'peak_tflops': peak,
      'peak_used': f'{device.device_kind} dense {dtype} (TF32 for float32)' if peak else None,
      'fraction_of_peak': rate * flops / (peak * 1e12) if peak else None,
      'device_peak_gib': (_device_peak_bytes() or 0) / GIB or None,
      'mean_final_activation': float(np.mean(res.activations)),
  }


def torch_batched(size: str, classes: int, iters: int, neurons: int, batch: int,
                  seed: int = 0) -> dict:
  """Part 2: the batched PyTorch loop on the same card, nets and weights (float32, TF32)."""
  tdg = bench_engine._load_torch_reference()  # pylint: disable=protected-access
  if tdg is None:
    return {'skipped': 'torch is not installed'}
  setup = bench_engine.build_setup(size, 'float32', seed)
  prob = bench_engine.make_problem(setup, 'fc8', classes, iters, seed)
  device = bench_engine._torch_device('auto', jax.default_backend())  # pylint: disable=protected-access
  runner = bench_engine.TorchRunner(tdg, setup, prob, 0, device)
  runner.tf32(True)
  chosen = range(min(neurons, classes))
  runner.batched(chosen[:batch], batch, iters=1)  # warm-up: cuDNN picks its algorithms
  t = time.perf_counter()
  runner.batched(chosen, batch)
  wall = time.perf_counter() - t
  return {'device': str(runner.device), 'torch_version': runner.torch.__version__,
          'neurons': len(chosen), 'iters': iters, 'batch': batch, 'run_s': wall,
          'neuron_iters_per_s': len(chosen) * iters / wall}


def sweep(preset: str, out: str, units: str | None, iters: int | None) -> dict:
  """Part 3: one preset's sweep in a subprocess with deterministic GPU ops."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' --xla_gpu_deterministic_ops=true').strip()
  cmd = [sys.executable, '-m', 'experiments.synthesize', f'--preset={preset}',
         f'--out={out}', '--batch_per_device=auto']
  cmd += [f'--units={units}'] if units else []
  cmd += [f'--iters={iters}'] if iters else []
  t = time.perf_counter()
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t
  if proc.returncode:
    return {'preset': preset, 'error': proc.stderr.strip().splitlines()[-1:], 'wall_s': wall}
  with open(os.path.join(out, 'manifest.json'), encoding='utf-8') as f:
    doc = json.load(f)
  n = len(doc['rows'])
  return {'preset': preset, 'requests': n, 'iters': doc['settings']['iters'],
          'batch_per_device': doc['settings']['batch_per_device'], 'wall_s': wall,
          'requests_per_s_with_startup': n / wall, 'xla_flags': env['XLA_FLAGS'],
          'command': ' '.join(['python'] + cmd[1:4] + ['--out=OUT'] + cmd[5:])}


def markdown(record: dict) -> str:
  lines = [f"# Accelerator suite: {record['device']}", '',
           f"jax {record['jax']}; command `{record['command']}`; total {record['total_s']:.0f} s.",
           '', '| part | dtype | batch/device | compile s | run s | neurons/s | '
           'neuron-iter/s | TFLOP/s | of peak | peak GiB | rows per 80 GB |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  fmt = lambda v, f='.1f': '—' if v is None else format(v, f)
  for e in record['engine']:
    if 'error' in e:
      lines.append(f"| engine | {e['dtype']} | {e['error']} |||||||||")
      continue
    lines.append(f"| engine ({e['classes']} classes x {e['iters']}) | {e['dtype']} | "
                 f"{e['batch_per_device']} | {e['compile_s']:.1f} | {e['run_s']:.2f} | "
                 f"{e['neurons_per_s']:.1f} | {e['neuron_iters_per_s']:.0f} | "
                 f"{e['achieved_tflops']:.2f} | {fmt(e['fraction_of_peak'], '.1%')} | "
                 f"{fmt(e['device_peak_gib'], '.2f')} | {e['rows_per_80gb']} |")
  t = record['torch_batched']
  if 'neuron_iters_per_s' in t:
    lines.append(f"| PyTorch batched ({t['neurons']} x {t['iters']}, {t['device']}) | float32 "
                 f"| {t['batch']} | — | {t['run_s']:.2f} | — | {t['neuron_iters_per_s']:.0f} "
                 '| — | — | — | — |')
  lines += ['', '| preset sweep (deterministic GPU ops) | requests | batch/device | wall s '
            '(with start-up) |', '|---|---|---|---|']
  for s in record['sweeps']:
    if 'error' in s:
      lines.append(f"| {s['preset']} | error: {s['error']} | | |")
    else:
      lines.append(f"| {s['preset']} | {s['requests']} x {s['iters']} | "
                   f"{s['batch_per_device']} | {s['wall_s']:.1f} |")
  if record['skipped']:
    lines += ['', 'Skipped (time budget): ' + ', '.join(record['skipped'])]
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', default='full', choices=bench_engine.SIZES)
  parser.add_argument('--classes', type=int, default=1000)
  parser.add_argument('--iters', type=int, default=200)
  parser.add_argument('--dtypes', default='float32,bfloat16')
  parser.add_argument('--torch_neurons', type=int, default=256)
  parser.add_argument('--sweep_units', default=None, help='--units of the preset sweeps '
                      '(default: all classes)')
  parser.add_argument('--sweep_iters', type=int, default=None)
  parser.add_argument('--budget_s', type=float, default=420.0, help='Start no part after this.')
  parser.add_argument('--out_dir', required=True, help='Where the JSON and markdown go (e.g. '
                      'reports/benchmarks).')
  args = parser.parse_args()
  t0 = time.perf_counter()
  device = jax.local_devices()[0]
  record = {'device': f'{device.platform}:{device.device_kind} x{jax.local_device_count()}',
            'jax': jax.__version__, 'command': ' '.join(['python'] + sys.argv[:1] + [
                a for a in sys.argv[1:] if not a.startswith('--out_dir')]),
            'engine': [], 'torch_batched': {}, 'sweeps': [], 'skipped': []}
  late = lambda: time.perf_counter() - t0 > args.budget_s

  def attempt(name, fn):
    if late():
      record['skipped'].append(name)
      return None
    try:
      return fn()
    except Exception as e:  # pylint: disable=broad-except; one part's failure is recorded
      return {'error': f'{type(e).__name__}: {str(e).splitlines()[0][:300]}'}

  for dtype in args.dtypes.split(','):
    got = attempt(f'engine {dtype}', lambda d=dtype: engine(args.size, d, args.classes,
                                                              args.iters))
    if got is not None:
      record['engine'].append({'dtype': dtype, **got})
    print(json.dumps(record['engine'][-1:]), flush=True)
  batch = next((e['batch_per_device'] for e in record['engine'] if 'batch_per_device' in e), 64)
  record['torch_batched'] = attempt('torch_batched', lambda: torch_batched(
      args.size, args.classes, args.iters, args.torch_neurons, batch)) or {}
  os.makedirs(args.out_dir, exist_ok=True)
  for preset in SWEEP_PRESETS:
    out = os.path.join(args.out_dir, f'.suite_sweep_{preset}')
    got = attempt(f'sweep {preset}', lambda p=preset, o=out: sweep(p, o, args.sweep_units,
                                                                   args.sweep_iters))
    if got is not None:
      record['sweeps'].append({'preset': preset, **got})
    subprocess.run(['rm', '-rf', out], check=False)
  record['total_s'] = time.perf_counter() - t0
  with open(os.path.join(args.out_dir, 'accelerator_suite.json'), 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=1)
  text = markdown(record)
  with open(os.path.join(args.out_dir, 'accelerator_suite.md'), 'w', encoding='utf-8') as f:
    f.write(text)
  print(text)


if __name__ == '__main__':
  main()
