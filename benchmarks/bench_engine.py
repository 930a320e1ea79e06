r"""Throughput of batched DGN-AM against per-neuron and per-iteration loops (and PyTorch).

  python benchmarks/bench_engine.py --size=full --neurons=8 --iters=5 --out=bench_full.json
  python benchmarks/bench_engine.py --size=embedded --neurons=64 --iters=20 --out=bench_emb.json

Builds a generator + classifier with random weights and runs the same N neurons x K iterations
five ways, in one process, on the same weights and initial codes:

  per_iteration  the engine's jitted single-request step (``loop.request_step``) called N*K
                 times from Python, reading nothing back until the end (how per-neuron
                 visualisation code runs).
  per_neuron     ``optimize_codes`` with one row per compiled call, looped over the N neurons.
  batched        ``optimize_codes`` for all N at once (``--batch_per_device`` rows per call).
  torch          ``torch_dgnam.py`` (this folder): plain PyTorch autograd, one neuron at a time
                 (skipped when torch is not importable).
  torch_batched  the same PyTorch nets, ``--batch_per_device`` neurons per forward/backward
                 (``torch_dgnam.dgnam_batch``): the fair batched baseline.

Each rate is neuron-iterations per second of the optimisation loop only: every method first runs
once untimed (compilation, and the small eager ops whose shapes depend on N), then the timed
repeats go round-robin over the methods, so that on a shared machine each method's median samples
the same load; the median of ``--repeats`` is reported. ``batched`` and ``per_neuron`` go through
the public ``optimize_codes`` and so also draw each neuron's returned image (one extra generator
forward per neuron: ~1/(3.4 K) of the work, 6% at K=5, 0.15% at K=200).

Sizes: ``full`` is the paper's pair (DeePSim fc6 generator 4096 -> 256x256, CaffeNet 227; about
6.9 GFLOP per neuron-iteration); ``embedded`` the project's shipped CIFAR-10 pair
(``cifar10_generator`` 512 -> 32x32, ``cifar10_classifier`` at 32 px); ``tiny`` the test suite's
stand-ins.
The JSON has the rates, the ratios, peak memory, FLOP counts and, on accelerators, the fraction
of peak FLOP/s (``--peak_tflops``, default from a small table by device kind).

``--loop=scan`` runs the engine's ``lax.scan`` variant instead, whose while-loop body leaves most
backward convolutions off XLA:CPU's YNNPACK path (about 2x the CPU time per iteration, jaxlib
0.10.2).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import json
import logging
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

# benchmarks/ is a folder of scripts, not a package: this one imports its sibling torch_dgnam.py,
# and dgnam_jax from this checkout (also when it is not installed).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [p for p in (_HERE, os.path.dirname(_HERE)) if p not in sys.path]

# pylint: disable=g-import-not-at-top,wrong-import-position
from dgnam_jax import cli, nets
from dgnam_jax.caffe import NetDef, parse_prototxt
from dgnam_jax.nets import CaffeGraph, convert, tiny
from dgnam_jax.nets.pipeline import ImageSpace, Pipeline
from dgnam_jax.synthesis import api, methods
from dgnam_jax.synthesis import objectives as targets_lib
from dgnam_jax.synthesis.loop import (Bounds, Hyper, Loop, NetParams, make_hyper, request_keys,
                                      request_step)
# pylint: enable=g-import-not-at-top,wrong-import-position

SIZES = ('tiny', 'embedded', 'full')
METHODS = ('per_iteration', 'per_neuron', 'batched', 'torch', 'torch_batched')
RATE_KEYS = {m: f'{m}_loop_neuron_iters_per_s' for m in ('per_iteration', 'per_neuron')}
RATE_KEYS |= {'batched': 'batched_neuron_iters_per_s',
              'torch': 'torch_per_neuron_loop_neuron_iters_per_s',
              'torch_batched': 'torch_batched_neuron_iters_per_s'}
PARITY_TOLERANCE = 1e-4

_SIZE = flags.DEFINE_enum('size', 'embedded', SIZES, 'Which nets: the paper\'s (full), a small '
                          'the embedded CIFAR-10 pair or the test stand-ins (tiny).')
_NEURONS = flags.DEFINE_integer('neurons', 8, 'Neurons (fc units) to optimise.', lower_bound=1)
_ITERS = flags.DEFINE_integer('iters', 5, 'DGN-AM iterations per neuron.', lower_bound=1)
_BATCH = flags.DEFINE_integer('batch_per_device', 0, 'Rows per compiled call of the batched '
                              'path (0: all neurons in one call).', lower_bound=0)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed runs per method (the median is reported).',
                                lower_bound=1)
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype of the '
                           'JAX nets (parameters stay float32; PyTorch always runs float32).')
_METHODS = flags.DEFINE_multi_enum('methods', list(METHODS), METHODS, 'Methods to run.')
_LAYER = flags.DEFINE_string('layer', 'fc8', 'Classifier layer whose units are maximised.')
_PEAK = flags.DEFINE_float('peak_tflops', None, 'Peak TFLOP/s of the device for the '
                           'fraction-of-peak figure (default: a table by device kind; none '
                           'on CPU).')
_TORCH_THREADS = flags.DEFINE_integer('torch_threads', 0, 'torch.set_num_threads (0: every core '
                                      'this process may use).',
                                      lower_bound=0)
_TORCH_DEVICE = flags.DEFINE_enum('torch_device', 'auto', ['auto', 'cpu', 'cuda'], 'Where the '
                                  'PyTorch loop runs (auto: CUDA when JAX runs on a GPU).')
_LOOP = flags.DEFINE_enum('loop', Loop.PYTHON.value, [l.value for l in Loop],
                          'optimize_codes(loop=Loop(...)) for the batched and per-neuron '
                          'methods.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the random weights and initial codes.')
_OUT = flags.DEFINE_string('out', None, 'Write the results as JSON to this file.')
_CPU_DEVICES = flags.DEFINE_integer('cpu_devices', 1, 'Split the CPU into this many XLA devices '
                                    '(0: one per core, as the sweep runners do); the batched '
                                    'method shards its rows over them.', lower_bound=0)

# Dense peak TFLOP/s by (device-kind substring, dtype). float32 matmuls and convolutions run as
# TF32 on these GPUs under JAX's default precision, hence the TF32 figure for 'float32'.
PEAK_TFLOPS = (('H200', {'bfloat16': 989.0, 'float32': 495.0}),
               ('H100', {'bfloat16': 989.0, 'float32': 495.0}),
               ('A100', {'bfloat16': 312.0, 'float32': 156.0}))

# --- nets -------------------------------------------------------------------------------------

# The test suite's stand-ins: 16-d code -> 16x16 image -> crop 14.
TINY_GENERATOR, TINY_CLASSIFIER = tiny.GENERATOR, tiny.CLASSIFIER


@dataclasses.dataclass
class Setup:
  """Nets, weights and prototxts of one benchmark size.

  Attributes:
    pipe: the benchmarked pair (compute dtype as requested).
    parity_pipe: the same modules in float32 (for the PyTorch parity check).
    gen_def, clf_def: the prototxts, parsed (PyTorch builds its nets from them).
    gen_params, clf_params: random float32 weights, already on the device.
  """
  pipe: Pipeline
  parity_pipe: Pipeline
  gen_def: NetDef
  clf_def: NetDef
  gen_params: dict
  clf_params: dict


@functools.lru_cache(maxsize=None)
def _shapes(netdef: NetDef):
  """``convert.shapes`` at batch 1, once per net (each call traces the whole module)."""
  return convert.shapes(netdef, batch=1)


def random_params(netdef: NetDef, seed: int) -> dict:
  """He-scaled random weights for ``netdef``, so activations stay O(1) through the depth."""
  pshapes, _ = _shapes(netdef)
  rng = np.random.default_rng(seed)
  params = {}
  for name, shapes in pshapes.items():
    p = netdef.layer(name).param
    kernel = shapes['kernel']
    if netdef.layer(name).type == 'Deconvolution':  # (kh, kw, C_out/g, C_in)
      fan_in = kernel[0] * kernel[1] * kernel[3] / (p.group * p.stride[0] * p.stride[1])
    else:
      fan_in = np.prod(kernel[:-1])
    params[name] = {'kernel': rng.standard_normal(kernel, np.float32) * np.sqrt(2.0 / fan_in)}
    if 'bias' in shapes:
      params[name]['bias'] = rng.standard_normal(shapes['bias'], np.float32) * 0.01
  return params


def _image_size(netdef: NetDef, blob: str | None = None) -> tuple[int, int]:
  """(H, W) of the net's input, or of ``blob``."""
  if blob is None:
    return tuple(netdef.inputs[0][1][2:])
  return tuple(_shapes(netdef)[1][blob][2:])


def build_setup(size: str, dtype: str = 'float32', seed: int = 0) -> Setup:
  """The generator/classifier pair of ``size`` with random weights."""
  if size == 'full':
    gen_def = parse_prototxt(nets.prototxt_text('deepsim_fc6'), 'deepsim_fc6.prototxt')
    clf_def = parse_prototxt(nets.prototxt_text('caffenet'), 'caffenet.prototxt')
    make = lambda dt: Pipeline(nets.DeePSimGenerator('fc6', dtype=dt),
                               nets.CaffeNet(1000, dtype=dt), code_shape=(4096,))
  elif size == 'embedded':
    gen_def = parse_prototxt(nets.prototxt_text('cifar10_generator'), 'cifar10_generator')
    clf_def = parse_prototxt(nets.prototxt_text('cifar10_classifier'), 'cifar10_classifier')
    spaces = dict(generator_space=ImageSpace(size=_image_size(gen_def, 'deconv0')),
                  classifier_space=ImageSpace(size=_image_size(clf_def)))
    make = lambda dt: Pipeline(nets.net_info('cifar10_generator').factory(dtype=dt),
                               nets.net_info('cifar10_classifier').factory(dtype=dt),
                               code_shape=tuple(gen_def.inputs[0][1][1:]), **spaces)
  else:
    gen_def, clf_def = (parse_prototxt(t, 'tiny.prototxt') for t in (TINY_GENERATOR,
                                                                      TINY_CLASSIFIER))
    spaces = dict(generator_space=ImageSpace(size=_image_size(gen_def, 'deconv0')),
                  classifier_space=ImageSpace(size=_image_size(clf_def)))
    code_shape = tuple(gen_def.inputs[0][1][1:])
    make = lambda dt: Pipeline(CaffeGraph(gen_def, dtype=dt), CaffeGraph(clf_def, dtype=dt),
                               code_shape=code_shape, **spaces)
  # Parameters go to the device once: passing numpy trees would copy them on every call.
  gen_params = jax.device_put(random_params(gen_def, seed))
  clf_params = jax.device_put(random_params(clf_def, seed + 1))
  return Setup(make(jnp.dtype(dtype)), make(jnp.float32), gen_def, clf_def, gen_params,
               clf_params)


def layer_macs(layer, blobs) -> int:
  """Multiply-accumulates of one conv, deconv or fc layer's forward pass (0 for other types),
  given the net's blob shapes (NCHW, any batch)."""
  p, bottom = layer.param, blobs[layer.bottoms[0]] if layer.bottoms else None
  if layer.type == 'Convolution':
    return int(np.prod(blobs[layer.tops[0]]) * bottom[1] // p.group * np.prod(p.kernel))
  if layer.type == 'Deconvolution':  # every input pixel scatters a C_out/g x k x k patch
    return int(np.prod(bottom) * p.num_output // p.group * np.prod(p.kernel))
  if layer.type == 'InnerProduct':
    return int(np.prod(bottom) * p.num_output)
  return 0


def _layer_macs(netdef: NetDef, end: str | None = None) -> int:
  """Multiply-accumulates of one forward pass (batch 1) through the conv and fc layers."""
  _, blobs = _shapes(netdef)
  total = 0
  for layer in netdef.layers:
    total += layer_macs(layer, blobs)
    if layer.name == end:
      break
  return total


def flops_per_neuron_iter(setup: Setup, layer: str) -> float:
  """FLOPs of one DGN-AM iteration for one neuron: forward + input-gradient pass of both nets.

  Frozen weights mean no weight gradients, so the backward pass costs about one forward
  (``reference/jax.md`` §4.1): 2 FLOP/MAC x 2 passes. The full-size pair gives 6.92e9.
  """
  return 4.0 * (_layer_macs(setup.gen_def) + _layer_macs(setup.clf_def, layer))


# --- the four methods ---------------------------------------------------------------------------


@dataclasses.dataclass
class Problem:
  """One benchmark's inputs: N codes, targets and step settings (device arrays).

  ``keys`` are the requests' (N, 2) randomness (``loop.request_keys``; DGN-AM draws none), as
  ``optimize_codes`` derives them, for the per-iteration loop's single-request step.
  """
  objective: targets_lib.Objective
  codes0: jax.Array
  units: list[int]
  targets: targets_lib.Target
  hyper: Hyper
  bounds: Bounds
  keys: jax.Array
  iters: int
  lr: float = 8.0
  lr_end: float = 1e-10
  l2: float = 0.99


def make_problem(setup: Setup, layer: str, neurons: int, iters: int, seed: int) -> Problem:
  """Random non-negative codes in [0, 2) and bounds [0, 6], one fc unit per neuron."""
  out = jax.eval_shape(setup.pipe.classify, setup.clf_params,
                       jax.ShapeDtypeStruct((1, *setup.pipe.classifier_space.size, 3),
                                            jnp.float32))
  table = out.layers if hasattr(out, 'layers') else out
  if layer not in table or table[layer].ndim != 2:
    raise ValueError(f'--layer must name an fc layer of the classifier; got {layer!r}')
  n_units = table[layer].shape[-1]
  rng = np.random.default_rng(seed + 2)
  codes0 = rng.uniform(0.0, 2.0, (neurons, *setup.pipe.code_shape)).astype(np.float32)
  units = [(37 * i) % n_units for i in range(neurons)]
  return Problem(targets_lib.Objective(layer), jnp.asarray(codes0), units,
                 targets_lib.make_targets(units),
                 make_hyper(neurons, lr=Problem.lr, lr_end=Problem.lr_end, l2=Problem.l2),
                 Bounds.box(jnp.zeros(setup.pipe.code_shape, jnp.float32),
                            jnp.full(setup.pipe.code_shape, 6.0, jnp.float32)),
                 jnp.asarray(request_keys(np.zeros(neurons, np.int64), units)), iters)


def _params(setup: Setup) -> NetParams:
  return NetParams(setup.gen_params, setup.clf_params)


def _engine(setup: Setup, prob: Problem, batch: int, loop: Loop) -> np.ndarray:
  """``optimize_codes`` on all of ``prob``, ``batch`` rows per compiled call (sharded over the
  local devices when there are several, e.g. a CPU split by ``--cpu_devices``); final codes."""
  devices = jax.local_device_count() if batch > 1 else 1
  result = api.optimize_codes(setup.pipe, _params(setup), prob.codes0, prob.targets,
                              objective=prob.objective, hyper=prob.hyper, bounds=prob.bounds,
                              iters=prob.iters, batch_per_device=max(1, batch // devices),
                              mesh=api.Devices.ALL if devices > 1 else None, loop=loop,
                              # Distinct requests (own initial codes), as in a sweep of
                              # (unit, seed) pairs: the default key (the unit) would put
                              # repeats of a unit in separate calls.
                              slot_keys=np.arange(len(prob.units)))
  return result.final_codes


def _per_iteration_loop(setup: Setup, prob: Problem, neurons: Sequence[int]) -> np.ndarray:
  """N*K dispatches of the jitted single-request step; only the final codes are read back."""
  init, step = request_step(methods.dgnam_recipe(), setup.pipe, prob.objective, prob.iters)
  params = _params(setup)
  finals = []
  for n in neurons:
    row = lambda tree, n=n: jax.tree.map(lambda a: a[n], tree)
    target, hyper, key = row(prob.targets), row(prob.hyper), prob.keys[n]
    state = init(prob.codes0[n], hyper)
    for i in range(prob.iters):
      state = step(params, state, target, hyper, key, prob.bounds, jnp.int32(i))
    finals.append(state['p'])
  return np.stack([np.asarray(h) for h in jax.block_until_ready(finals)])


def _load_torch_reference():
  """``torch_dgnam.py`` (a sibling script of this one), or None when torch is not installed."""
  if importlib.util.find_spec('torch') is None:
    return None
  return importlib.import_module('torch_dgnam')


class TorchRunner:
  """The PyTorch nets with the JAX weights, and the per-neuron loop over them."""

  def __init__(self, tdg, setup: Setup, prob: Problem, threads: int, device: str = 'cpu'):
    import torch  # pylint: disable=import-outside-toplevel
    self.torch, self.tdg, self.device = torch, tdg, torch.device(device)
    # "All cores" means the cores this process may run on (taskset), not the machine's.
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    self.gen, self.clf = tdg.TorchCaffeNet(setup.gen_def), tdg.TorchCaffeNet(setup.clf_def)
    tdg.load_caffe_blobs(self.gen, convert.flax_to_caffe(setup.gen_def,
                                                         jax.device_get(setup.gen_params)))
    tdg.load_caffe_blobs(self.clf, convert.flax_to_caffe(setup.clf_def,
                                                         jax.device_get(setup.clf_params)))
    self.gen.to(self.device)
    self.clf.to(self.device)
    pipe = setup.pipe
    (th, tw), (gh, gw) = pipe.classifier_space.size, pipe.generator_space.size
    self.crop = ((gh - th) // 2, (gw - tw) // 2, th, tw)
    self.codes0 = torch.tensor(np.asarray(prob.codes0), device=self.device)
    self.prob = prob

  def neuron(self, n: int, iters: int | None = None):
    p = self.prob
    h, _, _ = self.tdg.dgnam_neuron(
        self.gen, self.clf, self.codes0[n:n + 1], p.units[n], p.objective.layer,
        iters or p.iters, self.crop, p.lr, p.lr_end, p.l2, 0.0, 6.0)
    return h

  def loop(self, neurons: Sequence[int]) -> np.ndarray:
    return np.concatenate([self.neuron(n).cpu().numpy() for n in neurons])

  def batched(self, neurons: Sequence[int], batch: int, iters: int | None = None) -> np.ndarray:
    """The same neurons ``batch`` rows at a time (``torch_dgnam.dgnam_batch``)."""
    p, neurons = self.prob, list(neurons)
    out = []
    for lo in range(0, len(neurons), batch):
      part = neurons[lo:lo + batch]
      h = self.tdg.dgnam_batch(self.gen, self.clf, self.codes0[part], [p.units[n] for n in part],
                               p.objective.layer, iters or p.iters, self.crop, p.lr, p.lr_end,
                               p.l2, 0.0, 6.0)
      out.append(h.cpu().numpy())
    return np.concatenate(out)

  def tf32(self, on: bool) -> None:
    """TF32 convolutions and matmuls on CUDA: on for timing, as JAX's default precision uses
    it for float32 on GPUs; off for the parity check, which JAX runs at 'highest'."""
    self.torch.backends.cudnn.allow_tf32 = on
    self.torch.backends.cuda.matmul.allow_tf32 = on

  def parity(self, setup: Setup, prob: Problem) -> dict[str, float]:
    """Relative max errors, PyTorch vs JAX float32, on neuron 0's initial code.

    Compares the generated image, the whole target layer, and d a_unit / d code.
    """
    torch, pipe, layer = self.torch, setup.parity_pipe, prob.objective.layer
    code, unit = prob.codes0[:1], prob.units[0]

    def jax_act(c):
      xc = pipe.to_classifier(pipe.generate(setup.gen_params, c)[0])
      out = pipe.classify(setup.clf_params, xc[None])
      return out.layers[layer][0, unit], (xc, out.layers[layer][0])

    with jax.default_matmul_precision('highest'):  # TF32 on GPUs would swamp the comparison
      grad, (image, acts) = jax.jit(jax.grad(jax_act, has_aux=True))(code)
    h = torch.tensor(np.asarray(code), device=self.device).requires_grad_(True)
    oy, ox, th, tw = self.crop
    self.tf32(False)
    t_image = self.gen(h)[0][pipe.output_blob][:, :, oy:oy + th, ox:ox + tw]
    t_acts = self.clf(t_image, end=layer)[1][layer][0]
    (t_grad,) = torch.autograd.grad(t_acts[unit], h)
    self.tf32(True)
    t_image, t_acts, t_grad = (t.detach().cpu() for t in (t_image, t_acts, t_grad))
    rel = lambda a, b: float(np.abs(np.asarray(a, np.float64) - b).max()
                             / max(np.abs(b).max(), 1e-30))
    return {'image': rel(t_image.numpy()[0].transpose(1, 2, 0), np.asarray(image)),
            'layer': rel(t_acts.numpy(), np.asarray(acts)),
            'code_grad': rel(t_grad.numpy(), np.asarray(grad))}


# --- measurement --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """Everything one benchmark run needs (the absl flags, as data)."""
  size: str = 'embedded'
  neurons: int = 8
  iters: int = 5
  batch_per_device: int = 0
  repeats: int = 3
  dtype: str = 'float32'
  methods: tuple[str, ...] = METHODS
  layer: str = 'fc8'
  peak_tflops: float | None = None
  torch_threads: int = 0
  torch_device: str = 'auto'
  loop: str = 'python'
  seed: int = 0


def _peak_rss_mib() -> float:
  """Process peak resident memory so far (Linux reports KiB, macOS bytes)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / (2**20 if sys.platform == 'darwin' else 2**10)


def _device_peak_mib() -> float | None:
  stats = jax.devices()[0].memory_stats() or {}
  return stats['peak_bytes_in_use'] / 2**20 if 'peak_bytes_in_use' in stats else None


def _timed(fn: Callable[[], object]) -> tuple[float, float, object]:
  """(wall s, process CPU s, output) of one call; ``fn`` returns host arrays, so the wall time
  covers all the device work. CPU time (all threads) is a diagnostic that a shared, busy machine
  distorts less than wall time."""
  t, c = time.perf_counter(), time.process_time()
  out = fn()
  return time.perf_counter() - t, time.process_time() - c, out


def default_peak_tflops(device_kind: str, dtype: str) -> float | None:
  for key, peaks in PEAK_TFLOPS:
    if key.lower() in device_kind.lower():
      return peaks[dtype]
  return None


def _measure_round_robin(methods: dict[str, tuple[Callable[[], object], Callable[[], object]]],
                         repeats: int) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
  """Times (warm-up, run) pairs: all warm-ups first, then ``repeats`` rounds over the methods.

  Returns per-method timing details and each method's last output (final codes).
  """
  details, outputs = {}, {}
  for name, (warmup, _) in methods.items():
    warm, _, _ = _timed(warmup)
    # A warm-up is the timed call itself (or a part of it), so it reaches the method's peak.
    details[name] = {'warmup_s': warm, 'times_s': [], 'cpu_times_s': [],
                     'peak_rss_mib_after_warmup': _peak_rss_mib(),
                     'device_peak_mib_after_warmup': _device_peak_mib()}
  for _ in range(repeats):
    for name, (_, run) in methods.items():
      wall, cpu, out = _timed(run)
      details[name]['times_s'].append(wall)
      details[name]['cpu_times_s'].append(cpu)
      outputs[name] = np.asarray(out)
  return details, outputs


def _torch_device(flag: str, jax_platform: str) -> str:
  """'auto': CUDA when JAX runs on a GPU and PyTorch sees one, else the CPU."""
  if flag != 'auto':
    return flag
  import torch  # pylint: disable=import-outside-toplevel
  return 'cuda' if jax_platform == 'gpu' and torch.cuda.is_available() else 'cpu'


def run_benchmark(config: BenchConfig) -> dict:
  """Runs the requested methods and returns the result record (see the module docstring)."""
  setup = build_setup(config.size, config.dtype, config.seed)
  prob = make_problem(setup, config.layer, config.neurons, config.iters, config.seed)
  n, k = config.neurons, config.iters
  batch = config.batch_per_device or n
  everyone = range(n)
  device = jax.devices()[0]
  tdg = _load_torch_reference() if {'torch', 'torch_batched'} & set(config.methods) else None
  methods = {
      'per_iteration': (lambda: _per_iteration_loop(setup, prob, [0]),
                        lambda: _per_iteration_loop(setup, prob, everyone)),
      # optimize_codes also runs small eager ops (row gathers, a finiteness check) whose
      # shapes depend on N, so these warm up with the very call that is timed.
      'per_neuron': (lambda: _engine(setup, prob, 1, Loop(config.loop)),) * 2,
      'batched': (lambda: _engine(setup, prob, batch, Loop(config.loop)),) * 2,
  }
  record = {'size': config.size, 'neurons': n, 'iters': k, 'batch_per_device': batch,
            'repeats': config.repeats, 'dtype': config.dtype, 'layer': config.layer,
            'loop': config.loop,
            'device': f'{device.platform}:{device.device_kind}', 'platform': device.platform,
            'device_count': jax.device_count(), 'cpu_count': len(os.sched_getaffinity(0)),
            'cpu_split': jax.default_backend() == 'cpu' and jax.local_device_count() > 1,
            'jax_version': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
            'flops_per_neuron_iter': flops_per_neuron_iter(setup, config.layer),
            'torch_version': None, 'torch_device': None, 'torch_threads': None,
            'parity': None, 'parity_ok': None}
  rates = {}
  if tdg is not None:
    runner = TorchRunner(tdg, setup, prob, config.torch_threads,
                         _torch_device(config.torch_device, device.platform))
    record['torch_version'] = runner.torch.__version__
    record['torch_device'] = str(runner.device)
    record['torch_threads'] = runner.torch.get_num_threads()
    record['parity'] = runner.parity(setup, prob)
    record['parity_ok'] = max(record['parity'].values()) <= PARITY_TOLERANCE
    if not record['parity_ok']:
      logging.warning('PyTorch and JAX disagree: %s', record['parity'])
    methods['torch'] = (lambda: runner.neuron(0, iters=1), lambda: runner.loop(everyone))
    methods['torch_batched'] = (lambda: runner.batched(range(min(n, batch)), batch, iters=1),
                                lambda: runner.batched(everyone, batch))
  chosen = {m: methods[m] for m in METHODS if m in config.methods and m in methods}
  details, codes = _measure_round_robin(chosen, config.repeats)
  for name, info in details.items():
    codes[name] = codes[name].reshape(n, -1)
    rates[name] = n * k / statistics.median(info['times_s'])
    info['cpu_s_per_neuron_iter'] = statistics.median(info['cpu_times_s']) / (n * k)
    info['achieved_tflops'] = rates[name] * record['flops_per_neuron_iter'] / 1e12
  for name in METHODS:
    record[RATE_KEYS[name]] = rates.get(name)
  ratio = lambda other: (rates['batched'] / rates[other]
                         if 'batched' in rates and other in rates else None)
  record['batched_over_per_neuron_loop'] = ratio('per_neuron')
  record['batched_over_per_iteration_loop'] = ratio('per_iteration')
  record['batched_over_torch'] = ratio('torch')
  record['batched_over_torch_batched'] = ratio('torch_batched')
  # The same ratios in CPU time (all threads) per neuron-iteration: per-core efficiency, which a
  # machine shared with other jobs distorts much less than wall time.
  cpu = {m: info['cpu_s_per_neuron_iter'] for m, info in details.items()}
  record['cpu_time_ratios'] = {f'batched_over_{m}': cpu[m] / cpu['batched']
                               for m in cpu if m != 'batched' and 'batched' in cpu}
  peak = config.peak_tflops
  if peak is None and device.platform != 'cpu':
    peak = default_peak_tflops(device.device_kind, config.dtype)
  record['peak_tflops'] = peak
  record['batched_fraction_of_peak'] = (
      rates['batched'] * record['flops_per_neuron_iter'] / (peak * 1e12)
      if peak and 'batched' in rates else None)
  record['peak_rss_mib'] = _peak_rss_mib()
  record['device_peak_mib'] = _device_peak_mib()
  record['methods'] = details
  # The methods must have done the same work: final codes agree up to float rounding (PyTorch
  # and the loops accumulate differently, and the normalised step amplifies tiny differences).
  if 'batched' in codes:
    record['final_code_max_abs_diff_vs_batched'] = {
        m: float(np.abs(c - codes['batched']).max()) for m, c in codes.items() if m != 'batched'}
  record['targets'] = _targets(record)
  return record


def _targets(record: dict) -> dict[str, bool | None]:
  """The issue's CPU targets for this size (None where a needed rate is missing)."""
  check = lambda key, floor: None if record[key] is None else record[key] >= floor
  if record['size'] == 'embedded':
    return {'batched >= 5x per_neuron_loop': check('batched_over_per_neuron_loop', 5.0),
            'batched >= 2x torch_batched': check('batched_over_torch_batched', 2.0)}
  if record['size'] == 'full':
    return {'batched >= 0.9x per_neuron_loop': check('batched_over_per_neuron_loop', 0.9),
            'batched >= torch per_neuron_loop': check('batched_over_torch', 1.0),
            'batched >= 1.2x torch_batched': check('batched_over_torch_batched', 1.2)}
  return {}


def format_record(record: dict) -> str:
  """A human-readable summary of :func:`run_benchmark`'s record."""
  lines = [f"{record['size']} nets, {record['neurons']} neurons x {record['iters']} iterations, "
           f"{record['dtype']} on {record['device']} (batch {record['batch_per_device']}, "
           f"loop {record['loop']}, median of "
           f"{record['repeats']}, {record['flops_per_neuron_iter'] / 1e9:.3g} GFLOP per "
           'neuron-iteration)']
  for name in METHODS:
    rate, info = record[RATE_KEYS[name]], record['methods'].get(name)
    if rate is None:
      lines.append(f'  {name:<14s} not run')
      continue
    lines.append(f"  {name:<14s} {rate:9.2f} neuron-iter/s {info['achieved_tflops'] * 1e3:7.1f} "
                 f"GFLOP/s  CPU {info['cpu_s_per_neuron_iter'] * 1e3:7.1f} ms/neuron-iter  "
                 f"warm-up {info['warmup_s']:5.1f} s  peak RSS so far "
                 f"{info['peak_rss_mib_after_warmup']:6.0f} MiB")
  for key in ('batched_over_per_neuron_loop', 'batched_over_per_iteration_loop',
              'batched_over_torch', 'batched_over_torch_batched', 'batched_fraction_of_peak'):
    if record[key] is not None:
      lines.append(f'  {key} = {record[key]:.3f}')
  for key, value in record['cpu_time_ratios'].items():
    lines.append(f'  CPU-time ratio {key} = {value:.3f}')
  if record['parity'] is not None:
    lines.append('  PyTorch vs JAX rel. error: ' + ', '.join(
        f'{k} {v:.1e}' for k, v in record['parity'].items()))
  for key, ok in record['targets'].items():
    lines.append(f"  target {key}: {'met' if ok else 'NOT met' if ok is False else 'n/a'}")
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.split_cpu(_CPU_DEVICES.value)  # before any JAX work
  config = BenchConfig(size=_SIZE.value, neurons=_NEURONS.value, iters=_ITERS.value,
                       batch_per_device=_BATCH.value, repeats=_REPEATS.value, dtype=_DTYPE.value,
                       methods=tuple(_METHODS.value), layer=_LAYER.value,
                       peak_tflops=_PEAK.value, torch_threads=_TORCH_THREADS.value,
                       torch_device=_TORCH_DEVICE.value,
                       loop=_LOOP.value, seed=_SEED.value)
  record = run_benchmark(config)
  print(format_record(record))
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(record, f, indent=2)
    print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  jax.config.parse_flags_with_absl()
  app.run(main)
