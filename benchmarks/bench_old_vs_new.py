r"""Batched DGN-AM speed of the current engine against an older commit's (issue 18: "speed not
worse": new >= 0.95x old at embedded and full size, one run, old and new interleaved, median of 5).

  python benchmarks/bench_old_vs_new.py --out=reports/benchmarks/old_vs_new_cpu.json
  python benchmarks/bench_old_vs_new.py --sizes=embedded --neurons=4 --iters=2 --repeats=2  # smoke

The old package is ``git archive <--old> dgnam_jax`` unpacked into a temporary folder; the new one
is this working tree's (or ``git archive <--new>`` when ``--new`` names a commit). For each size,
one worker process per tree (this file with ``--worker``: it imports ``dgnam_jax`` from its tree
only) builds the nets with the same random weights, codes and targets, runs the batched
``optimize_codes`` once untimed (compilation and the N-shaped eager ops), then waits on stdin.
The parent then asks for ``--repeats`` timed runs of each, alternating old and new (old first in
even rounds, new first in odd ones), so that both medians sample the same machine load; only one
worker computes at a time. The rate is neuron-iterations/s of the whole ``optimize_codes`` call
(N neurons x K iterations, ``--batch_per_device`` rows per compiled call, one device, the
Python-driven loop), exactly what ``bench_engine.py`` reports as ``batched``.

Sizes: ``embedded`` the shipped CIFAR-10 pair (``cifar10_generator`` 512 -> 32x32,
``cifar10_classifier``; default 64 neurons x 10 iterations, batch 64, as
``reports/benchmarks/cpu_embedded_64x10.json``); ``full`` DeePSim fc6 + CaffeNet (default 8 x 5,
batch 8, as ``cpu_full_8x5.json``); ``tiny`` the test stand-ins (smoke runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_COMMIT = '93bb5ef'  # the last commit before the synthesis engine rewrite (issue 18)
THRESHOLD = 0.95
# (neurons, iters, batch_per_device) per size.
DEFAULTS = {'tiny': (8, 5, 8), 'embedded': (64, 10, 64), 'full': (8, 5, 8)}
LAYER = 'fc8'
TAG = '@@ '  # protocol lines on the worker's stdout start with this


# --- worker: runs inside one tree, imports only that tree's dgnam_jax -------------------------
# The worker imports dgnam_jax (and jax) only after _import_tree has chosen the tree.
# pylint: disable=import-outside-toplevel


def _import_tree(tree: str):
  """``dgnam_jax`` from ``tree`` (ahead of the editable install of this checkout); the
  record keeps no paths (no absolute paths in tracked files), so this checks where it came from."""
  sys.path.insert(0, tree)
  import dgnam_jax
  where = os.path.realpath(dgnam_jax.__file__)
  if not where.startswith(os.path.realpath(tree) + os.sep):
    raise RuntimeError(f'dgnam_jax came from {where}, not from {tree}')
  return dgnam_jax


def _build(size: str, seed: int):
  """(pipe, gen params, clf params) with He-scaled random weights, as ``bench_engine.py``.

  Uses only APIs that exist in both layouts (``convert`` moved into ``dgnam_jax.nets``).
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  from dgnam_jax import CaffeGraph, ImageSpace, Pipeline, nets
  from dgnam_jax.caffe import parse_prototxt
  try:
    from dgnam_jax.nets import convert
  except ImportError:  # the layout before issue 18
    from dgnam_jax import convert

  shapes = {}

  def net_shapes(netdef):
    if netdef.name not in shapes:
      shapes[netdef.name] = convert.shapes(netdef, batch=1)
    return shapes[netdef.name]

  def random_params(netdef, seed):
    pshapes, _ = net_shapes(netdef)
    rng = np.random.default_rng(seed)
    params = {}
    for name, layer_shapes in pshapes.items():
      p = netdef.layer(name).param
      kernel = layer_shapes['kernel']
      if netdef.layer(name).type == 'Deconvolution':  # (kh, kw, C_out/g, C_in)
        fan_in = kernel[0] * kernel[1] * kernel[3] / (p.group * p.stride[0] * p.stride[1])
      else:
        fan_in = np.prod(kernel[:-1])
      params[name] = {'kernel': rng.standard_normal(kernel, np.float32) * np.sqrt(2.0 / fan_in)}
      if 'bias' in layer_shapes:
        params[name]['bias'] = rng.standard_normal(layer_shapes['bias'], np.float32) * 0.01
    return params

  def spaces(gen_def, clf_def):
    return dict(generator_space=ImageSpace(size=tuple(net_shapes(gen_def)[1]['deconv0'][2:])),
                classifier_space=ImageSpace(size=tuple(clf_def.inputs[0][1][2:])))

  if size == 'full':
    gen_def = parse_prototxt(nets.prototxt_text('deepsim_fc6'), 'deepsim_fc6.prototxt')
    clf_def = parse_prototxt(nets.prototxt_text('caffenet'), 'caffenet.prototxt')
    pipe = Pipeline(nets.DeePSimGenerator('fc6', dtype=jnp.float32),
                    nets.CaffeNet(1000, dtype=jnp.float32), code_shape=(4096,))
  elif size == 'embedded':
    gen_def = parse_prototxt(nets.prototxt_text('cifar10_generator'), 'cifar10_generator')
    clf_def = parse_prototxt(nets.prototxt_text('cifar10_classifier'), 'cifar10_classifier')
    pipe = Pipeline(nets.net_info('cifar10_generator').factory(dtype=jnp.float32),
                    nets.net_info('cifar10_classifier').factory(dtype=jnp.float32),
                    code_shape=tuple(gen_def.inputs[0][1][1:]), **spaces(gen_def, clf_def))
  else:
    from dgnam_jax.nets import tiny
    gen_def = parse_prototxt(tiny.GENERATOR, 'tiny.prototxt')
    clf_def = parse_prototxt(tiny.CLASSIFIER, 'tiny.prototxt')
    pipe = Pipeline(CaffeGraph(gen_def, dtype=jnp.float32), CaffeGraph(clf_def, dtype=jnp.float32),
                    code_shape=tuple(gen_def.inputs[0][1][1:]), **spaces(gen_def, clf_def))
  return (pipe, jax.device_put(random_params(gen_def, seed)),
          jax.device_put(random_params(clf_def, seed + 1)))


def _make_call(dgnam_jax, size: str, neurons: int, iters: int, batch: int, seed: int):
  """A no-argument function running the batched ``optimize_codes`` once; returns final codes."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  pipe, gen_params, clf_params = _build(size, seed)
  out = jax.eval_shape(pipe.classify, clf_params,
                       jax.ShapeDtypeStruct((1, *pipe.classifier_space.size, 3), jnp.float32))
  table = out.layers if hasattr(out, 'layers') else out
  n_units = table[LAYER].shape[-1]
  rng = np.random.default_rng(seed + 2)
  codes0 = jnp.asarray(rng.uniform(0.0, 2.0, (neurons, *pipe.code_shape)).astype(np.float32))
  units = [(37 * i) % n_units for i in range(neurons)]
  targets = dgnam_jax.make_targets(units)
  objective = dgnam_jax.Objective(LAYER)
  hyper = dgnam_jax.make_hyper(neurons)
  lower = jnp.zeros(pipe.code_shape, jnp.float32)
  upper = jnp.full(pipe.code_shape, 6.0, jnp.float32)
  # Distinct slots per request (as bench_engine.py): the default key (the unit) would put
  # requests on the same unit in separate calls.
  slot_keys = np.arange(neurons)

  if hasattr(dgnam_jax, 'NetParams'):  # the rewritten engine (dgnam_jax.synthesis)
    params = dgnam_jax.NetParams(gen_params, clf_params)
    bounds = dgnam_jax.Bounds.box(lower, upper)

    def call():
      return dgnam_jax.optimize_codes(pipe, params, codes0, targets, objective=objective,
                                      hyper=hyper, bounds=bounds, iters=iters,
                                      batch_per_device=batch, mesh=None,
                                      loop=dgnam_jax.Loop.PYTHON,
                                      slot_keys=slot_keys).final_codes
    api = 'new'
  else:  # dgnam_jax.optimize (before issue 18)
    from dgnam_jax import optimize

    def call():
      return optimize.optimize_codes(pipe, gen_params, clf_params, codes0, targets, hyper, lower,
                                     upper, objective=objective, iters=iters,
                                     batch_per_device=batch, mesh=None, loop='python',
                                     slot_keys=slot_keys).final_codes
    api = 'old'
  return (lambda: np.asarray(call())), api


def _say(**record) -> None:
  print(TAG + json.dumps(record), flush=True)


def worker(args) -> None:
  """Builds, warms up, then answers 'run' lines on stdin with one timed call each."""
  dgnam_jax = _import_tree(args.tree)
  import jax
  import numpy as np

  call, api = _make_call(dgnam_jax, args.size, args.neurons, args.iters, args.batch_per_device,
                         args.seed)
  t = time.perf_counter()
  codes = call()
  warmup = time.perf_counter() - t
  if args.dump:
    np.save(args.dump, codes)
  device = jax.devices()[0]
  _say(ready=True, api=api, warmup_s=warmup, jax_version=jax.__version__,
       device=f'{device.platform}:{device.device_kind}')
  for line in sys.stdin:
    if line.strip() != 'run':
      break
    t, c = time.perf_counter(), time.process_time()
    call()
    _say(wall_s=time.perf_counter() - t, cpu_s=time.process_time() - c,
         peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


# --- parent -----------------------------------------------------------------------------------


def _git(*args: str) -> str:
  return subprocess.run(['git', *args], cwd=ROOT, check=True, capture_output=True,
                        text=True).stdout.strip()


def _extract(commit: str, into: str) -> str:
  """``dgnam_jax`` of ``commit`` unpacked under ``into``; returns the full hash."""
  full = _git('rev-parse', '--verify', f'{commit}^{{commit}}')
  os.makedirs(into)
  subprocess.run(f'git archive {shlex.quote(full)} dgnam_jax | tar -x -C {shlex.quote(into)}',
                 shell=True, cwd=ROOT, check=True)
  return full


class Worker:
  """One worker process (one tree, one size) and its line protocol."""

  def __init__(self, name: str, tree: str, size: str, shape: tuple[int, int, int], seed: int,
               tmp: str):
    self.name, self.log = name, os.path.join(tmp, f'{name}_{size}.log')
    self.dump = os.path.join(tmp, f'{name}_{size}_codes.npy')
    neurons, iters, batch = shape
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', f'--tree={tree}',
           f'--size={size}', f'--neurons={neurons}', f'--iters={iters}',
           f'--batch_per_device={batch}', f'--seed={seed}', f'--dump={self.dump}']
    with open(self.log, 'w') as log:
      self.proc = subprocess.Popen(cmd, cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=log, text=True, bufsize=1)
    self.ready = self._read()

  def _read(self) -> dict:
    for line in self.proc.stdout:
      if line.startswith(TAG):
        return json.loads(line[len(TAG):])
    self.proc.wait()
    with open(self.log) as f:
      tail = f.read()[-4000:]
    raise RuntimeError(f'worker {self.name} exited with {self.proc.returncode}:\n{tail}')

  def run(self) -> dict:
    self.proc.stdin.write('run\n')
    self.proc.stdin.flush()
    return self._read()

  def close(self) -> None:
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write('quit\n')
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
      except (OSError, subprocess.TimeoutExpired):
        self.proc.kill()
        self.proc.wait()


def measure_size(size: str, shape, trees: dict[str, str], repeats: int, seed: int,
                 tmp: str) -> dict:
  import numpy as np

  neurons, iters, batch = shape
  workers = {}
  try:
    for name in ('old', 'new'):  # one at a time: warm-ups do not compete for the cores
      print(f'[{size}] starting the {name} worker (compiling) ...', flush=True)
      workers[name] = Worker(name, trees[name], size, shape, seed, tmp)
      print(f"[{size}] {name} ready: warm-up {workers[name].ready['warmup_s']:.1f} s", flush=True)
    runs = {name: [] for name in workers}
    for r in range(repeats):
      for name in (('old', 'new') if r % 2 == 0 else ('new', 'old')):
        runs[name].append(workers[name].run())
      print(f"[{size}] round {r + 1}/{repeats}: old {runs['old'][-1]['wall_s']:.2f} s, "
            f"new {runs['new'][-1]['wall_s']:.2f} s", flush=True)
  finally:
    for w in workers.values():
      w.close()
  record = {'neurons': neurons, 'iters': iters, 'batch_per_device': batch}
  for name, w in workers.items():
    times = [x['wall_s'] for x in runs[name]]
    record[name] = {'api': w.ready['api'], 'jax_version': w.ready['jax_version'],
                    'device': w.ready['device'],
                    'warmup_s': w.ready['warmup_s'], 'times_s': times,
                    'cpu_times_s': [x['cpu_s'] for x in runs[name]],
                    'peak_rss_mib': runs[name][-1]['peak_rss_mib'],
                    'neuron_iters_per_s': neurons * iters / statistics.median(times)}
  ratio = record['new']['neuron_iters_per_s'] / record['old']['neuron_iters_per_s']
  record['new_over_old'] = ratio
  record['paired_new_over_old_median'] = statistics.median(
      o['wall_s'] / n['wall_s'] for o, n in zip(runs['old'], runs['new']))
  record['cpu_time_new_over_old'] = (statistics.median(record['old']['cpu_times_s'])
                                     / statistics.median(record['new']['cpu_times_s']))
  record['met'] = ratio >= THRESHOLD
  # Same weights, codes and algorithm; the normalised step amplifies rounding differences over
  # many iterations, so this is a sanity figure (small at few iterations), not a check.
  record['final_code_max_abs_diff'] = float(np.abs(
      np.load(workers['new'].dump) - np.load(workers['old'].dump)).max())
  return record


def format_table(record: dict) -> str:
  old = record['old']['commit'][:7]
  lines = [f"old {old} vs new {record['new']['label']}: batched neuron-iterations/s, median of "
           f"{record['repeats']} (interleaved), target new/old >= {THRESHOLD}",
           f"{'size':<9s} {'N x K':>7s} {'batch':>5s} {'old':>9s} {'new':>9s} {'new/old':>8s} "
           f"{'paired':>7s} {'CPU':>6s}  target"]
  for size, r in record['sizes'].items():
    lines.append(f"{size:<9s} {r['neurons']:>3d} x {r['iters']:<3d} {r['batch_per_device']:>5d} "
                 f"{r['old']['neuron_iters_per_s']:9.2f} {r['new']['neuron_iters_per_s']:9.2f} "
                 f"{r['new_over_old']:8.3f} {r['paired_new_over_old_median']:7.3f} "
                 f"{r['cpu_time_new_over_old']:6.3f}  {'met' if r['met'] else 'NOT met'}")
  lines.append('(paired: median of per-round old/new time ratios; CPU: old/new process CPU '
               'time, all threads)')
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--old', default=OLD_COMMIT, help='Commit of the old engine.')
  parser.add_argument('--new', default='worktree',
                      help="'worktree' (this checkout, uncommitted changes included) or a commit.")
  parser.add_argument('--sizes', default='embedded,full',
                      help='Comma-separated sizes: ' + ', '.join(DEFAULTS) + '.')
  parser.add_argument('--neurons', type=int, default=0, help='N (0: the size\'s default).')
  parser.add_argument('--iters', type=int, default=0, help='K (0: the size\'s default).')
  parser.add_argument('--batch_per_device', type=int, default=0,
                      help='Rows per compiled call (0: the size\'s default, capped at N).')
  parser.add_argument('--repeats', type=int, default=5, help='Timed runs per tree and size.')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', default=None, help='Write the record as JSON here.')
  # Worker mode (internal).
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--tree', help=argparse.SUPPRESS)
  parser.add_argument('--size', help=argparse.SUPPRESS)
  parser.add_argument('--dump', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(args)
    return

  sizes = [s for s in args.sizes.split(',') if s]
  unknown = set(sizes) - set(DEFAULTS)
  if unknown or not sizes:
    parser.error(f'--sizes: unknown {sorted(unknown)}; choose from {list(DEFAULTS)}')
  if args.repeats < 1:
    parser.error('--repeats must be >= 1')
  head = _git('rev-parse', 'HEAD')
  with tempfile.TemporaryDirectory(prefix='bench_old_vs_new_') as tmp:
    trees = {'old': os.path.join(tmp, 'old')}
    record = {'old': {'commit': _extract(args.old, trees['old'])}}
    if args.new == 'worktree':
      trees['new'] = ROOT
      dirty = bool(_git('status', '--porcelain', '--', 'dgnam_jax'))
      record['new'] = {'commit': head, 'uncommitted_changes': dirty,
                       'label': f"working tree on {head[:7]}{' + changes' if dirty else ''}"}
    else:
      trees['new'] = os.path.join(tmp, 'new')
      full = _extract(args.new, trees['new'])
      record['new'] = {'commit': full, 'uncommitted_changes': False, 'label': full[:7]}
    record |= {'repeats': args.repeats, 'seed': args.seed, 'threshold': THRESHOLD,
               'order': 'alternating: old first in even rounds, new first in odd ones',
               'layer': LAYER, 'loop': 'python', 'mesh': None, 'dtype': 'float32',
               'cpu_count': len(os.sched_getaffinity(0)),
               'machine': platform.processor() or platform.machine(),
               'xla_flags': os.environ.get('XLA_FLAGS', ''), 'sizes': {}}
    for size in sizes:
      n, k, b = DEFAULTS[size]
      n = args.neurons or n
      shape = (n, args.iters or k, min(args.batch_per_device or b, n))
      record['sizes'][size] = measure_size(size, shape, trees, args.repeats, args.seed, tmp)
  record['device'] = next(iter(record['sizes'].values()))['new']['device']
  record['all_met'] = all(r['met'] for r in record['sizes'].values())
  print(format_table(record))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(record, f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
