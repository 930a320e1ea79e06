"""The DGN-AM method of the synthesis loop (dgnam_jax/synthesis/) against a plain re-statement
of the authors' loop.

``reference_act_max`` below is written straight from ``reference/original.md`` §2.4 for ONE neuron:
a Python for-loop, float64 numpy control flow and update arithmetic, an explicit crop, and the unit
picked out of the classifier outputs by hand (never through dgnam_jax.synthesis.objectives). Only
the two nets'
forward/backward passes are shared with the engine. The engine (vmap over a padded batch, lax.scan
over the iterations, masked early stop) must agree with it for every kind of target, follow the
original's NaN/zero-gradient rules, and give bitwise the same result for a request whatever batch,
position, padding, order or device count it ran with.

The tiny nets (tests/tiny_nets.py): code 16 -> 16x16x3 image -> centre crop 14x14 -> classifier.
Each distinct (Objective, iters) is one engine compilation (~2-5 s of CPU here), so the tests share
a few programs: a fixed ``batch_per_device``, ``iters`` = 20 and snapshots everywhere.
"""

import dataclasses
import functools
import os
import subprocess
import sys
import textwrap
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgnam_jax.synthesis.api import optimize_codes
from dgnam_jax.synthesis.loop import Bounds, Hyper, Loop, NetParams, make_hyper
from dgnam_jax.synthesis.objectives import Objective, make_targets

from tiny_nets import tiny_pipeline

IMAGE = 16  # the tiny generator's output size
CROP = 14  # the tiny classifier's input size
OFFSET = (IMAGE - CROP) // 2  # act_max.py's topleft = (256 - 227) / 2 = 14; here 1
LOWER, UPPER, L2 = 0.0, 30.0, 0.99
ITERS = 20
BATCH_PER_DEVICE = 4
TOL = 1e-5  # relative, as the issue asks; the measured errors are printed (pytest -s)
FC_TOL20 = 1e-3  # 20 free-running updates on fc objectives only: see Kind.tol20


@pytest.fixture(scope='module')
def tiny():
  """(pipeline, generator params, classifier params) of the tiny DeePSim/CaffeNet pair."""
  return tiny_pipeline(0)


def _codes(seed, n):
  """Initial codes as the original draws them: N(0, 1), negatives included, not clipped."""
  return np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)


def _rel_err(got, want):
  """max |got - want| / max |want| (float64)."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


# --------------------------------------------------------------------------------------------------
# The reference: act_max.py's loop, one neuron, no vmap and no scan.


class Req(NamedTuple):
  """What the hand-written selections read."""
  unit: Any
  y: Any
  x: Any
  unit2: Any
  gamma: Any


class RefResult(NamedTuple):
  """What act_max.py ends with, plus bookkeeping."""
  codes: np.ndarray  # the code that drew the returned image
  final_codes: np.ndarray  # the code after the last update
  image: np.ndarray  # best_xx = crop(G(codes))
  activation: float  # best_act
  trajectory: np.ndarray  # best_act of every iteration that ran
  iterations: int


@functools.lru_cache(maxsize=None)
def _net_fns(pipe):
  """One code / one crop at a time: G, J_G^T, the classifier and its J^T.

  jit only fuses each net (one compilation per pipeline, whatever the target); the loop, the crop
  and the unit selection stay in plain Python.
  """
  gen = lambda gp, h: pipe.generate(gp, h[None])[0]
  clf = lambda cp, x: pipe.classify(cp, x[None])
  return (jax.jit(gen),
          jax.jit(lambda gp, h, ct: jax.vjp(functools.partial(gen, gp), h)[1](ct)[0]),
          jax.jit(clf),
          jax.jit(lambda cp, x, ct: jax.vjp(functools.partial(clf, cp), x)[1](ct)[0]))


@functools.partial(jax.jit, static_argnums=0)
def _select_and_grad(select, outputs, req):
  """select(outputs) and d select / d outputs (zero except where the unit is read)."""
  return jax.value_and_grad(select)(outputs, req)


def reference_step(pipe, gen_params, clf_params, h, select, req, lr_i, l2, lower, upper):
  """Steps 2-9 of one act_max.py iteration for one code h (float64 arithmetic).

  Returns:
    (new h, the crop drawn from h, its activation, the stop flag of step 10).
  """
  gen, gen_vjp, clf, clf_vjp = _net_fns(pipe)
  h = np.asarray(h, np.float64)
  h32 = jnp.asarray(h, jnp.float32)  # the nets are float32
  x0 = np.asarray(gen(gen_params, h32), np.float64)  # step 2
  crop = x0[OFFSET:OFFSET + CROP, OFFSET:OFFSET + CROP].copy()  # step 3
  # Step 4: forward, the top diff of the selected value (Caffe's one-hot for a plain unit),
  # backward to the data.
  crop32 = jnp.asarray(crop, jnp.float32)
  act, top_diff = _select_and_grad(select, clf(clf_params, crop32), req)
  g = np.asarray(clf_vjp(clf_params, crop32, top_diff), np.float64)
  # make_step_net: a NaN norm -> no step (it reports 1e-12); a zero norm -> no step.
  g_norm = np.linalg.norm(g)
  x = crop
  if np.isnan(g_norm):
    g_norm = 1e-12
  elif g_norm == 0:
    pass
  else:
    x = crop + lr_i * g / np.mean(np.abs(g))
  x256 = x0.copy()  # step 6: paste the stepped crop back
  x256[OFFSET:OFFSET + CROP, OFFSET:OFFSET + CROP] = x
  diff = x256 - x0
  # Step 7, make_step_generator: the top diff of deconv0 is x256 - x0, same NaN/zero rules.
  gh = np.asarray(gen_vjp(gen_params, h32, jnp.asarray(diff, jnp.float32)), np.float64)
  gh_norm = np.linalg.norm(gh)
  if np.isnan(gh_norm):
    gh_norm = 1e-12
  elif gh_norm == 0:
    pass
  else:
    h = h + lr_i * gh / np.mean(np.abs(gh))
  h = np.minimum(np.maximum(h, np.asarray(lower, np.float64)), np.asarray(upper, np.float64))
  if 0 < l2 < 1:  # step 9, after the clip
    h = h * l2
  return h, crop, float(act), g_norm == 0 or gh_norm == 0


def _lr_schedule(lr, lr_end, iters):
  """Step 1: lr_i for i = 0 .. iters-1; a negative end_lr means a constant rate."""
  if lr_end < 0:
    lr_end = lr
  return [lr + (lr_end - lr) * i / iters for i in range(iters)]


def reference_act_max(pipe, gen_params, clf_params, h0, select, req, *, iters, lr, lr_end, l2,
                      lower=LOWER, upper=UPPER):
  """act_max.py's ``activation_maximization`` for one unit (original.md §2.4)."""
  h = np.asarray(h0, np.float64).copy()
  trajectory = []
  for lr_i in _lr_schedule(lr, lr_end, iters):
    # Step 5 records best_xx / best_act on every iteration, before the update: the returned
    # image is the last one drawn, from the code before the last update.
    drawn = h
    h, best_xx, best_act, stop = reference_step(pipe, gen_params, clf_params, h, select, req,
                                                lr_i, l2, lower, upper)
    trajectory.append(best_act)
    if stop:  # step 10
      break
  return RefResult(drawn, h, best_xx, best_act, np.asarray(trajectory), len(trajectory))


def assert_steps_match_reference(nets, got, i, codes0, select, req, *, lr, lr_end, l2,
                                 lower=LOWER, upper=UPPER):
  """Every update of row i (its snapshots) is one reference step from the engine's own code.

  Unlike a free-running comparison, float32-vs-float64 rounding cannot compound over the
  iterations, so this stays tight (TOL) even where the tiny nets' dynamics amplify it.

  Returns:
    The largest relative error over the steps (codes and activations).
  """
  pipe, gp, cp = nets
  iters = got.trajectory.shape[1]
  schedule = _lr_schedule(lr, lr_end, iters)
  h, worst, acts = codes0, 0.0, []
  for k in range(int(got.iterations[i])):
    new_h, _, act, stop = reference_step(pipe, gp, cp, h, select, req, schedule[k], l2, lower,
                                         upper)
    acts.append(act)
    # The activation relative to the trajectory's scale, as codes are to theirs: a logit that
    # crosses zero (0.05 among values near 7) would make a lone scalar's relative error
    # meaningless (1e-6 absolute, float32 on logits near 7, read as 2e-5 on an AVX-512 CPU).
    act_err = abs(float(got.trajectory[i, k]) - float(act)) / max(np.abs(acts).max(), 1e-30)
    err = max(_rel_err(got.snapshots[i, k], new_h), act_err)
    assert err <= TOL, (k, err)
    if k < got.iterations[i] - 1:
      assert not stop, k  # the engine went on, so must the original
    elif got.iterations[i] < iters:
      assert stop, k  # the engine stopped early here, so must the original
    worst = max(worst, err)
    h = got.snapshots[i, k]
  return worst


# --------------------------------------------------------------------------------------------------
# Every kind of target: the engine's Objective + make_targets, and the same unit picked by hand.


@dataclasses.dataclass(frozen=True)
class Kind:
  """One kind of target: the engine's side, the hand-written side and its parity settings.

  Attributes:
    objective: the engine's static Objective.
    requests: three dicts (unit, pos, partner, minimize), run together as one batch.
    select: ``select(outputs, req) -> scalar``, written without dgnam_jax.synthesis.objectives.
    seed: seed of the three initial codes.
    gamma: blend weight.
    tol20: relative tolerance after 20 free-running updates. conv1 objectives are linear in the
      image and conv2's channel mean is smooth: 1e-5 holds with a wide margin (~4e-7 measured).
      The fc objectives sit behind relu/max-pool/LRN stacks whose normalised-gradient steps
      amplify any 1e-7 difference ~100-1000x over 20 updates: the float64 reference restarted from
      h0 * (1 + 1e-7 noise) moves away from itself by 1e-6..1e-4 (by 1e-1 for some codes, where a
      relu or max-pool switch flips), the same size as its gap to the float32 engine. These cases
      are loosened to FC_TOL20 (with codes where no switch flips), and each of their 20 updates is
      still checked at TOL from the engine's own code (assert_steps_match_reference).
  """
  objective: Objective
  requests: tuple
  select: Callable
  seed: int
  gamma: float = 0.0
  tol20: float = TOL


def _blend(out, r):
  a1, a2 = out.layers['fc8'][0, r.unit], out.layers['fc8'][0, r.unit2]
  return a1 + a2 - r.gamma * (a1 - a2) ** 2


KINDS = {
    'fc8_logit': Kind(Objective('fc8'), (dict(unit=1), dict(unit=4), dict(unit=8)),
                      lambda out, r: out.layers['fc8'][0, r.unit], seed=1011, tol20=FC_TOL20),
    'fc8_softmax': Kind(Objective('fc8', output='softmax'),
                        (dict(unit=0), dict(unit=6), dict(unit=9)),
                        lambda out, r: jax.nn.softmax(out.layers['fc8'][0])[r.unit], seed=1002,
                        tol20=FC_TOL20),
    # A hidden fc unit: the layer's raw output, i.e. fc6 before the in-place relu6.
    'fc6_hidden': Kind(Objective('fc6'), (dict(unit=0), dict(unit=5), dict(unit=11)),
                       lambda out, r: out.layers['fc6'][0, r.unit], seed=1005, tol20=FC_TOL20),
    # conv1 before relu1 at off-centre positions of its 12x12 map (NHWC).
    'conv1_offcentre': Kind(Objective('conv1'),
                            (dict(unit=0, pos=(2, 9)), dict(unit=3, pos=(10, 1)),
                             dict(unit=5, pos=(7, 4))),
                            lambda out, r: out.layers['conv1'][0, r.y, r.x, r.unit], seed=1000),
    # Position -1 is the centre, as act_max.py's xy=6 on the 13x13 conv5: 12 // 2 = 6 here.
    'conv1_centre': Kind(Objective('conv1'), (dict(unit=1), dict(unit=4), dict(unit=2)),
                         lambda out, r: out.layers['conv1'][0, 6, 6, r.unit], seed=1001),
    'conv2_channel_mean': Kind(Objective('conv2', kind='channel_mean'),
                               (dict(unit=0), dict(unit=3), dict(unit=6)),
                               lambda out, r: out.layers['conv2'][0, :, :, r.unit].mean(),
                               seed=1001),
    'fc8_minimize': Kind(Objective('fc8'),
                         (dict(unit=2, minimize=True), dict(unit=6, minimize=True),
                          dict(unit=9, minimize=True)),
                         lambda out, r: -out.layers['fc8'][0, r.unit], seed=1003,
                         tol20=FC_TOL20),
    'fc8_blend': Kind(Objective('fc8', blend=True),
                      (dict(unit=1, partner=5), dict(unit=3, partner=7), dict(unit=0, partner=9)),
                      _blend, seed=1004, gamma=0.1, tol20=FC_TOL20),
    # The blob after the in-place relu1. The positions are active (> 0) on the initial images,
    # else the gradient would be zero and the neuron would stop at once.
    'conv1_blob': Kind(Objective('conv1', use_blob=True),
                       (dict(unit=2, pos=(5, 5)), dict(unit=1, pos=(7, 1)),
                        dict(unit=3, pos=(6, 0))),
                       lambda out, r: out.blobs['conv1'][0, r.y, r.x, r.unit], seed=1009),
}

# Per-row step settings of a parity batch: three rates, one of them constant (lr_end < 0).
PARITY_LR = (1.0, 1.5, 2.0)
PARITY_LR_END = (1e-10, -1.0, 0.5)


def _targets(kind):
  reqs = kind.requests
  return make_targets([r['unit'] for r in reqs], positions=[r.get('pos') for r in reqs],
                      partners=[r.get('partner') for r in reqs],
                      minimize=[r.get('minimize', False) for r in reqs], gamma=kind.gamma)


def _req(kind, r):
  y, x = r.get('pos', (-1, -1))
  return Req(np.int32(r['unit']), np.int32(y), np.int32(x),
             np.int32(r.get('partner', r['unit'])), np.float32(kind.gamma))


def _unit_req(unit, pos=(-1, -1)):
  return Req(np.int32(unit), np.int32(pos[0]), np.int32(pos[1]), np.int32(unit), np.float32(0))


def _hyper(lr, lr_end, l2):
  f32 = lambda v: jnp.asarray(np.asarray(v, np.float32))
  return Hyper(lr=f32(lr), lr_end=f32(lr_end), l2=f32(l2))


def _run(pipe, gp, cp, objective, codes0, targets, hyper, iters=ITERS, lower=LOWER, upper=UPPER,
         **kwargs):
  """optimize_codes with this file's batch shape, one device, and every code recorded."""
  kwargs.setdefault('batch_per_device', BATCH_PER_DEVICE)
  kwargs.setdefault('mesh', None)
  kwargs.setdefault('snapshot_every', 1)
  return optimize_codes(pipe, NetParams(gp, cp), codes0, targets, objective=objective,
                        hyper=hyper, bounds=Bounds.box(lower, upper), iters=iters, **kwargs)


def _row(result, i):
  """Row i of every field of a SynthesisResult."""
  return {k: v[i] for k, v in dataclasses.asdict(result).items() if v is not None}


def _assert_rows_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _crops(pipe, gp, codes):
  gen = _net_fns(pipe)[0]
  return [np.asarray(gen(gp, jnp.asarray(h)))[OFFSET:OFFSET + CROP, OFFSET:OFFSET + CROP]
          for h in codes]


# --------------------------------------------------------------------------------------------------
# Parity with the reference for every kind of target, three requests per kind in one batch.


def test_reference_selections_read_the_intended_values(tiny):
  """The hand-written selections read what the Objectives mean (raw vs blob, active units)."""
  pipe, gp, cp = tiny
  clf = _net_fns(pipe)[2]
  kind = KINDS['conv1_blob']
  for crop, r in zip(_crops(pipe, gp, _codes(kind.seed, 3)), kind.requests):
    out = clf(cp, jnp.asarray(crop))
    conv1 = np.asarray(out.layers['conv1'])
    assert conv1.shape == (1, 12, 12, 6) and out.layers['conv2'].shape == (1, 6, 6, 8)
    assert (conv1 < 0).any()  # raw: before the in-place relu1 ...
    np.testing.assert_array_equal(out.blobs['conv1'], np.maximum(conv1, 0))  # ... the blob after
    assert (np.asarray(out.layers['fc6']) < 0).any()  # fc6 before relu6
    assert conv1[0, r['pos'][0], r['pos'][1], r['unit']] > 0


def _spread(nets, kind, i, r, codes0):
  """How far the reference moves from itself when h0 moves by 1e-7 (for failure messages)."""
  pipe, gp, cp = nets
  run = lambda h: reference_act_max(pipe, gp, cp, h, kind.select, _req(kind, r), iters=ITERS,
                                    lr=PARITY_LR[i], lr_end=PARITY_LR_END[i],
                                    l2=L2).final_codes
  noise = np.random.default_rng(0).standard_normal(codes0[i].shape)
  return _rel_err(run(codes0[i] * (1 + 1e-7 * noise)), run(codes0[i]))


@pytest.mark.parametrize('name', list(KINDS))
def test_matches_reference(tiny, name):
  """After one update, after 20 free-running updates, and at every one of the 20 updates."""
  pipe, gp, cp = tiny
  kind = KINDS[name]
  codes0 = _codes(kind.seed, 3)
  got = _run(pipe, gp, cp, kind.objective, codes0, _targets(kind),
             _hyper(PARITY_LR, PARITY_LR_END, [L2] * 3))
  errs = {}
  for i, r in enumerate(kind.requests):
    ref = functools.partial(reference_act_max, pipe, gp, cp, codes0[i], kind.select,
                            _req(kind, r), lr=PARITY_LR[i], lr_end=PARITY_LR_END[i], l2=L2)
    # One update: lr_0 = lr whatever iters is, so the first snapshot is what iters=1 computes.
    one = ref(iters=1)
    row1 = dict(one_update=max(_rel_err(got.snapshots[i, 0], one.final_codes),
                               _rel_err(got.trajectory[i, 0], one.activation)))
    assert row1['one_update'] <= TOL, row1
    want = ref(iters=ITERS)
    # Every request runs all its iterations (no early stop hides a difference).
    assert want.iterations == ITERS and got.iterations[i] == ITERS
    row20 = dict(final_codes=_rel_err(got.final_codes[i], want.final_codes),
                 codes=_rel_err(got.codes[i], want.codes),
                 activations=_rel_err(got.activations[i], want.activation),
                 images=_rel_err(got.images[i], want.image),
                 trajectory=_rel_err(got.trajectory[i], want.trajectory))
    if max(row20.values()) > kind.tol20:
      pytest.fail(f'request {i}: {row20} > {kind.tol20}; the reference itself moves by '
                  f'{_spread(tiny, kind, i, r, codes0):.1e} for a 1e-7 change of h0')
    steps = assert_steps_match_reference(tiny, got, i, codes0[i], kind.select, _req(kind, r),
                                         lr=PARITY_LR[i], lr_end=PARITY_LR_END[i], l2=L2)
    for k, v in dict(row1, **row20, every_step=steps).items():
      errs[k] = max(errs.get(k, 0.0), v)
  print(f'\n[parity] {name:19s}', ' '.join(f'{k}={v:.1e}' for k, v in errs.items()))


def test_single_iteration_run_matches_reference(tiny):
  """iters=1 itself (a scan of one step) on six requests of two kinds that share an Objective.

  One program only (fc8, the paper's objective; maximised and minimised rows mixed): each
  compilation costs seconds, and test_matches_reference checks the first update of every kind
  through its first snapshot, which is the same computation (lr_0 = lr whatever iters is).
  """
  pipe, gp, cp = tiny
  names = ('fc8_logit', 'fc8_minimize')
  kinds = [KINDS[n] for n in names]
  assert kinds[0].objective == kinds[1].objective
  reqs = [(k, r) for k in kinds for r in k.requests]
  codes0 = np.concatenate([_codes(k.seed, 3) for k in kinds])
  targets = jax.tree.map(lambda *a: jnp.concatenate(a), *[_targets(k) for k in kinds])
  lr, lr_end = PARITY_LR * 2, PARITY_LR_END * 2
  got = _run(pipe, gp, cp, kinds[0].objective, codes0, targets, _hyper(lr, lr_end, [L2] * 6),
             iters=1)
  np.testing.assert_array_equal(got.iterations, 1)
  np.testing.assert_array_equal(got.codes, codes0)  # the returned code is the initial one
  np.testing.assert_array_equal(got.activations, got.initial_activations)
  err = 0.0
  for i, (kind, r) in enumerate(reqs):
    want = reference_act_max(pipe, gp, cp, codes0[i], kind.select, _req(kind, r), iters=1,
                             lr=lr[i], lr_end=lr_end[i], l2=L2)
    err = max(err, _rel_err(got.final_codes[i], want.final_codes),
              _rel_err(got.activations[i], want.activation),
              _rel_err(got.images[i], want.image))
  print(f'\n[iters=1] {"+".join(names)}: {err:.1e}')
  assert err <= TOL


# --------------------------------------------------------------------------------------------------
# Edge semantics.


@jax.custom_vjp
def _nan_grad_if(x, flag):
  """Identity; its gradient is NaN where ``flag`` > 0 (the forward pass is untouched)."""
  del flag
  return x


def _nan_grad_fwd(x, flag):
  return x, flag


def _nan_grad_bwd(flag, g):
  return jnp.where(flag > 0, jnp.nan, g), jnp.zeros_like(flag)


_nan_grad_if.defvjp(_nan_grad_fwd, _nan_grad_bwd)


@dataclasses.dataclass(frozen=True)
class NanGradSwitch:
  """Wraps a net: same outputs; its input gradient is NaN when params['nan'] > 0.

  A traced switch, so the NaN-image and NaN-code tests share one compiled program.
  """
  net: Any

  def apply(self, variables, x):
    params = variables['params']
    return self.net.apply({'params': params['net']}, _nan_grad_if(x, params['nan']))


@pytest.fixture(scope='module')
def nan_pipe(tiny):
  pipe = tiny[0]
  return dataclasses.replace(pipe, generator=NanGradSwitch(pipe.generator),
                             classifier=NanGradSwitch(pipe.classifier))


def _switch(params, nan):
  return {'net': params, 'nan': np.float32(nan)}


def _decayed(h0, steps, lower=LOWER, upper=UPPER, l2=L2):
  """The code after ``steps`` iterations without a code step: clip, then L2 decay (float32)."""
  h = np.asarray(h0, np.float32)
  for _ in range(steps):
    h = np.clip(h, np.float32(lower), np.float32(upper)) * np.float32(l2)
  return h


def test_zero_gradient_stops_at_first_iteration(tiny):
  pipe, gp, cp = tiny
  dead = 2
  cp0 = jax.tree.map(np.array, cp)  # a copy in which fc8 unit 2 ignores the image
  cp0['fc8']['kernel'][:, dead] = 0.0
  codes0 = _codes(20, 2)
  got = _run(pipe, gp, cp0, Objective('fc8'), codes0, make_targets([dead, 5]),
             make_hyper(2, lr=1.5))
  np.testing.assert_array_equal(got.iterations, [1, ITERS])  # the live row of the batch runs on
  np.testing.assert_array_equal(got.codes[0], codes0[0])
  np.testing.assert_array_equal(got.final_codes[0], _decayed(codes0[0], 1))
  np.testing.assert_array_equal(got.snapshots[0], np.repeat(got.final_codes[:1], ITERS, axis=0))
  bias = cp0['fc8']['bias'][dead]
  np.testing.assert_array_equal(got.activations[0], bias)
  np.testing.assert_array_equal(got.trajectory[0], np.full(ITERS, bias))  # repeated after stop
  want = reference_act_max(pipe, gp, cp0, codes0[0], KINDS['fc8_logit'].select, _unit_req(dead),
                           iters=ITERS, lr=1.5, lr_end=1e-10, l2=L2)
  assert want.iterations == 1
  assert _rel_err(got.final_codes[0], want.final_codes) <= TOL


NAN_UNITS, NAN_POS = [1, 4], [(3, 3), (8, 10)]  # conv1: the cheapest program to compile


def test_nan_image_gradient_takes_no_step(tiny, nan_pipe):
  """NaN |g|: no image step, so x256 - x0 = 0, gh = 0, and the original stops on |gh| == 0."""
  pipe, gp, cp = tiny
  codes0 = _codes(21, 2)
  got = _run(nan_pipe, _switch(gp, 0), _switch(cp, 1), Objective('conv1'), codes0,
             make_targets(NAN_UNITS, NAN_POS), make_hyper(2, lr=1.5))
  np.testing.assert_array_equal(got.iterations, [1, 1])
  np.testing.assert_array_equal(got.codes, codes0)
  np.testing.assert_array_equal(got.final_codes, _decayed(codes0, 1))
  clf = _net_fns(pipe)[2]
  for i, crop in enumerate(_crops(pipe, gp, codes0)):  # the forward pass is untouched
    (y, x), unit = NAN_POS[i], NAN_UNITS[i]
    want_act = np.asarray(clf(cp, jnp.asarray(crop)).layers['conv1'])[0, y, x, unit]
    assert _rel_err(got.activations[i], want_act) <= TOL


def test_nan_code_gradient_skips_code_steps(tiny, nan_pipe):
  """NaN |gh|: no code step, but no stop either (the original reports 1e-12, not 0)."""
  pipe, gp, cp = tiny
  codes0 = _codes(22, 2)
  got = _run(nan_pipe, _switch(gp, 1), _switch(cp, 0), Objective('conv1'), codes0,
             make_targets(NAN_UNITS, NAN_POS), make_hyper(2, lr=1.5))
  np.testing.assert_array_equal(got.iterations, [ITERS, ITERS])
  np.testing.assert_array_equal(got.final_codes, _decayed(codes0, ITERS))
  np.testing.assert_array_equal(got.codes, _decayed(codes0, ITERS - 1))
  clf = _net_fns(pipe)[2]
  for i, crop in enumerate(_crops(pipe, gp, got.codes)):  # drawn from the decayed code
    (y, x), unit = NAN_POS[i], NAN_UNITS[i]
    want_act = np.asarray(clf(cp, jnp.asarray(crop)).layers['conv1'])[0, y, x, unit]
    assert _rel_err(got.activations[i], want_act) <= TOL


def test_negative_lr_end_means_constant_lr(tiny):
  pipe, gp, cp = tiny
  codes0 = np.repeat(_codes(23, 1), 3, axis=0)
  got = _run(pipe, gp, cp, Objective('fc8'), codes0, make_targets([3, 3, 3]),
             _hyper([1.5] * 3, [-1.0, 1.5, 1e-10], [L2] * 3))
  _assert_rows_equal(_row(got, 0), _row(got, 1))  # lr_end = -1 is lr_end = lr
  assert not np.array_equal(got.final_codes[0], got.final_codes[2])  # the default decays
  assert_steps_match_reference(tiny, got, 0, codes0[0], KINDS['fc8_logit'].select, _unit_req(3),
                               lr=1.5, lr_end=-1.0, l2=L2)


def test_l2_decay_only_strictly_between_zero_and_one(tiny):
  pipe, gp, cp = tiny
  codes0 = np.repeat(_codes(24, 1), 3, axis=0)
  upper = 0.5  # small enough that the steps (mean |step| = lr) reach it
  got = _run(pipe, gp, cp, Objective('fc8'), codes0, make_targets([7, 7, 7]),
             _hyper([1.5] * 3, [1e-10] * 3, [1.0, 0.0, L2]), upper=upper)
  _assert_rows_equal(_row(got, 0), _row(got, 1))  # L2 = 1 and L2 = 0: no decay
  assert got.final_codes[0].max() == np.float32(upper)  # clipped to ub, then not decayed
  assert got.final_codes[2].max() <= np.float32(upper) * np.float32(L2)  # clip, then decay
  for i, l2 in [(0, 1.0), (2, L2)]:
    assert_steps_match_reference(tiny, got, i, codes0[i], KINDS['fc8_logit'].select,
                                 _unit_req(7), lr=1.5, lr_end=1e-10, l2=l2, upper=upper)


def test_bounds_clip_codes(tiny):
  pipe, gp, cp = tiny
  codes0 = _codes(25, 3)
  lower = np.zeros(16, np.float32)
  upper = np.linspace(0.2, 1.0, 16).astype(np.float32)  # per unit, like act_range/3x/fc6.txt
  units = [0, 4, 8]
  got = _run(pipe, gp, cp, Objective('fc8'), codes0, make_targets(units), make_hyper(3, lr=2.0),
             lower=lower, upper=upper)
  for codes in (got.final_codes, got.codes, got.snapshots):  # codes: after 19 clipped updates
    assert (codes >= lower).all() and (codes <= upper).all()
  assert (got.final_codes == upper * np.float32(L2)).any()  # some units sit on their bound
  for i, unit in enumerate(units):
    assert_steps_match_reference(tiny, got, i, codes0[i], KINDS['fc8_logit'].select,
                                 _unit_req(unit), lr=2.0, lr_end=1e-10, l2=L2, lower=lower,
                                 upper=upper)


# --------------------------------------------------------------------------------------------------
# Invariance: a request's result does not depend on what else ran with it, or where. conv1 with
# per-row positions (a traced gather), the program the parity test compiled.

INV_UNITS = [3, 0, 5, 1, 4, 2]
INV_POS = [(2, 9), None, (10, 1), (7, 4), None, (0, 11)]
INV_LR = [1.0, 1.2, 1.4, 1.6, 1.8, 2.0]


def _inv_data():
  pos = [(-1, -1) if p is None else p for p in INV_POS]
  return dict(codes0=_codes(30, 6), units=np.asarray(INV_UNITS, np.int32),
              pos=np.asarray(pos, np.int32), lr=np.asarray(INV_LR, np.float32),
              lr_end=np.full(6, 1e-10, np.float32), l2=np.full(6, L2, np.float32))


def _inv_run(tiny, rows, **kwargs):
  pipe, gp, cp = tiny
  d = {k: v[rows] for k, v in _inv_data().items()}
  targets = make_targets(d['units'].tolist(), [tuple(p) for p in d['pos'].tolist()])
  return _run(pipe, gp, cp, Objective('conv1'), d['codes0'], targets,
              _hyper(d['lr'], d['lr_end'], d['l2']), **kwargs)


def test_result_independent_of_batch_position_padding_and_order(tiny):
  alone = _row(_inv_run(tiny, [0]), 0)  # N = 1: three padding rows
  _assert_rows_equal(alone, _row(_inv_run(tiny, [1, 0, 2]), 1))  # other rows, position 1
  forward = _inv_run(tiny, [0, 1, 2, 3, 4, 5])  # N = 6: chunks of 4 and 2 (+2 padding rows)
  _assert_rows_equal(alone, _row(forward, 0))
  backward = _inv_run(tiny, [5, 4, 3, 2, 1, 0])  # row 0 now last, in the padded second chunk
  for i in range(6):
    _assert_rows_equal(_row(forward, i), _row(backward, 5 - i))


_DEVICE_SCRIPT = textwrap.dedent("""
    import dataclasses, sys
    import jax
    jax.config.update('jax_default_matmul_precision', 'highest')  # as tests/conftest.py
    import numpy as np
    from dgnam_jax.synthesis.api import optimize_codes
    from dgnam_jax.synthesis.loop import Bounds, Devices, Hyper, NetParams
    from dgnam_jax.synthesis.objectives import Objective, make_targets
    from tiny_nets import tiny_pipeline
    assert jax.device_count() == 4, jax.devices()
    d = np.load(sys.argv[1])
    pipe, gp, cp = tiny_pipeline(0)
    f32 = lambda v: jax.numpy.asarray(v, np.float32)
    res = optimize_codes(
        pipe, NetParams(gp, cp), d['codes0'],
        make_targets(d['units'].tolist(), [tuple(p) for p in d['pos'].tolist()]),
        objective=Objective('conv1'),
        hyper=Hyper(lr=f32(d['lr']), lr_end=f32(d['lr_end']), l2=f32(d['l2'])),
        bounds=Bounds.box(0.0, 30.0), iters=int(d['iters']), batch_per_device=int(d['bpd']),
        mesh=Devices.ALL, snapshot_every=1)
    np.savez(sys.argv[2], **{k: v for k, v in dataclasses.asdict(res).items() if v is not None})
""")


def test_result_independent_of_device_count(tiny, tmp_path):
  """4 host devices under shard_map (one call, 4 x 4 rows) == 1 device (two calls of 4 rows)."""
  np.savez(tmp_path / 'in.npz', iters=ITERS, bpd=BATCH_PER_DEVICE, **_inv_data())
  tests_dir = os.path.dirname(os.path.abspath(__file__))
  env = dict(os.environ)
  # XLA reads the flag when jax initialises, hence a fresh interpreter.
  env['XLA_FLAGS'] = env.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4'
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = os.pathsep.join(
      [tests_dir, os.path.dirname(tests_dir)] + [p for p in [env.get('PYTHONPATH')] if p])
  proc = subprocess.run([sys.executable, '-c', _DEVICE_SCRIPT, str(tmp_path / 'in.npz'),
                         str(tmp_path / 'out.npz')], env=env, capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  sharded = np.load(tmp_path / 'out.npz')
  single = _inv_run(tiny, list(range(6)))
  fields = {k: v for k, v in dataclasses.asdict(single).items() if v is not None}
  assert set(sharded.files) == set(fields)
  for k, v in fields.items():
    np.testing.assert_array_equal(sharded[k], v, err_msg=k)


# --------------------------------------------------------------------------------------------------
# It works: every fc8 unit's activation goes up.


def test_activation_increases_for_every_fc8_unit(tiny):
  pipe, gp, cp = tiny
  codes0 = _codes(40, 10)
  got = _run(pipe, gp, cp, Objective('fc8'), codes0, make_targets(list(range(10))),
             make_hyper(10, lr=1.0))
  np.testing.assert_array_equal(got.iterations, ITERS)
  assert (got.activations > got.initial_activations).all(), (
      got.initial_activations, got.activations)


def test_scan_loop_matches_python_loop():
  """Loop.SCAN (one program) and the default Python-driven loop compute the same thing."""
  pipe, gen_params, clf_params = tiny_pipeline(0)
  units = [1, 4, 7]
  codes0 = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (3, 16)), np.float32)
  kw = dict(objective=Objective('fc8'), hyper=make_hyper(3, 1.0), bounds=Bounds.box(0.0, 30.0),
            iters=4, batch_per_device=4, mesh=None)
  args = (pipe, NetParams(gen_params, clf_params), codes0, make_targets(units))
  a = optimize_codes(*args, loop=Loop.PYTHON, **kw)
  b = optimize_codes(*args, loop=Loop.SCAN, **kw)
  for name in ('codes', 'final_codes', 'activations', 'trajectory', 'images'):
    x, y = getattr(a, name), getattr(b, name)
    # Relative to each array's largest magnitude: the tiny generator's pixels reach ~1e3.
    assert np.abs(x - y).max() <= 1e-5 * max(np.abs(y).max(), 1.0), name
  np.testing.assert_array_equal(a.iterations, b.iterations)


def test_bfloat16_compute_raises_activations_and_tracks_float32(tiny):
  """dtype=bfloat16 nets (the accelerator option): same loop, float32 codes, close to float32."""
  pipe, gp, cp = tiny
  bf = dataclasses.replace(pipe, generator=pipe.generator.clone(dtype=jnp.bfloat16),
                           classifier=pipe.classifier.clone(dtype=jnp.bfloat16))
  units = [0, 3, 5]
  codes0 = _codes(3, len(units))
  args = (Objective('fc8'), codes0, make_targets(units), _hyper([2.0] * 3, [1e-10] * 3,
                                                               [0.99] * 3))
  got = _run(bf, gp, cp, *args, iters=20, snapshot_every=0)
  ref = _run(pipe, gp, cp, *args, iters=20, snapshot_every=0)
  assert got.final_codes.dtype == np.float32
  assert np.all(got.activations > got.initial_activations)
  # One bf16 forward of the first image: within bf16 rounding of the float32 activation.
  np.testing.assert_allclose(got.initial_activations, ref.initial_activations, rtol=0.05,
                             atol=0.05 * np.abs(ref.initial_activations).max())
