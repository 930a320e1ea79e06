"""Caffe -> checkpoint -> forward: real-Caffe goldens, encodings, round trips, bad inputs."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from dgnam_jax import load_checkpoint
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets import convert
from dgnam_jax.caffe import parse_prototxt, read_mean_binaryproto, read_prototxt
from dgnam_jax.caffe import write_caffemodel
from dgnam_jax.caffe.netdef import CaffeFormatError
from dgnam_jax.nets.from_caffe import ConvertOptions, caffe_forward, convert_caffe
from dgnam_jax.nets import CaffeGraph

from conftest import FIXTURES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENET = 'bvlc_lenet_deploy.prototxt'
# (prototxt, caffemodel, golden) for every golden of the fixtures.
GOLDEN_CASES = [
    ('netA.prototxt', 'netA.caffemodel', 'golden_netA.npz'),
    ('netA2.prototxt', 'netA2.caffemodel', 'golden_netA2.npz'),
    ('netA2.prototxt', 'netA2_v0.caffemodel', 'golden_netA2.npz'),
    ('netA2.prototxt', 'netA2_v1.caffemodel', 'golden_netA2.npz'),
    ('netA2.prototxt', 'netA2_v0_upgraded.caffemodel', 'golden_netA2.npz'),
    ('netA2.prototxt', 'netA2_v1_upgraded.caffemodel', 'golden_netA2.npz'),
    ('netA2_v1.prototxt', 'netA2_v1.caffemodel', 'golden_netA2.npz'),
    ('netB.prototxt', 'netB.caffemodel', 'golden_netB.npz'),
    ('netB4.prototxt', 'netB4.caffemodel', 'golden_netB4.npz'),
    ('netC.prototxt', 'netC.caffemodel', 'golden_netC.npz'),
    (LENET, 'pl8787_exp_caffe__lenet_iter_10000.caffemodel', 'golden_lenet_v1.npz'),
    (LENET, 'ethereon_caffe-tensorflow__lenet_iter_10000.caffemodel', 'golden_lenet_v2.npz'),
]


def fx(name):
  return os.path.join(FIXTURES, name)


def _convert(tmp_path, prototxt, caffemodel, name='ckpt', **options):
  return convert_caffe(fx(prototxt), fx(caffemodel), str(tmp_path / name),
                       ConvertOptions(**options))


@pytest.mark.parametrize('prototxt,caffemodel,golden', GOLDEN_CASES,
                         ids=[c[1].split('.')[0] + '-' + c[0].split('.')[0] for c in GOLDEN_CASES])
def test_goldens_reproduced(tmp_path, prototxt, caffemodel, golden):
  ckpt = _convert(tmp_path, prototxt, caffemodel)
  with np.load(fx(golden)) as z:
    inputs = {k[3:]: z[k] for k in z.files if k.startswith('in_')}
    want = {k[5:]: z[k] for k in z.files if k.startswith('blob_')}
  got = caffe_forward(ckpt, inputs)
  assert set(got) == set(want)
  for name, ref in want.items():
    assert got[name].shape == ref.shape, name
    err = np.abs(got[name] - ref).max() / max(np.abs(ref).max(), 1e-30)
    assert err <= 1e-5, (name, err)


def test_v0_text_prototxt_reproduces_golden(tmp_path):
  # V0 has no ReLU negative_slope, so netA2_v0.prototxt's last ReLU is a plain one: its blob is
  # max(golden, 0); every other blob is Caffe's.
  ckpt = _convert(tmp_path, 'netA2_v0.prototxt', 'netA2_v0.caffemodel')
  with np.load(fx('golden_netA2.npz')) as z:
    got = caffe_forward(ckpt, {'data': z['in_data']})
    want = {k[5:]: z[k] for k in z.files if k.startswith('blob_')}
  want['fc'] = np.maximum(want['fc'], 0)
  assert set(got) == set(want)
  for name, ref in want.items():
    assert np.abs(got[name] - ref).max() <= 1e-5 * np.abs(ref).max(), name


def test_encodings_convert_to_identical_params(tmp_path):
  trees = []
  for i, model in enumerate(['netA2.caffemodel', 'netA2_v0.caffemodel', 'netA2_v1.caffemodel',
                             'netA2_v0_upgraded.caffemodel', 'netA2_v1_upgraded.caffemodel']):
    _, params, _ = load_checkpoint(_convert(tmp_path, 'netA2.prototxt', model, f'c{i}'))
    trees.append(jax.tree.map(np.asarray, params))
  for tree in trees[1:]:
    assert jax.tree.structure(tree) == jax.tree.structure(trees[0])
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(trees[0])):
      np.testing.assert_array_equal(a, b)


def test_text_encodings_give_the_same_net():
  v2 = read_prototxt(fx('netA2.prototxt'))
  for name in ('netA2_v0.prototxt', 'netA2_v1.prototxt'):
    other = read_prototxt(fx(name))
    assert convert.shapes(other) == convert.shapes(v2), name


def test_metadata_and_mean(tmp_path):
  mean_file = fx('gujunli_OpenCL-CAFFE-Research__cifar10_mean.binaryproto')
  names = tmp_path / 'names.txt'
  names.write_text(''.join(f'class {i}\n' for i in range(10)))
  ckpt = _convert(tmp_path, LENET, 'ethereon_caffe-tensorflow__lenet_iter_10000.caffemodel',
                  mean=mean_file, class_names=str(names))
  meta = checkpoint.read_metadata(ckpt)
  assert meta['net'] == 'prototxt' and meta['kind'] == 'classifier'
  assert meta['inputs'] == [{'name': 'data', 'shape': [64, 1, 28, 28]}]
  assert meta['mean']['shape'] == [3, 32, 32]
  np.testing.assert_array_equal(checkpoint.load_array(ckpt, 'mean'),
                                read_mean_binaryproto(mean_file))
  assert meta['class_names'][9] == 'class 9'
  assert {b['name']: b['shape'] for b in meta['blobs']}['ip2'] == [1, 10]
  assert len(meta['source']['caffemodel']['sha256']) == 64
  # The checkpoint rebuilds without any original file.
  module, _, _ = load_checkpoint(ckpt)
  assert isinstance(module, CaffeGraph) and module.netdef == read_prototxt(fx(LENET))


def test_bad_class_names_and_bounds(tmp_path):
  names = tmp_path / 'names.txt'
  names.write_text('a\nb\n')
  with pytest.raises(ValueError, match='names.txt: 2 class names'):
    _convert(tmp_path, 'netC.prototxt', 'netC.caffemodel', class_names=str(names))
  with pytest.raises(ValueError, match='bounds only apply to a generator'):
    _convert(tmp_path, 'netC.prototxt', 'netC.caffemodel', bounds=str(names))
  assert 'ckpt' not in os.listdir(tmp_path)


@pytest.mark.parametrize('version,legacy', [('V1', True), ('V2', False), ('V2', True)])
def test_random_round_trip_tiny(tmp_path, version, legacy):
  netdef = read_prototxt(fx('netA.prototxt'))
  pshapes, _ = convert.shapes(netdef)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.standard_normal(s).astype(np.float32), pshapes,
                        is_leaf=lambda s: isinstance(s, tuple))
  model = tmp_path / 'm.caffemodel'
  write_caffemodel(str(model), netdef, convert.flax_to_caffe(netdef, params), version=version,
                   legacy_dims=legacy)
  ckpt = convert_caffe(fx('netA.prototxt'), str(model), str(tmp_path / 'ckpt'))
  _, restored, _ = load_checkpoint(ckpt)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, np.asarray(b), err_msg=str(path))


# --- bad inputs, through the real command line -----------------------------------------------

def _cli(tmp_path, prototxt, caffemodel):
  out = tmp_path / 'out_ckpt'
  proc = subprocess.run(
      [sys.executable, '-m', 'converters.caffe_to_orbax', f'--prototxt={prototxt}',
       f'--caffemodel={caffemodel}', f'--out={out}'], cwd=ROOT, capture_output=True, text=True)
  leftovers = [p for p in os.listdir(tmp_path) if p.startswith('out_ckpt') or
               p.startswith('.out_ckpt')]
  return proc, leftovers


def _edited_prototxt(tmp_path, old, new, name='net.prototxt'):
  text = open(fx('netA.prototxt')).read()
  assert old in text
  path = tmp_path / name
  path.write_text(text.replace(old, new))
  return str(path)


def _bad_cases(tmp_path):
  model = open(fx('netA.caffemodel'), 'rb').read()
  (tmp_path / 'trunc.caffemodel').write_bytes(model[:len(model) * 2 // 3])
  (tmp_path / 'garbage.caffemodel').write_bytes(bytes(range(256)) * 7)
  good_proto, good_model = fx('netA.prototxt'), fx('netA.caffemodel')
  return {
      'truncated': (good_proto, str(tmp_path / 'trunc.caffemodel'), ['trunc.caffemodel']),
      'garbage': (good_proto, str(tmp_path / 'garbage.caffemodel'), ['garbage.caffemodel']),
      'unknown_type': (_edited_prototxt(tmp_path, 'type: "LRN"', 'type: "FancyNorm"', 'u.prototxt'),
                       good_model, ['FancyNorm', 'norm1', 'u.prototxt']),
      'wrong_shape': (_edited_prototxt(tmp_path, 'num_output: 10', 'num_output: 11', 'w.prototxt'),
                      good_model, ['netA.caffemodel', "'fc'"]),
      'missing_layer': (_edited_prototxt(
          tmp_path, 'layer { name: "lrelu"',
          'layer { name: "fc_extra" type: "InnerProduct" bottom: "fc" top: "fc_extra" '
          'inner_product_param { num_output: 3 } }\nlayer { name: "lrelu"', 'm.prototxt'),
                        good_model, ['netA.caffemodel', 'fc_extra', 'missing']),
      'syntax_error': (_edited_prototxt(tmp_path, 'pool: MAX kernel_size: 3 stride: 2 }',
                                        'pool: MAX kernel_size: 3 stride: 2', 's.prototxt'),
                       good_model, ['s.prototxt:']),
  }


def test_bad_inputs_fail_cleanly(tmp_path):
  for case, (prototxt, model, needles) in _bad_cases(tmp_path).items():
    proc, leftovers = _cli(tmp_path, prototxt, model)
    assert proc.returncode != 0, case
    assert not leftovers, (case, leftovers)
    err = proc.stderr.strip().splitlines()
    assert err and 'Traceback' not in proc.stderr, (case, proc.stderr)
    for needle in needles:
      assert needle in err[-1], (case, needle, err[-1])


def test_cli_end_to_end(tmp_path):
  ckpt, out = tmp_path / 'lenet', tmp_path / 'blobs.npz'
  golden = fx('golden_lenet_v1.npz')
  for args in (['converters.caffe_to_orbax', f'--prototxt={fx(LENET)}',
                f'--caffemodel={fx("pl8787_exp_caffe__lenet_iter_10000.caffemodel")}',
                f'--out={ckpt}'],
               ['converters.caffe_forward', f'--checkpoint={ckpt}', f'--inputs={golden}',
                f'--out={out}']):
    proc = subprocess.run([sys.executable, '-m', *args], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    # Quiet by default: the runner's own lines only (no absl/Orbax/JAX INFO).
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert 1 <= len(lines) <= 5 and proc.stdout.startswith('wrote '), lines
  with np.load(golden) as want, np.load(out) as got:
    assert sorted(got.files) == sorted(k for k in want.files if k.startswith('blob_'))
    np.testing.assert_allclose(got['blob_prob'], want['blob_prob'], atol=1e-6)
  assert json.load(open(ckpt / 'dgnam.json'))['format'] == 'dgnam_jax.checkpoint'
  # Any batch size: the prototxt says 64, the golden has 2, here 3.
  rng = np.random.default_rng(0)
  blobs = caffe_forward(str(ckpt), {'data': rng.random((3, 1, 28, 28), np.float32)})
  assert blobs['prob'].shape == (3, 10)


def test_existing_output_is_refused(tmp_path):
  (tmp_path / 'ckpt').mkdir()
  with pytest.raises(checkpoint.CheckpointError, match='already exists'):
    _convert(tmp_path, 'netC.prototxt', 'netC.caffemodel')


def test_parse_prototxt_of_checkpoint_matches(tmp_path):
  ckpt = _convert(tmp_path, 'netB.prototxt', 'netB.caffemodel')
  meta = checkpoint.read_metadata(ckpt)
  assert parse_prototxt(meta['prototxt']) == read_prototxt(fx('netB.prototxt'))
  assert [i['name'] for i in meta['inputs']] == ['feat', 'ref']


def test_nonfinite_weights_warn_naming_the_blob_or_fail_with_strict(tmp_path, caplog):
  netdef = read_prototxt(fx('netA.prototxt'))
  pshapes, _ = convert.shapes(netdef)
  params = jax.tree.map(lambda s: np.ones(s, np.float32), pshapes,
                        is_leaf=lambda s: isinstance(s, tuple))
  layer = next(iter(params))
  blob = next(iter(params[layer]))
  params[layer][blob] = params[layer][blob].copy()
  params[layer][blob].flat[0] = np.nan
  model = tmp_path / 'm.caffemodel'
  write_caffemodel(str(model), netdef, convert.flax_to_caffe(netdef, params))
  with caplog.at_level('WARNING'):
    convert_caffe(fx('netA.prototxt'), str(model), str(tmp_path / 'ckpt'))
  assert f'{layer}/{blob} (1 of' in caplog.text and 'm.caffemodel' in caplog.text
  with pytest.raises(CaffeFormatError, match=f'non-finite weights: {layer}/{blob}'):
    convert_caffe(fx('netA.prototxt'), str(model), str(tmp_path / 'strict'),
                  ConvertOptions(strict=True))
  assert not (tmp_path / 'strict').exists()
