"""The PyTorch reader (no code runs), the EfficientNet-Lite import, its nets and its judges.

Checkpoints are crafted by ``tests/torch_files.py`` in both on-disk formats; torch is not needed.
Parity with the PyTorch reference on real weights is the slow test in test_torch_parity.py.
"""

from __future__ import annotations

import collections
import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import dgnam_jax
from tests import torch_files as tf
from dgnam_jax import torch_reader
from dgnam_jax.evaluation import judging, scoring
from dgnam_jax.nets import efficientnet_lite as effnet
from dgnam_jax.nets import from_torch, imagenet
from dgnam_jax.sweeps import requests
from dgnam_jax.torch_reader import TorchFormatError

FORMATS = ('legacy', 'zip')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_state_dict(net='efficientnet_lite1', seed=0) -> dict[str, np.ndarray]:
  """A state dict of the right keys and shapes with random weights and sane BN statistics."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in effnet.expected_state_dict(effnet.CONFIGS[net]).items():
    if key.endswith('running_var'):
      out[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    elif key.endswith(('running_mean', 'bias')) or len(shape) == 1:
      out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    else:
      fan_in = int(np.prod(shape[1:]))
      out[key] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    if key.endswith('running_var'):
      out[key.replace('running_var', 'num_batches_tracked')] = np.asarray([7], np.int64)
  return out


@pytest.fixture(scope='module')
def lite1_checkpoint(tmp_path_factory):
  d = tmp_path_factory.mktemp('lite1')
  state = random_state_dict()
  src = tf.write(str(d / 'lite1.pth'), state, 'legacy')
  return from_torch.import_torch('efficientnet_lite1', src, str(d / 'ckpt')), state


# --- the reader ----------------------------------------------------------------------------------

@pytest.mark.parametrize('fmt', FORMATS)
def test_reader_round_trip(tmp_path, fmt):
  rng = np.random.default_rng(0)
  state = {'a.weight': rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
           'a.bias': rng.standard_normal(4).astype(np.float32),
           'count': np.asarray([3], np.int64), 'half': rng.standard_normal(5).astype(np.float16),
           'double': rng.standard_normal((2, 2))}
  path = tf.write(str(tmp_path / 'w.pth'), state, fmt)
  got = torch_reader.load_state_dict(path)
  assert list(got) == list(state)
  for k, v in state.items():
    assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k


@pytest.mark.parametrize('fmt', FORMATS)
def test_reader_views_of_shared_storage(tmp_path, fmt):
  """A transposed view and an offset slice of one storage, as torch saves views."""
  base = np.arange(24, dtype=np.float32)
  s = tf.Storage('7', base)
  obj = collections.OrderedDict(
      t=tf.Tensor(s, 0, (4, 6), (1, 4)),  # (6, 4).T
      tail=tf.Tensor(s, 20, (4,), (1,)))
  data = tf.legacy_bytes(obj, [s]) if fmt == 'legacy' else tf.zip_bytes(obj, [s])
  (tmp_path / 'v.pth').write_bytes(data)
  got = torch_reader.load_state_dict(str(tmp_path / 'v.pth'))
  assert np.array_equal(got['t'], base.reshape(6, 4).T)
  assert np.array_equal(got['tail'], base[20:])


def _malicious(marker: str) -> collections.OrderedDict:
  return collections.OrderedDict(
      w=tf.Reduce(tf.Global('tests.torch_files', 'mark'), (marker,)))


@pytest.mark.parametrize('fmt', FORMATS)
def test_malicious_pickle_runs_nothing(tmp_path, fmt):
  naive, ours = str(tmp_path / 'naive_ran'), str(tmp_path / 'reader_ran')
  # The same pickle *does* run code when loaded naively ...
  pickle.loads(tf.dumps(_malicious(naive)))
  assert os.path.exists(naive)
  # ... and this reader refuses it, naming the file, the global and the key, running nothing.
  obj = _malicious(ours)
  data = tf.legacy_bytes(obj, []) if fmt == 'legacy' else tf.zip_bytes(obj, [])
  path = tmp_path / 'evil.pth'
  path.write_bytes(data)
  with pytest.raises(TorchFormatError, match=r"evil\.pth.*tests\.torch_files\.mark.*'w'"):
    torch_reader.load_state_dict(str(path))
  assert not os.path.exists(ours)


def test_unpickler_refuses_globals_even_without_the_scan(tmp_path):
  """The second line of defence: find_class itself resolves only the allow-list."""
  marker = str(tmp_path / 'ran')
  data = tf.dumps(_malicious(marker))
  with pytest.raises(TorchFormatError, match='tests.torch_files.mark'):
    torch_reader._Unpickler(data, 'x.pth', {}).load()
  assert not os.path.exists(marker)


def test_stack_global_from_the_memo_is_resolved_and_refused(tmp_path):
  """Protocol 4 names globals from stack strings; strings fetched from the memo count too."""
  marker = str(tmp_path / 'ran')
  p = pickle
  def s(text):
    b = text.encode()
    return p.SHORT_BINUNICODE + bytes([len(b)]) + b
  # memoize 'tests.torch_files' and 'mark', push other strings, then fetch both from the memo.
  data = (p.PROTO + b'\x04' + s('tests.torch_files') + p.MEMOIZE + s('mark') + p.MEMOIZE
          + s('collections') + s('OrderedDict') + p.POP + p.POP
          + p.BINGET + b'\x00' + p.BINGET + b'\x01' + p.STACK_GLOBAL
          + s(marker) + p.TUPLE1 + p.REDUCE + p.STOP)
  with pytest.raises(TorchFormatError, match='tests.torch_files.mark'):
    torch_reader._check_globals(data, 'memo.pth')
  pickle.loads(data)  # naive loading does run it
  assert os.path.exists(marker)


def test_real_protocol4_malicious_pickle(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ('true',))
  path = tmp_path / 'p4.pth'
  with __import__('zipfile').ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', pickle.dumps({'k': Evil()}, protocol=4))
  with pytest.raises(TorchFormatError, match=r"refuses to load the global (posix|os)\.system"):
    torch_reader.load_state_dict(str(path))


@pytest.mark.parametrize('fmt', FORMATS)
def test_truncated_files(tmp_path, fmt):
  state = {'w': np.ones((8, 8), np.float32), 'b': np.zeros(8, np.float32)}
  full = (tmp_path / 'full.pth')
  tf.write(str(full), state, fmt)
  data = full.read_bytes()
  for cut in (10, len(data) // 3, len(data) - 5):
    path = tmp_path / f'cut{cut}.pth'
    path.write_bytes(data[:cut])
    with pytest.raises(TorchFormatError, match=f'cut{cut}.pth'):
      torch_reader.load_state_dict(str(path))


def test_storage_too_short_for_its_tensor(tmp_path):
  s = tf.Storage('1', np.zeros(4, np.float32))
  obj = collections.OrderedDict(w=tf.Tensor(s, 2, (3,), (1,)))
  path = tmp_path / 'short.pth'
  path.write_bytes(tf.legacy_bytes(obj, [s]))
  with pytest.raises(TorchFormatError, match=r"short\.pth: key 'w'"):
    torch_reader.load_state_dict(str(path))


# --- the net -------------------------------------------------------------------------------------

@pytest.mark.parametrize('h,w,k,s', [(10, 10, 3, 2), (9, 10, 5, 2), (8, 7, 5, 1)])
def test_depthwise_conv_and_its_gradient_match_lax(h, w, k, s):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, h, w, 4)), jnp.float32)
  kern = jnp.asarray(rng.standard_normal((k, k, 1, 4)), jnp.float32)
  ref = lambda x, kern: lax.conv_general_dilated(  # noqa: E731
      x, kern, (s, s), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=4, precision=lax.Precision.HIGHEST)
  ours = lambda x, kern: effnet.depthwise_conv_same(x, kern, s)  # noqa: E731
  y, vjp = jax.vjp(ours, x, kern)
  y_ref, vjp_ref = jax.vjp(ref, x, kern)
  dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  for a, b in zip(vjp(dy), vjp_ref(dy)):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_block_layout_of_the_released_nets():
  assert len(effnet.CONFIGS['efficientnet_lite1'].blocks()) == 21
  lite2 = effnet.CONFIGS['efficientnet_lite2']
  assert [b.outputs for b in lite2.blocks()][-1] == 352
  shapes = effnet.expected_state_dict(lite2)
  assert shapes['_conv_head.weight'] == (1280, 352, 1, 1)
  assert shapes['_blocks.3._depthwise_conv.weight'] == (144, 1, 3, 3)
  assert shapes['_blocks.4._depthwise_conv.weight'] == (144, 1, 5, 5)


def test_import_folds_batch_norm_exactly(lite1_checkpoint):
  """The folded stem equals conv -> batch norm (eps 1e-3) -> ReLU6 on the raw weights."""
  path, state = lite1_checkpoint
  module, params, meta = dgnam_jax.load_checkpoint(path)
  x = np.random.default_rng(1).standard_normal((1, 16, 16, 3)).astype(np.float32)
  got = module.apply({'params': params}, x, end='_conv_stem').layers['_conv_stem']
  w = jnp.asarray(state['_conv_stem.weight'].transpose(2, 3, 1, 0))
  y = lax.conv_general_dilated(x, w, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                               precision=lax.Precision.HIGHEST)
  g, b, m, v = (state[f'_bn0.{k}'] for k in ('weight', 'bias', 'running_mean', 'running_var'))
  ref = jnp.clip((y - m) / np.sqrt(v + 1e-3) * g + b, 0, 6)
  np.testing.assert_allclose(got, ref, atol=1e-4)
  assert meta['net'] == 'efficientnet_lite1' and meta['input_size'] == [240, 240]
  assert meta['class_names'][1] == 'n01443537 goldfish'
  assert len(meta['source']['checkpoint']['sha256']) == 64
  assert not os.path.isabs(meta['source']['checkpoint']['path'])
  names = [l['name'] for l in meta['layers']]
  assert names[:2] == ['_conv_stem', '_blocks.0'] and names[-3:] == ['_avg_pooling', '_fc', 'prob']


@pytest.mark.parametrize('fmt', FORMATS)
def test_import_errors_name_file_and_key_and_write_nothing(tmp_path, fmt):
  good = random_state_dict()
  cases = {
      'shape': {**good, '_blocks.3._project_conv.weight': np.zeros((1, 2, 1, 1), np.float32)},
      'missing': {k: v for k, v in good.items() if k != '_fc.bias'},
      'extra': {**good, '_blocks.99._se.weight': np.zeros(3, np.float32)},
  }
  patterns = {'shape': r"'_blocks\.3\._project_conv\.weight' has shape", 'missing':
              r"'_fc\.bias' is missing", 'extra': r"unexpected key '_blocks\.99\._se\.weight'"}
  for case, state in cases.items():
    src = tf.write(str(tmp_path / f'{case}.pth'), state, fmt)
    out = tmp_path / f'out_{case}'
    with pytest.raises(TorchFormatError, match=rf'{case}\.pth: .*{patterns[case]}'):
      from_torch.import_torch('efficientnet_lite1', src, str(out))
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.out_')]


def test_cli_refuses_a_malicious_checkpoint_with_one_line(tmp_path):
  marker = tmp_path / 'ran'
  src = tmp_path / 'evil.pth'
  src.write_bytes(tf.legacy_bytes(_malicious(str(marker)), []))
  out = tmp_path / 'out'
  r = subprocess.run([sys.executable, '-m', 'converters.torch_to_orbax', '--net=efficientnet_lite1',
                      f'--checkpoint={src}', f'--out={out}'], cwd=REPO, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 1
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and 'evil.pth' in lines[0] and 'tests.torch_files.mark' in lines[0]
  assert not out.exists() and not marker.exists()


# --- judging, forward, units ---------------------------------------------------------------------

def test_judge_restricted_by_wnid_and_resized(lite1_checkpoint):
  path, _ = lite1_checkpoint
  rgb = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  full = judging.Judge(path)
  tiny = judging.Judge(path, classes=['n01443537 goldfish', 'n01629819 European fire salamander',
                                      'n15075141 toilet tissue'])
  lf, lt = full.logits(rgb), tiny.logits(rgb)
  assert lf.shape == (3, 1000) and lt.shape == (3, 3)
  np.testing.assert_allclose(lt, lf[:, [1, 25, 999]], rtol=1e-5, atol=1e-5)
  feats = scoring.judge_features(tiny, rgb)
  assert feats.shape == (3, 1280) and np.isfinite(feats).all()
  with pytest.raises(ValueError, match='n99999999'):
    judging.Judge(path, classes=['n99999999 nothing'])


def test_forward_runner_on_an_imported_checkpoint(lite1_checkpoint, tmp_path):
  path, _ = lite1_checkpoint
  rgb = np.random.default_rng(3).integers(0, 256, (2, 240, 240, 3), dtype=np.uint8)
  np.savez(tmp_path / 'in.npz', images=rgb)
  r = subprocess.run([sys.executable, '-m', 'converters.forward', f'--checkpoint={path}',
                      f'--images={tmp_path / "in.npz"}', f'--out={tmp_path / "out.npz"}'],
                     cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  with np.load(tmp_path / 'out.npz') as z:
    assert z['logits'].shape == (2, 1000) and z['logits'].dtype == np.float32
    assert z['_avg_pooling'].shape == (2, 1280) and '_blocks.20' in z.files
    np.testing.assert_array_equal(z['logits'], z['_fc'])
    module, params, _ = dgnam_jax.load_checkpoint(path)
    x = (rgb.astype(np.float32) - 127.0) / 128.0
    ref = jax.jit(lambda p, x: module.apply({'params': p}, x).layers['_fc'])(params, x)
    np.testing.assert_allclose(z['logits'], ref, rtol=1e-4, atol=1e-4)
  bad = tmp_path / 'bad.npz'
  np.savez(bad, images=rgb.astype(np.float32))
  r = subprocess.run([sys.executable, '-m', 'converters.forward', f'--checkpoint={path}',
                      f'--images={bad}', f'--out={tmp_path / "o2.npz"}'], cwd=REPO,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 1 and 'uint8' in r.stderr and not (tmp_path / 'o2.npz').exists()


def test_units_by_wnid():
  names = ['n01443537 goldfish', 'n01629819 salamander', 'n02123045 tabby']
  assert requests.resolve_wnids('n02123045,0-1', names) == '2,0-1'
  assert requests.resolve_wnids('7', None) == '7'
  with pytest.raises(ValueError, match='n09999999'):
    requests.resolve_wnids('n09999999', names)


def test_class_list_is_the_sorted_ilsvrc_order():
  classes = imagenet.imagenet_classes()
  wnids = [w for w, _ in classes]
  assert len(wnids) == 1000 == len(set(wnids)) and wnids == sorted(wnids)
  assert classes[0] == ('n01440764', 'tench') and classes[281][0] == 'n02123045'


def test_build_cannot_rewrite_the_allow_listed_stand_ins(tmp_path):
  """BUILD on an allow-listed global would otherwise poison every later load in the process."""
  p = pickle
  data = (p.PROTO + b'\x02' + p.GLOBAL + b'torch\nFloatStorage\n' + p.EMPTY_DICT
          + p.SHORT_BINUNICODE + b'\x05dtype' + p.SHORT_BINUNICODE + b'\x01x' + p.SETITEM
          + p.BUILD + p.STOP)
  with pytest.raises(TorchFormatError, match=r'poison\.pth'):
    torch_reader._unpickle(data, 'poison.pth')
  assert torch_reader._ALLOWED[('torch', 'FloatStorage')].dtype == np.float32
  state = {'w': np.ones(3, np.float32)}
  np.testing.assert_array_equal(
      torch_reader.load_state_dict(tf.write(str(tmp_path / 'ok.pth'), state, 'zip'))['w'],
      state['w'])


@pytest.mark.parametrize('size,stride', [((6_000_000_000,), (0,)), ((100_000, 100_000), (1, 1))])
def test_a_small_file_cannot_ask_for_a_huge_tensor(tmp_path, size, stride):
  s = tf.Storage('1', np.zeros(4, np.float32))
  obj = collections.OrderedDict(w=tf.Tensor(s, 0, size, stride))
  path = tmp_path / 'bomb.pth'
  path.write_bytes(tf.zip_bytes(obj, [s]))
  with pytest.raises(TorchFormatError, match=r"bomb\.pth: key 'w'.*does not fit"):
    torch_reader.load_state_dict(str(path))


def test_legacy_storage_header_is_checked_against_the_file(tmp_path):
  s = tf.Storage('1', np.zeros(4, np.float32))
  obj = collections.OrderedDict(w=tf.Tensor(s, 0, (4,), (1,)))
  data = bytearray(tf.legacy_bytes(obj, [s]))
  data[-16 - 8:-16] = (-5).to_bytes(8, 'little', signed=True)  # the storage's element count
  path = tmp_path / 'neg.pth'
  path.write_bytes(bytes(data))
  with pytest.raises(TorchFormatError, match=r'neg\.pth: truncated or corrupt: storage 1'):
    torch_reader.load_state_dict(str(path))
