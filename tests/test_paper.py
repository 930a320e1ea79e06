"""The paper's experiments (experiments.paper): every section's runner on the committed CIFAR-10
nets and the test images, a few iterations each (in one process, so compiled steps are shared),
the report they write, the runner's command line, and the verdict rules on known numbers."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dgnam_jax import data
from experiments.paper import blends, common, report, softmax_pairs, split_classes, transfer
from experiments.paper.sections import SECTIONS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NPZ = os.path.join(ROOT, 'tests', 'fixtures', 'images', 'cifar10_tiny_jpeg.npz')
CIFAR = os.path.join(ROOT, 'checkpoints', 'cifar10')
# Each section on 3 classes / units, 2 iterations: what runs, not what it finds.
SMOKE = {
    'layers': dict(layers=('pool5', 'fc6'), epochs=1.0, batch_size=50, eval_images=10, iters=2,
                   classes='0-2', seeds='0', search_seeds='100', lr_grid=(4.0,),
                   fc_widths=(32, 32), start_channels=16, trunk=(8, 8, 8)),
    'evolution': dict(iters=2, seeds='0', classes='0-2', epochs=1.0, snapshot_every_epochs=0.4,
                      batch_size=20, subsets=((0.2, 1.0),), width=0.25, fc_width=16),
    'receptive_fields': dict(iters=2, units='0-1', layers=('conv1', 'conv5', 'fc7')),
    'class_accuracy': dict(preset='cifar10', judge=os.path.join(CIFAR, 'judge'), iters=2,
                           seeds='0-1', classes='0-9', data=NPZ),
    'split_classes': dict(iters=2, seeds='0-1', epochs=0.2, batch_size=20, width=0.25,
                          fc_width=16),
    'softmax_pairs': {'cifar.iters': 2, 'cifar.seeds': '0-1', 'cifar.pairs': ((3, 5),),
                      'imagenet.pairs': ()},
    'blends': dict(iters=2, classes='0-2', seeds='0', gammas=(0.0, 0.1)),
    'transfer': dict(iters=2, classes='0-2', seeds='0'),
    'memorization': {'use': ('cifar10',), 'parts.cifar10.iters': 2,
                     'parts.cifar10.classes': '0-2', 'parts.cifar10.seeds': '0-1'},
}


def load_config(name, overrides):
  """configs/paper/<name>.py with dotted overrides, data pointed at the test images."""
  path = os.path.join(ROOT, 'configs', 'paper', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'paper_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config()
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = cfg
    for p in parents:
      node = node[p]
    node[leaf] = value
  cfg = common.normalized(cfg)
  for node in [cfg] + [v for v in cfg.values() if hasattr(v, 'keys')] + [
      p for v in cfg.values() if hasattr(v, 'keys') for p in v.values() if hasattr(p, 'keys')]:
    if 'data' in node and 'cifar10' in str(node['data']):
      node['data'] = NPZ
  return cfg


@pytest.fixture(scope='module')
def ran(tmp_path_factory):
  """{section: result} of every section's smoke run, and the report written from them."""
  root = tmp_path_factory.mktemp('paper')
  out = {}
  for name, over in SMOKE.items():
    section = SECTIONS[name]
    ctx = common.Context(runs=str(root / 'runs' / name), figures=str(root / 'paper' / name))
    res = section.run(load_config(name, over), ctx)
    res.update(verdict=section.verdict(res), wall_s=1.0, machine='test', date='today',
               command=f'python -m experiments.paper --config=configs/paper/{name}.py')
    common.write_result(ctx, res)
    out[name] = res
  path = report.write(str(root / 'paper.md'), str(root / 'paper'))
  return out, root, path


def test_every_section_writes_its_result_and_figures(ran):
  results, root, _ = ran
  assert set(results) == set(SMOKE)
  for name, res in results.items():
    assert res['verdict'] in common.VERDICTS
    assert common.read_result(str(root / 'paper' / name))['verdict'] == res['verdict']
    pngs = [f for f in os.listdir(root / 'paper' / name) if f.endswith('.png')]
    assert pngs, name
  assert results['layers']['order'] == ['pool5', 'fc6']
  assert list(results['evolution']['snapshots']) == ['step_000000', 'step_000002',
                                                     'step_000004']  # 5 steps, one per 2
  assert set(results['evolution']['subsets']) == {'0.2'}
  assert results['layers']['layers']['pool5']['code_dim'] == 4 * 4 * 64  # cells cap at 4 x 4
  assert set(results['receptive_fields']['layers']) == {'conv1', 'conv5', 'fc7'}
  assert results['receptive_fields']['layers']['conv1']['receptive_field'] == '5 px'
  assert results['class_accuracy']['classes'] == 10 and -1 <= results['class_accuracy'][
      'rho'] <= 1
  assert set(results['blends']['gammas']) == {'0', '0.1'}
  assert results['memorization']['parts']['cifar10']['images'] == 6
  assert results['transfer']['nets']['other']['arch'] == 'resnet'
  sp = results['split_classes']
  assert sp['classifier_classes'][10] == 'horse, grayscale' and sp['splits']['grayscale'][
      'real_share_new'] == 1.0  # every real grayscale horse reads as grayscale


def test_the_report_has_every_section_in_order_with_links_that_exist(ran):
  _, root, path = ran
  text = open(path).read()
  heads = [line for line in text.splitlines() if line.startswith('## ')]
  numbers = [int(h[3:].split('.')[0]) for h in heads]
  assert numbers == sorted(numbers) and len(heads) == len(SECTIONS)
  for name in SMOKE:
    assert f'`python -m experiments.paper --config=configs/paper/{name}.py`' not in text
    assert f'--config=configs/paper/{name}.py' in text
  for link in [l.split('](')[1].split(')')[0] for l in text.splitlines() if l.startswith('![')]:
    assert os.path.exists(os.path.join(os.path.dirname(path), link)), link
  assert str(root) not in text  # links are relative to the report


def test_the_runner_runs_a_section_and_rejects_a_bad_config(tmp_path):
  args = [sys.executable, '-m', 'experiments.paper', '--config=configs/paper/blends.py',
          '--config.iters=2', '--config.classes=0-2', '--config.seeds=0',
          '--config.gammas=(0.1,)', f'--config.data={NPZ}', '--cpu_devices=1',
          f'--runs_dir={tmp_path / "runs"}', f'--report_dir={tmp_path / "rep"}',
          f'--report={tmp_path / "paper.md"}']
  proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  res = json.loads((tmp_path / 'rep' / 'blends' / 'result.json').read_text())
  assert res['command'].startswith('python -m experiments.paper --config=configs/paper/blends.py')
  assert '7. Two-neuron blends' in proc.stdout and (tmp_path / 'paper.md').exists()
  bad = subprocess.run(args + ['--config.seeds=0-x', f'--report_dir={tmp_path / "rep2"}'],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert bad.returncode == 1 and '--config.seeds' in bad.stderr
  assert not (tmp_path / 'rep2').exists()  # nothing written


def test_split_classes_splits_a_seeded_half_with_the_property():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (12, 4, 4, 3)).astype(np.uint8)
  s = data.ImageSet(x, np.array([0] * 6 + [1] * 6), ['cat', 'ship'], [''] * 12)
  out, moved = split_classes.split(s, [(1, 'upside_down'), (0, 'grayscale')], seed=3)
  assert out.class_names == ['cat, colour', 'ship, upright', 'ship, upside down',
                             'cat, grayscale']
  assert moved.sum() == 6 and (out.labels == 2).sum() == 3 and (out.labels == 3).sum() == 3
  np.testing.assert_array_equal(out.images[out.labels == 2], x[out.labels == 2][:, ::-1])
  gray = out.images[out.labels == 3]
  assert (gray[..., 0] == gray[..., 1]).all() and (split_classes.saturation(gray) == 0).all()
  np.testing.assert_array_equal(out.images[~moved], x[~moved])
  again, _ = split_classes.split(s, [(1, 'upside_down'), (0, 'grayscale')], seed=3)
  np.testing.assert_array_equal(again.labels, out.labels)


def test_verdict_rules_on_known_numbers():
  np.testing.assert_allclose(blends.balance(np.array([2.0, 4.0, -1.0, -1.0]),
                                            np.array([4.0, 0.0, 3.0, -2.0])), [0.5, 0, 0, 0])
  g = lambda b, both: {'balance_median': b, 'sum_median': 1.0, 'judge_both_top2': both}
  assert blends.verdict({'gammas': {'0': g(0.2, 0.1), '0.1': g(0.8, 0.6)},
                         'best_gamma': '0.1'}) == 'holds'
  assert blends.verdict({'gammas': {'0': g(0.2, 0.1), '0.1': g(0.8, 0.2)},
                         'best_gamma': '0.1'}) == 'partly'
  assert blends.verdict({'gammas': {'0': g(0.2, 0.1), '0.1': g(0.5, 0.2)},
                         'best_gamma': '0.1'}) == 'does not hold'
  logits = {'original': np.array([[3.0, 1.0], [0.0, 2.0]]), 'photo': np.array([[1.0, 3.0],
                                                                               [0.0, 2.0]])}
  # Image 0 is class 0 (partner 1): the photo convention prefers the partner (worse).
  np.testing.assert_array_equal(
      softmax_pairs.pair_confusion(logits, np.array([0, 1]), np.array([1, 0])), [True, False])
  obj = lambda c: {'confusion': c}
  assert softmax_pairs.verdict({'cifar': {'objectives': {'logit': obj(0.4), 'softmax': obj(0.2)},
                                          'p': 0.01}}) == 'holds'
  assert softmax_pairs.verdict({'cifar': {'objectives': {'logit': obj(0.4), 'softmax': obj(0.2)},
                                          'p': 0.2}}) == 'partly'
  assert softmax_pairs.verdict({'cifar': {'objectives': {'logit': obj(0.2), 'softmax': obj(0.4)},
                                          'p': 0.01}}) == 'does not hold'
  sp = lambda new, kept, p: {'splits': {'g': {'share_new_unit': new, 'share_kept_unit': kept,
                                              'p': p}}}
  assert split_classes.verdict(sp(0.8, 0.1, 0.001)) == 'holds'
  assert split_classes.verdict(sp(0.8, 0.6, 0.001)) == 'does not hold'
  assert split_classes.verdict(sp(0.1, 0.8, 0.001)) == 'does not hold'  # the wrong way round
  net = lambda t, k: {'judge_top1': t, 'kid': k}
  assert transfer.verdict({'nets': {'own': net(0.9, 0.02), 'other': net(0.8, 0.03)}}) == 'holds'
  assert transfer.verdict({'nets': {'own': net(0.9, 0.02), 'other': net(0.5, 0.03)}}) == 'partly'
  assert transfer.verdict({'nets': {'own': net(0.9, 0.02), 'other': net(0.5, 0.09)}}) == \
      'does not hold'
