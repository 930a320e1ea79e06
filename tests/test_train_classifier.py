"""The small classifier, its BatchNorm folding and export, and the resumable training runner.

A smoke test of ``experiments.train_classifier`` on tests/fixtures/images: a few steps, a stop
with a checkpoint, a resume to the end (which must equal an uninterrupted run), the export and
the ``load_checkpoint`` round trip.
"""

import json
import os

from absl.testing import flagsaver
import jax
import numpy as np
import pytest

from dgnam_jax import data, load_checkpoint, nets
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets import layers
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.nets import small
from dgnam_jax.training import classifier
from experiments import train_classifier as runner

IMAGES = os.path.join(os.path.dirname(__file__), 'fixtures', 'images')
NPZ = os.path.join(IMAGES, 'cifar10_tiny_jpeg.npz')
TINY = dict(width=0.25, fc_width=16)  # conv 8-16-24-24-16: compiles and runs in seconds


def _random_train_variables(config, seed=0):
  """Train-form variables with non-trivial BatchNorm scale, bias and running statistics."""
  model = small.SmallCaffeNet(config, train_form=True)
  v = small.init_train_variables(config, seed)
  rng = np.random.default_rng(seed)

  def jitter(tree, lo, hi):
    return jax.tree.map(lambda a: rng.uniform(lo, hi, a.shape).astype(np.float32), tree)

  params = dict(v['params'])
  for name in [k for k in params if k.startswith('bn')]:
    params[name] = {'scale': jitter(params[name]['scale'], 0.5, 2.0),
                    'bias': jitter(params[name]['bias'], -0.5, 0.5)}
  stats = {k: {'mean': jitter(s['mean'], -3.0, 3.0), 'var': jitter(s['var'], 0.5, 4.0)}
           for k, s in v['batch_stats'].items()}
  return model, params, stats


def _apply(module, variables, x):
  return jax.jit(module.apply)(variables, x)  # op-by-op apply is far slower on a busy CPU


def test_export_folds_batch_norm_and_input_scale():
  # 64 px: conv1 has stride 2 (the 32 px geometry is covered by the runner test below).
  size = 64
  config = small.SmallNetConfig(input_size=size, **TINY)
  model, params, stats = _random_train_variables(config)
  x = np.random.default_rng(1).normal(0, 60, (3, size, size, 3)).astype(np.float32)
  want = _apply(model, {'params': params, 'batch_stats': stats}, x)
  deploy = small.export_params(config, params, stats)
  got = _apply(small.SmallCaffeNet(config), {'params': deploy}, x)
  for name in ('conv1', 'conv5', 'pool5', 'fc6', 'fc8', 'prob'):
    np.testing.assert_allclose(got.layers[name], want.layers[name], rtol=2e-4, atol=2e-4,
                               err_msg=name)
  assert got.blobs['pool5'].shape == (3, 4, 4, 16)  # 32 px geometry after conv1 at any size
  # The generic Caffe net built from the deploy prototxt computes the same thing.
  graph = nets.CaffeGraph(parse_prototxt(small.deploy_prototxt(config)))
  generic = _apply(graph, {'params': deploy}, {'data': x})
  for name in ('conv5', 'fc6', 'fc8'):
    np.testing.assert_allclose(generic.layers[name], got.layers[name], rtol=1e-5, atol=1e-5)
  assert set(generic.blobs) == set(got.blobs)


def test_train_pool_equals_caffe_pool():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 15, 5))
  np.testing.assert_array_equal(small.max_pool_3x3s2(x), layers.max_pool(x, (3, 3), (2, 2)))


def test_registered_prototxt_is_current():
  want = small.deploy_prototxt(small.CIFAR10_CONFIG, name='cifar10_classifier')
  assert nets.prototxt_text('cifar10_classifier') == want, (
      'regenerate dgnam_jax/nets/prototxt/cifar10_classifier.prototxt with '
      'small.deploy_prototxt(small.CIFAR10_CONFIG, name="cifar10_classifier")')


def test_registered_net_exports_and_loads(tmp_path):
  config = small.CIFAR10_CONFIG
  _, params, stats = _random_train_variables(config)
  deploy = small.export_params(config, params, stats)
  mean = np.array([110.0, 120.0, 125.0], np.float32)
  path = classifier.export_classifier(str(tmp_path / 'ckpt'), config, deploy, mean,
                                      [f'c{i}' for i in range(10)], {'seed': 3})
  module, loaded, meta = load_checkpoint(path)
  assert meta['net'] == 'cifar10_classifier' and isinstance(module, small.SmallCaffeNet)
  assert meta['prototxt'] == nets.prototxt_text('cifar10_classifier')
  assert checkpoint.load_array(path, 'mean').shape == (3, 32, 32)
  assert meta['mean']['per_channel'] == [110.0, 120.0, 125.0]
  assert small.param_count(loaded) == small.param_count(deploy)
  assert os.path.getsize(os.path.join(path, 'dgnam.json')) < 100_000
  x = np.random.default_rng(0).normal(0, 50, (2, 32, 32, 3)).astype(np.float32)
  out = _apply(module, {'params': loaded}, x)
  assert out.layers['fc6'].shape == (2, 512) and out.blobs['prob'].shape == (2, 10)


def _flags(tmp_path, **kw):
  # verbosity 0: INFO, so train.log is written.
  return {'data': NPZ, 'workdir': str(tmp_path / 'work'), 'out': str(tmp_path / 'out'),
          'cache_dir': str(tmp_path / 'cache'), 'epochs': 2.0, 'batch_size': 20, 'lr': 0.05,
          'warmup_epochs': 0.5, 'seed': 7, 'log_every_steps': 2, 'checkpoint_every_secs': 1e9,
          'verbosity': 0, **TINY, **kw}


def test_runner_stops_resumes_and_exports(tmp_path, capsys):
  # 100 train images / batch 20 = 5 steps per epoch, 10 in all. Stop at 3, then resume.
  with flagsaver.flagsaver(**_flags(tmp_path, stop_at_step=3)):
    assert runner.main(['train_classifier']) == 0
  work = tmp_path / 'work'
  assert not (tmp_path / 'out').exists()
  assert classifier.training.Workdir(str(work)).latest_step() == 3
  with flagsaver.flagsaver(**_flags(tmp_path)):
    assert runner.main(['train_classifier']) == 0
  assert (work / 'training_curves.png').exists() and (work / 'train.log').exists()
  assert 'resumed' in (work / 'train.log').read_text()

  # An uninterrupted run of the same settings ends with the same weights: same data order.
  train, test = data.load_dataset(NPZ, str(tmp_path / 'cache'))
  config = small.SmallNetConfig(**TINY)
  cfg = classifier.TrainConfig(epochs=2.0, batch_size=20, lr=0.05, warmup_epochs=0.5, seed=7)
  ref = classifier.train_classifier(train, test, config, cfg, str(tmp_path / 'ref'),
                                    str(tmp_path / 'ref_out'), checkpoint_every_secs=1e9)
  assert ref['done'] and len(ref['history']) == 2
  # The folded deploy net scores what the train form (BatchNorm in eval mode) scored.
  assert abs(ref['test_acc'] - ref['history'][-1]['test_acc']) <= 1 / len(test) + 1e-9

  module, params, meta = load_checkpoint(str(tmp_path / 'out'))
  _, ref_params, _ = load_checkpoint(str(tmp_path / 'ref_out'))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert meta['net'] == 'prototxt' and meta['kind'] == 'classifier'
  assert meta['inputs'] == [{'name': 'data', 'shape': [1, 3, 32, 32]}]
  assert (meta['channel_order'], meta['pixel_scale'], meta['input_size']) == ('BGR', 255.0,
                                                                              [32, 32])
  assert meta['class_names'][0] == 'airplane'
  blobs = [b['name'] for b in meta['blobs']]
  assert blobs[:2] == ['data', 'conv1'] and blobs[-3:] == ['fc7', 'fc8', 'prob']
  assert {'relu6', 'drop7', 'pool5'} <= {l['name'] for l in meta['layers']}
  t = meta['training']
  assert t['seed'] == 7 and t['steps'] == 10 and t['epochs'] == 2.0 and 'command' in t
  assert 0.0 <= t['test_accuracy'] <= 1.0 and t['wall_time_s'] > 0
  assert t['data'] == 'tests/fixtures/images/cifar10_tiny_jpeg.npz'  # repository-relative
  mean = checkpoint.load_array(str(tmp_path / 'out'), 'mean')
  np.testing.assert_allclose(mean[:, 0, 0], data.channel_mean_bgr(train.images))

  x = data.to_net_input(test.images[:4], mean[:, 0, 0])
  out = _apply(module, {'params': params}, x)
  assert {'conv5', 'fc6', 'fc8', 'prob'} <= set(out.layers)
  assert out.layers['conv5'].shape == (4, 8, 8, 16) and out.blobs['fc6'].shape == (4, 16)
  assert float(out.blobs['fc6'].min()) >= 0.0  # fc6 blob is post-ReLU (the generator's code)

  # A finished run rerun is a no-op; changed settings in the same workdir are refused.
  with flagsaver.flagsaver(**_flags(tmp_path)):
    assert runner.main(['train_classifier']) == 0
  with flagsaver.flagsaver(**_flags(tmp_path, seed=8)):
    assert runner.main(['train_classifier']) == 1  # one error line naming the setting
  err = capsys.readouterr().err
  assert 'train_classifier: error:' in err and 'seed' in err
  with open(work / 'run_config.json') as f:
    assert json.load(f)['train']['seed'] == 7


def test_resnet_judge_folds_into_its_prototxt_and_trains(tmp_path):
  from dgnam_jax.nets import small_resnet  # pylint: disable=g-import-not-at-top
  config = small_resnet.SmallResNetConfig(width=1.0, blocks=1)
  v = small_resnet.init_train_variables(config, 0)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: a + rng.uniform(0.1, 0.5, a.shape).astype(np.float32),
                        v['params'])  # non-trivial BN scales (init zeroes some)
  stats = {k: {'mean': rng.uniform(-1, 1, s['mean'].shape).astype(np.float32),
               'var': rng.uniform(0.5, 2, s['var'].shape).astype(np.float32)}
           for k, s in v['batch_stats'].items()}
  x = rng.normal(0, 50, (3, 32, 32, 3)).astype(np.float32)
  train_form = small_resnet.SmallResNet(config, train_form=True)
  want = _apply(train_form, {'params': params, 'batch_stats': stats}, x)
  deploy = small_resnet.export_params(config, params, stats)
  graph = nets.CaffeGraph(parse_prototxt(small_resnet.deploy_prototxt(config), 'judge'))
  got = _apply(graph, {'params': deploy}, x)
  hand = _apply(small_resnet.SmallResNet(config), {'params': deploy}, x)
  for name in ('res3a', 'pool5', 'fc8'):
    np.testing.assert_allclose(got.layers[name], want.layers[name], rtol=2e-4,
                               atol=2e-4 * float(np.abs(want.layers[name]).max()), err_msg=name)
    np.testing.assert_allclose(hand.layers[name], got.layers[name], rtol=1e-5, atol=1e-4)
  assert {'res3a_branch1', 'res4a_branch1'} <= set(deploy) and 'res2a_branch1' not in deploy

  # The runner trains, resumes and exports it (--arch=resnet), as the CaffeNet-like net.
  with flagsaver.flagsaver(**_flags(tmp_path, arch='resnet', blocks=1, width=0.5, fc_width=512)):
    assert runner.main(['train_classifier']) == 0
  module, loaded, meta = load_checkpoint(str(tmp_path / 'out'))
  assert meta['architecture']['arch'] == 'resnet' and meta['net'] == 'prototxt'
  out = _apply(module, {'params': loaded}, x)
  assert out.layers['fc8'].shape == (3, 10) and out.blobs['pool5'].shape == (3, 1, 1, 32)


def test_snapshots_along_the_way_and_after_a_resume(tmp_path):
  """Snapshots at step 0 and every k steps; a run stopped and resumed writes the rest; the last
  equals the exported net."""
  train, test = data.load_dataset(NPZ, str(tmp_path / 'cache'))
  config = small.SmallNetConfig(num_classes=10, input_size=32, **TINY)
  cfg = classifier.TrainConfig(epochs=2.0, batch_size=20, lr=0.05, warmup_epochs=0.5, seed=7)
  snaps = str(tmp_path / 'snaps')
  kw = dict(checkpoint_every_secs=1e9, snapshot_every_steps=4, snapshot_dir=snaps)
  first = classifier.train_classifier(train, test, config, cfg, str(tmp_path / 'work'),
                                      str(tmp_path / 'out'), stop_at_step=5, **kw)
  assert not first['done'] and sorted(os.listdir(snaps)) == ['step_000000', 'step_000004']
  res = classifier.train_classifier(train, test, config, cfg, str(tmp_path / 'work'),
                                    str(tmp_path / 'out'), **kw)
  assert res['done'] and sorted(os.listdir(snaps)) == ['step_000000', 'step_000004',
                                                       'step_000008']  # 10 steps in all
  _, last, meta = load_checkpoint(os.path.join(snaps, 'step_000008'))
  assert meta['training']['step'] == 8 and meta['training']['epoch'] == 1.6
  assert 0 <= meta['training']['test_accuracy'] <= 1
  _, start, _ = load_checkpoint(os.path.join(snaps, 'step_000000'))
  diff = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), start,
                      last)
  assert max(jax.tree.leaves(diff)) > 0  # the net moved between snapshots
