"""Every registered method on the tiny nets, their steps against plain numpy, the registry, and a
throwaway method that goes through the runners with no edit to the package."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dgnam_jax.nets.pipeline import ImageSpace
from dgnam_jax.synthesis import methods, regularizers
from dgnam_jax.synthesis.api import synthesize
from dgnam_jax.synthesis.loop import Bounds, NetParams, make_hyper
from dgnam_jax.synthesis.objectives import Objective, activation, make_targets

from tiny_nets import tiny_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = (100.0, 110.0, 120.0)
OBJ = Objective('fc8')
# Step sizes that raise the tiny nets' targets in a few steps, by update rule and parameters.
LR = {('normalized', True): 2.0, ('adam', True): 1.0, ('normalized', False): 4.0,
      ('adam', False): 0.05}


@pytest.fixture(scope='module')
def tiny():
  pipe, gp, cp = tiny_pipeline(0)
  pipe = dataclasses.replace(pipe, classifier_space=ImageSpace(mean=MEAN, size=(14, 14)))
  return pipe, NetParams(gp, cp)


def _row(tree, i):
  return jax.tree.map(lambda a: a[i], tree)


def _act(pipe, params, x, tgts, i):
  return float(activation(pipe.classify(params.classifier, jnp.asarray(x)[None]), _row(tgts, i),
                          OBJ))


def _run(tiny, name, units, seeds, iters=12, args='', lr=None, batch=4):
  pipe, params = tiny
  recipe = methods.get(name).recipe(args)
  if lr is None:
    lr = LR.get((recipe.update.name, recipe.parameterization.uses_generator), 1.0)
  init = methods.initial_state(name, pipe, seeds, units, args)
  res = synthesize(name, pipe, params, init, make_targets(units), objective=OBJ,
                   hyper=make_hyper(len(units), lr=lr, l2=0.99), bounds=Bounds.box(0.0, 30.0),
                   method_args=args, seeds=seeds, iters=iters, batch_per_device=batch, mesh=None,
                   slot_keys=np.asarray(units) + 1009 * np.asarray(seeds))
  return init, res


@pytest.mark.parametrize('name', methods.names())
def test_every_method_raises_its_target_whatever_its_batch(tiny, name):
  pipe, params = tiny
  units, seeds = [0, 3, 7], [0, 0, 1]
  init, res = _run(tiny, name, units, seeds)
  para = methods.get(name).recipe().parameterization
  start = np.asarray(para.render_batch(pipe, params.generator, jnp.asarray(init)))
  tgts = make_targets(units)
  before = [_act(pipe, params, start[i], tgts, i) for i in range(3)]
  assert res.images.shape == (3, 14, 14, 3)
  assert np.all(res.activations > np.array(before)), (res.activations, before)
  if not para.uses_generator:  # valid pixels
    m = np.array(MEAN)
    assert res.images.min() >= -m.max() - 1e-3 and (res.images + m).max() <= 255 + 1e-3
  # The returned activation is that of the returned (untransformed) image.
  again = [_act(pipe, params, res.images[i], tgts, i) for i in range(3)]
  np.testing.assert_allclose(res.activations, again, rtol=1e-4, atol=1e-4)
  # A request alone (other rows, other padding) gives bitwise the same result.
  _, alone = _run(tiny, name, units[2:], seeds[2:])
  for field in ('codes', 'final_codes', 'images', 'activations', 'trajectory'):
    np.testing.assert_array_equal(getattr(alone, field)[0], getattr(res, field)[2], field)


def test_starts_depend_on_seed_and_unit_only(tiny):
  pipe, _ = tiny
  for name in methods.names():
    a = methods.initial_state(name, pipe, [0, 1, 0], [3, 3, 4])
    b = methods.initial_state(name, pipe, [1], [3])
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[0], a[2])
    np.testing.assert_array_equal(a[1], b[0])


def _high_freq(x):
  return float(np.mean(np.square(np.diff(x, axis=0))) + np.mean(np.square(np.diff(x, axis=1))))


def test_blur_and_tv_reduce_high_frequencies(tiny):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(0, 50, (16, 16, 3)), jnp.float32)
  assert _high_freq(np.asarray(regularizers.gaussian_blur(x, 1.0))) < 0.2 * _high_freq(x)
  np.testing.assert_allclose(float(regularizers.total_variation(x)), _high_freq(np.asarray(x)),
                             rtol=1e-5)
  # The TV and blur methods' images are smoother than plain ascent's for the same budget.
  run = lambda name, args='': _run(tiny, name, [0, 3], [0, 0], iters=15, lr=8.0, args=args)[1]
  plain = np.mean([_high_freq(v) for v in run('pixel').images])
  tv = run('pixel_tv', 'tv=5.0,jitter=0').images
  blur = run('pixel_blur', 'blur_every=1,blur_sigma=1.0,jitter=0').images
  assert np.mean([_high_freq(v) for v in tv]) < 0.5 * plain
  assert np.mean([_high_freq(v) for v in blur]) < 0.5 * plain


def test_random_transform_moves_the_image_and_fourier_renders_valid_pixels(tiny):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(12, 12, 3)), jnp.float32)
  t = regularizers.RandomTransform(jitter=2, scale=0.1, rotate_deg=5.0)
  moved = [np.asarray(t.apply(x, jax.random.key(k))) for k in range(4)]
  assert any(not np.allclose(m, x) for m in moved)
  pipe, _ = tiny
  para = methods.get('fourier').recipe().parameterization
  p = methods.initial_state('fourier', pipe, [0], [0])[0] * 100
  img = np.asarray(para.render(pipe, None, jnp.asarray(p))) + np.array(MEAN)
  assert img.shape == (14, 14, 3) and img.min() >= 0 and img.max() <= 255 and img.std() > 1


def test_fourier_renders_odd_sizes(tiny):
  pipe, _ = tiny
  odd = dataclasses.replace(pipe, classifier_space=ImageSpace(mean=MEAN, size=(15, 13)))
  para = methods.get('fourier').recipe().parameterization
  p = methods.initial_state('fourier', odd, [0], [0])[0]
  assert p.shape == (15, 7, 3, 2) and para.render(odd, None, jnp.asarray(p)).shape == (15, 13, 3)


def test_method_args_override_options():
  m = methods.get('pixel_blur').with_args('blur_sigma=1.0, blur_every=2,jitter=0')
  assert (m.blur_sigma, m.blur_every, m.jitter) == (1.0, 2, 0) and isinstance(m.blur_every, int)
  for bad in ('nope=1', 'tv', 'tv=abc'):
    with pytest.raises(ValueError, match='--method_args'):
      methods.get('pixel_tv').with_args(bad)
  with pytest.raises(ValueError, match='takes no options'):
    methods.parse_options(methods.NoOptions(), 'l2=0.5', 'x')
  with pytest.raises(ValueError, match=r"name in \['shrink'\]"):
    methods.get('dgnam').with_args('l2=0.5')


def test_shrink_is_the_l1_proximal_step_and_sparsifies_dgnam_codes(tiny):
  p = jnp.asarray([-1.0, -0.05, 0.0, 0.05, 0.3])
  np.testing.assert_allclose(regularizers.Shrink(0.1).project(p, None), [-0.9, 0, 0, 0, 0.2])
  dense = _run(tiny, 'dgnam', [0, 3, 5], [0, 1, 2], iters=20, lr=2.0)[1].final_codes
  sparse = _run(tiny, 'dgnam', [0, 3, 5], [0, 1, 2], iters=20, lr=2.0,
                args='shrink=0.05')[1].final_codes
  assert np.mean(np.asarray(sparse) == 0) > np.mean(np.asarray(dense) == 0) + 0.05
  for bad in ('shrink=-0.1', 'shrink=nan'):
    with pytest.raises(ValueError, match='finite number >= 0'):
      methods.get('dgnam').recipe(bad)
  regs = methods.get('dgnam').recipe('shrink=0.1').regularizers
  assert [type(r).__name__ for r in regs] == ['Shrink', 'CodeBox', 'Decay']  # the box last-but-L2


def test_registry_rejects_unknown_and_duplicate_names():
  with pytest.raises(ValueError, match='unknown method'):
    methods.get('deepdream')
  with pytest.raises(ValueError, match='already registered'):
    methods.register(methods.get('pixel'))


# --- One step against plain numpy (float64 update arithmetic) or optax's own Adam ----------------

def _image_grad(pipe, params, x, tgts):
  g = jax.grad(lambda v: activation(pipe.classify(params.classifier, v[None]), _row(tgts, 0),
                                    OBJ))(jnp.asarray(x))
  return np.asarray(g, np.float64)


def _adam_first_step(g):
  """optax's Adam on ``g`` from zero moments. Against optax, not float64 numpy: float32 Adam's
  bias corrections round to ~7e-6 of the step (1 - 0.9f is not 0.1), more than the 1e-6 asked."""
  g = jnp.asarray(g, jnp.float32)
  step, _ = optax.scale_by_adam().update(g, optax.scale_by_adam().init(g))
  return np.asarray(step, np.float64)


def _rel(got, want):
  return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


def test_pixel_step_matches_numpy(tiny):
  pipe, params = tiny
  init, res = _run(tiny, 'pixel', [3], [0], iters=1, lr=4.0)
  g = _image_grad(pipe, params, init[0], make_targets([3]))
  want = np.clip(init[0] + 4.0 * g / np.abs(g).mean(), -np.array(MEAN), 255 - np.array(MEAN))
  assert _rel(res.final_codes[0], want) <= 1e-6


def test_fourier_adam_step_matches_optax(tiny):
  pipe, params = tiny
  args = 'jitter=0,scale=0,rotate_deg=0'  # no randomness: the gradient is reproducible here
  init, res = _run(tiny, 'fourier', [3], [0], iters=1, lr=0.05, args=args)
  para = methods.get('fourier').recipe(args).parameterization
  g = jax.grad(lambda p: activation(pipe.classify(params.classifier, para.render(
      pipe, None, p)[None]), _row(make_targets([3]), 0), OBJ))(jnp.asarray(init[0]))
  want = np.asarray(init[0], np.float64) + 0.05 * _adam_first_step(g)
  # Adam's first step is g / (|g| + eps), ill-conditioned where |g| is at rounding level (the
  # spectrum's DC and Nyquist imaginary parts have no gradient): compare where it is not.
  g = np.abs(np.asarray(g))
  live = g > 1e-3 * g.max()
  assert live.mean() > 0.5 and _rel(res.final_codes[0][live], want[live]) <= 1e-6


def test_dgnam_adam_step_matches_optax(tiny):
  pipe, params = tiny
  init, res = _run(tiny, 'dgnam_adam', [3], [0], iters=1, lr=1.0)
  x, pull_back = jax.vjp(
      lambda h: pipe.to_classifier(pipe.generate(params.generator, h[None])[0]),
      jnp.asarray(init[0]))
  g = _image_grad(pipe, params, x, make_targets([3]))
  (gh,) = pull_back(jnp.asarray(g, jnp.float32))
  want = np.clip(init[0] + 1.0 * _adam_first_step(gh), 0.0, 30.0) * 0.99
  assert _rel(res.final_codes[0], want) <= 1e-6


# --- A throwaway method through the runners -------------------------------------------------------

_THROWAWAY = textwrap.dedent('''
    """A throwaway method: sign ascent on the pixels, under jitter."""
    import optax
    from dgnam_jax.synthesis import methods, parameterizations, regularizers, transforms
    from dgnam_jax.synthesis.loop import Recipe


    def sign_ascent(lr, lr_end, iters):
      return optax.chain(optax.scale_by_sign(),
                         optax.scale_by_schedule(transforms.linear_lr(lr, lr_end, iters)))


    def recipe(options):
      return Recipe(parameterizations.Pixels(), transforms.UpdateRule(sign_ascent, 'sign'),
                    regularizers=(regularizers.RandomTransform(jitter=1),
                                  regularizers.PixelRange()))


    methods.register(methods.Method(
        'throwaway', recipe, summary='sign ascent on pixels (a test)',
        search_first=lambda base: {'lr': 2.0},
        search_draw=lambda rng, ranges: {'lr': methods.loguniform(rng, 0.5, 8)}))
''')


def test_a_throwaway_method_runs_through_the_runners(tmp_path):
  (tmp_path / 'throwaway_method.py').write_text(_THROWAWAY)
  env = dict(os.environ, DGNAM_JAX_METHODS='throwaway_method',
             PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT, os.environ.get('PYTHONPATH', '')]))
  judge = os.path.join(ROOT, 'checkpoints', 'cifar10', 'judge')
  npz = os.path.join(ROOT, 'tests', 'fixtures', 'images', 'cifar10_tiny_jpeg.npz')

  def run(*args):
    proc = subprocess.run([sys.executable, '-m', *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr

  run('experiments.synthesize', '--preset=cifar10', '--method=throwaway', '--units=0-2',
      '--seeds=0,1', '--iters=3', '--lr=2', f'--out={tmp_path / "synth"}')
  with open(tmp_path / 'synth' / 'manifest.json') as f:
    manifest = json.load(f)
  assert manifest['settings']['method'] == 'throwaway' and len(manifest['rows']) == 6
  assert 'generator' not in manifest['settings']['checkpoints']
  run('experiments.search_settings', f'--judge={judge}', f'--out={tmp_path / "search"}',
      '--method=throwaway', '--trials=2', '--seeds=0', '--iters=3', '--pixel_lrs=',
      '--units=1,4')
  with open(tmp_path / 'search' / 'best_settings.json') as f:
    assert set(json.load(f)) == {'throwaway'}
  report_md = tmp_path / 'report.md'
  run('experiments.evaluate_preset', '--preset=cifar10', f'--data={npz}', f'--judge={judge}',
      f'--out={tmp_path / "eval"}', f'--report={report_md}', '--methods=dgnam,throwaway',
      '--class_seeds=0', '--hidden_layers=', '--iters=3')
  with open(tmp_path / 'eval' / 'metrics' / 'metrics.json') as f:
    runs = json.load(f)['runs']
  assert runs['cifar10_throwaway_classes']['judge']['images'] == 10
  assert 'cifar10_throwaway_classes' in report_md.read_text()


_DEVICES_SCRIPT = textwrap.dedent('''
    import dataclasses, sys
    import jax
    jax.config.update('jax_default_matmul_precision', 'highest')  # as tests/conftest.py
    import numpy as np
    from test_methods import run_all
    assert jax.device_count() == 4, jax.devices()
    np.savez(sys.argv[1], **run_all(mesh='all'))
''')


def run_all(mesh):
  """Every registered method on 6 requests of the tiny nets, batch 2 per device; flat results."""
  from dgnam_jax.synthesis.loop import Devices  # pylint: disable=import-outside-toplevel
  pipe, gp, cp = tiny_pipeline(0)
  pipe = dataclasses.replace(pipe, classifier_space=ImageSpace(mean=MEAN, size=(14, 14)))
  units, seeds = [0, 3, 7, 3, 5, 9], [0, 0, 0, 1, 1, 1]
  out = {}
  for name in methods.names():
    recipe = methods.get(name).recipe()
    res = synthesize(name, pipe, NetParams(gp, cp), methods.initial_state(name, pipe, seeds, units),
                     make_targets(units), objective=OBJ,
                     hyper=make_hyper(6, lr=LR.get((recipe.update.name,
                                                    recipe.parameterization.uses_generator), 1.0)),
                     bounds=Bounds.box(0.0, 30.0), seeds=seeds, iters=4, batch_per_device=2,
                     mesh=Devices.ALL if mesh == 'all' else None, snapshot_every=2,
                     slot_keys=np.asarray(units) + 1009 * np.asarray(seeds))
    out.update({f'{name}/{k}': v for k, v in dataclasses.asdict(res).items() if v is not None})
  return out


def test_every_method_gives_the_same_bits_on_four_devices(tmp_path):
  """4 host devices under shard_map (calls of 4 x 2 rows) == 1 device (calls of 2 rows)."""
  flag = ' --xla_force_host_platform_device_count=4'
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=os.environ.get('XLA_FLAGS', '') + flag,
             PYTHONPATH=os.pathsep.join([os.path.join(ROOT, 'tests'), ROOT,
                                         os.environ.get('PYTHONPATH', '')]))
  proc = subprocess.run([sys.executable, '-c', _DEVICES_SCRIPT, str(tmp_path / 'out.npz')],
                        env=env, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  sharded = np.load(tmp_path / 'out.npz')
  single = run_all(mesh=None)
  assert set(sharded.files) == set(single)
  for k, v in single.items():
    np.testing.assert_array_equal(sharded[k], v, err_msg=k)


def test_fourier_draws_in_any_input_space_and_pixel_methods_refuse_others(tiny):
  pipe, _ = tiny
  para = methods.get('fourier').recipe().parameterization
  p = jnp.asarray(methods.initial_state('fourier', pipe, [0], [0])[0] * 100)
  caffe = np.asarray(para.render(pipe, None, p)) + np.array(MEAN)  # BGR 0-255
  # EfficientNet-Lite's space: RGB, white = 255/128, mean 127/128.
  lite = ImageSpace('RGB', 255 / 128, (127 / 128,) * 3, pipe.classifier_space.size)
  other = dataclasses.replace(pipe, classifier_space=lite)
  x = np.asarray(para.render(other, None, p))
  assert -1.0 <= x.min() and x.max() <= 1.0  # the net's range, not 0-255
  np.testing.assert_allclose((x + 127 / 128) * 128, caffe[..., ::-1], rtol=1e-4, atol=1e-3)
  with pytest.raises(ValueError, match='pixel-space methods work in Caffe'):
    methods.initial_state('pixel_tv', other, [0], [0])
