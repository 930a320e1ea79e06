"""Tests for the Caffe file formats: text parser, wire decoder, normaliser, readers and writer."""

from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pytest

from dgnam_jax.caffe import (CaffeFormatError, encode_blobproto, encode_caffemodel,
                             parse_prototxt, read_caffemodel, read_mean_binaryproto,
                             read_prototxt, write_caffemodel)
from dgnam_jax.caffe import netdef as nd
from dgnam_jax.caffe import normalize, textformat, wire

FIX = pathlib.Path(__file__).parent / 'fixtures' / 'caffe'
LENET_V1 = FIX / 'pl8787_exp_caffe__lenet_iter_10000.caffemodel'
LENET_V2 = FIX / 'ethereon_caffe-tensorflow__lenet_iter_10000.caffemodel'
MEAN = FIX / 'gujunli_OpenCL-CAFFE-Research__cifar10_mean.binaryproto'
NETA2_FILES = ('netA2', 'netA2_v0', 'netA2_v1', 'netA2_v0_upgraded', 'netA2_v1_upgraded')
NETA2_LAYERS = ('conv1', 'relu1', 'pool1', 'norm1', 'conv2', 'pool2', 'relu2', 'pool3', 'fc',
                'lrelu')


def _shapes(model) -> dict[str, list[tuple[int, ...]]]:
  return {name: [b.shape for b in layer.blobs] for name, layer in model.items()}


def _decode_net(path: pathlib.Path) -> nd.NetDef:
  """The NetDef stored in a caffemodel (through the same normaliser as prototxts)."""
  return normalize.normalize(wire.decode(path.read_bytes(), 'NetParameter', str(path)), str(path))


# ---- protobuf encoding helpers for hand-made inputs ------------------------------------------

def _varint(v: int) -> bytes:
  v &= (1 << 64) - 1
  out = bytearray()
  while v >= 0x80:
    out.append(v & 0x7F | 0x80)
    v >>= 7
  return bytes(out + bytes([v]))


def _ld(num: int, payload: bytes) -> bytes:
  return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _vi(num: int, value: int) -> bytes:
  return _varint(num << 3) + _varint(value)


def _f32(num: int, value: float) -> bytes:
  return _varint(num << 3 | 5) + np.float32(value).tobytes()


# ---- caffemodel decoding ---------------------------------------------------------------------

def test_netA_and_netC_blob_shapes():
  a = _shapes(read_caffemodel(FIX / 'netA.caffemodel'))
  assert list(a) == ['input', *NETA2_LAYERS]
  assert a['conv1'] == [(8, 3, 3, 3), (8,)]
  assert a['conv2'] == [(8, 4, 3, 3), (8,)]  # group 2: (C_out, C_in / g, kh, kw)
  assert a['fc'] == [(10, 32), (10,)]
  assert a['input'] == a['relu1'] == a['pool3'] == []
  c = read_caffemodel(FIX / 'netC.caffemodel')
  assert c['bn1'].type == 'BatchNorm' and c['scale1'].type == 'Scale'
  assert [b.shape for b in c['bn1']] == [(6,), (6,), (1,)]
  assert [b.shape for b in c['scale2']] == [(6,), (6,)]
  assert [b.shape for b in c['conv1']] == [(6, 4, 1, 1)]  # bias_term: false
  assert c['bn1'][2][0] == pytest.approx(999.982, rel=1e-6)
  assert c['data_data_0_split'].type == 'Split' and c['data'].type == 'Input'


def test_netB_and_netB4_blob_shapes():
  for net in ('netB', 'netB4'):
    m = read_caffemodel(FIX / f'{net}.caffemodel')
    assert m['deconv1'].type == 'Deconvolution'
    assert [b.shape for b in m['deconv1']] == [(4, 6, 4, 4), (6,)]  # (C_in, C_out / g, kh, kw)
    assert [b.shape for b in m['conv1_1']] == [(6, 6, 3, 3), (6,)]
    assert [b.shape for b in m['deconv0']] == [(6, 2, 4, 4), (4,)]  # group 2
    assert [b.shape for b in m['defc']] == [(64, 16), (64,)]
    assert m['reshape'].type == 'Reshape' and m['crop'].type == 'Crop'
  assert read_caffemodel(FIX / 'netB4.caffemodel')['deconv1_relu_deconv1_0_split'].type == 'Split'


@pytest.mark.parametrize('name', NETA2_FILES)
def test_netA2_encodings_types_and_shapes(name):
  m = read_caffemodel(FIX / f'{name}.caffemodel')
  assert [k for k in m if k != 'input'] == list(NETA2_LAYERS)
  types = {k: v.type for k, v in m.items()}
  assert types['conv1'] == types['conv2'] == 'Convolution'
  assert types['pool1'] == 'Pooling' and types['norm1'] == 'LRN' and types['relu1'] == 'ReLU'
  assert types['fc'] == 'InnerProduct'
  for layer in m.values():
    assert all(b.dtype == np.float32 and b.flags.writeable for b in layer)
  legacy = name != 'netA2'
  fc = [b.shape for b in m['fc']]
  assert fc == ([(1, 1, 10, 32), (1, 1, 1, 10)] if legacy else [(10, 32), (10,)])
  assert m['conv2'][0].shape == (8, 4, 3, 3)


def test_netA2_five_encodings_hold_identical_floats():
  models = {n: read_caffemodel(FIX / f'{n}.caffemodel') for n in NETA2_FILES}
  ref = models['netA2']
  for name, model in models.items():
    for layer in NETA2_LAYERS:
      assert len(model[layer]) == len(ref[layer]), (name, layer)
      for a, b in zip(model[layer], ref[layer]):
        assert a.size == b.size
        assert np.array_equal(a.reshape(-1).view(np.uint32), b.reshape(-1).view(np.uint32))


def test_real_lenets_v1_legacy_and_v2_shape():
  v1, v2 = read_caffemodel(LENET_V1), read_caffemodel(LENET_V2)
  assert list(v1) == list(v2) == ['mnist', 'conv1', 'pool1', 'conv2', 'pool2', 'ip1', 'relu1',
                                  'ip2', 'loss']
  assert v1['mnist'].type == v2['mnist'].type == 'Data'
  assert v1['loss'].type == v2['loss'].type == 'SoftmaxWithLoss'
  assert _shapes(v1)['ip1'] == [(1, 1, 500, 800), (1, 1, 1, 500)]
  assert _shapes(v2)['ip1'] == [(500, 800), (500,)]
  assert _shapes(v1)['conv2'] == [(50, 20, 5, 5), (1, 1, 1, 50)]
  assert _shapes(v2)['conv2'] == [(50, 20, 5, 5), (50,)]
  assert np.isfinite(v1['ip1'][0]).all() and np.abs(v2['ip2'][0]).max() > 0


def test_layer_blobs_act_as_a_sequence():
  layer = read_caffemodel(FIX / 'netA.caffemodel')['conv1']
  w, b = layer
  assert len(layer) == 2 and layer[0] is w and list(layer) == [w, b]


def test_mean_binaryproto():
  mean = read_mean_binaryproto(MEAN)
  assert mean.shape == (3, 32, 32) and mean.dtype == np.float32
  assert 50 < mean.mean() < 200


def test_mean_roundtrip_both_dims(tmp_path):
  mean = np.random.default_rng(0).uniform(0, 255, (3, 5, 4)).astype(np.float32)
  for legacy in (True, False):
    path = tmp_path / f'mean_{legacy}.binaryproto'
    path.write_bytes(encode_blobproto(mean, legacy_dims=legacy))
    np.testing.assert_array_equal(read_mean_binaryproto(path), mean)


# ---- prototxts and normalisation -------------------------------------------------------------

@pytest.mark.parametrize('net', ['netA', 'netB', 'netB4', 'netC'])
def test_prototxt_blob_names_match_caffe_goldens(net):
  netdef = read_prototxt(FIX / f'{net}.prototxt')
  golden = np.load(FIX / f'golden_{net}.npz')
  tops = {t for layer in netdef.layers for t in layer.tops}
  assert tops == {k[len('blob_'):] for k in golden.files if k.startswith('blob_')}
  assert {n for n, _ in netdef.inputs} == {k[len('in_'):] for k in golden.files
                                           if k.startswith('in_')}


@pytest.mark.parametrize('net', ['netA2', 'netB', 'netB4', 'netC'])
def test_caffemodel_net_equals_prototxt_net(net):
  assert _decode_net(FIX / f'{net}.caffemodel') == read_prototxt(FIX / f'{net}.prototxt')


def test_split_layers_like_caffe():
  c = read_prototxt(FIX / 'netC.prototxt')
  split = c.layer('conv1_relu1_0_split')
  assert [l.name for l in c.layers].index('conv1_relu1_0_split') == \
      [l.name for l in c.layers].index('relu1') + 1
  assert split.bottoms == ('conv1',) and split.tops == ('conv1_relu1_0_split_0',
                                                        'conv1_relu1_0_split_1')
  assert c.layer('sum').bottoms == ('conv1_relu1_0_split_0', 'conv2')
  assert c.layer('cat').bottoms == ('sum', 'conv1_relu1_0_split_1')
  assert c.layer('conv1').bottoms == ('data_data_0_split_0',)
  assert c.layer('conv2').bottoms == ('data_data_0_split_1',)
  b4 = read_prototxt(FIX / 'netB4.prototxt')
  assert b4.layer('crop').bottoms == ('deconv0', 'deconv1_relu_deconv1_0_split_1')
  # A prototxt that already holds the Split layer keeps it and gets no second one.
  text = '''input: "x" input_shape { dim: 1 dim: 2 }
    layer { name: "s" type: "Split" bottom: "x" top: "a" top: "b" }
    layer { name: "r" type: "ReLU" bottom: "a" top: "r" }
    layer { name: "c" type: "Concat" bottom: "r" bottom: "b" top: "c" }'''
  assert [l.type for l in parse_prototxt(text).layers] == ['Input', 'Split', 'ReLU', 'Concat']


def test_netA2_v1_text_equals_v2():
  assert read_prototxt(FIX / 'netA2_v1.prototxt') == read_prototxt(FIX / 'netA2.prototxt')


def test_netA2_v0_text_equals_v2_except_leaky_slope():
  v0, v2 = read_prototxt(FIX / 'netA2_v0.prototxt'), read_prototxt(FIX / 'netA2.prototxt')
  assert v0.layers[0] == v2.layers[0] == nd.LayerDef(
      'input', 'Input', (), ('data',), nd.InputParam(shapes=((1, 3, 21, 21),)))
  assert v0.layers[:-1] == v2.layers[:-1]  # includes conv2, whose pad came from "padding"
  assert v0.layers[-1] == nd.LayerDef('lrelu', 'ReLU', ('fc',), ('fc',), nd.ReLUParam(0.0))
  # The binary V0 fixture (real Caffe accepted it) gives the same net.
  assert _decode_net(FIX / 'netA2_v0.caffemodel') == v0


def test_lenet_deploy():
  net = read_prototxt(FIX / 'bvlc_lenet_deploy.prototxt')
  assert net.inputs == (('data', (64, 1, 28, 28)),)
  assert [l.type for l in net.layers] == ['Input', 'Convolution', 'Pooling', 'Convolution',
                                          'Pooling', 'InnerProduct', 'ReLU', 'InnerProduct',
                                          'Softmax']


def test_v0_padding_folded_into_pool():
  text = '''input: "x" input_dim: 1 input_dim: 1 input_dim: 8 input_dim: 8
    layers { layer { name: "p" type: "padding" pad: 2 } bottom: "x" top: "xp" }
    layers { layer { name: "pool" type: "pool" pool: AVE kernelsize: 3 stride: 1 }
             bottom: "xp" top: "y" }'''
  net = parse_prototxt(text)
  assert [l.name for l in net.layers] == ['input', 'pool']
  assert net.layer('pool').bottoms == ('x',)
  assert net.layer('pool').param == nd.PoolingParam('AVE', (3, 3), (1, 1), (2, 2))
  bad = text.replace('"pool" pool: AVE kernelsize: 3 stride: 1', '"relu"')
  with pytest.raises(CaffeFormatError, match=r"padding.*'relu'"):
    parse_prototxt(bad, 'v0.prototxt')


_TRAIN_VAL = '''name: "tv"
state { stage: "deploy" }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST } }
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
        inner_product_param { num_output: 3 } }
layer { name: "train_only" type: "ReLU" bottom: "fc" top: "fc" include { phase: TRAIN } }
layer { name: "not_test" type: "Dropout" bottom: "fc" top: "fc" exclude { phase: TEST } }
layer { name: "test_only" type: "ReLU" bottom: "fc" top: "fc" include { phase: TEST } }
layer { name: "staged" type: "Softmax" bottom: "fc" top: "p1" include { stage: "deploy" } }
layer { name: "unstaged" type: "Softmax" bottom: "fc" top: "p2" include { stage: "other" } }
layer { name: "not_deploy" type: "Softmax" bottom: "fc" top: "p3" exclude { stage: "deploy" } }
layer { name: "not_other" type: "Softmax" bottom: "fc" top: "p4" include { not_stage: "other" } }
layer { name: "lvl" type: "Softmax" bottom: "fc" top: "p5" include { min_level: 1 } }
layer { name: "lvl0" type: "Softmax" bottom: "fc" top: "p6" include { max_level: 0 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" }
layer { name: "sil" type: "Silence" bottom: "fc" }
'''


def test_test_phase_filtering_and_dropped_layers():
  net = parse_prototxt(_TRAIN_VAL)
  names = [l.name for l in net.layers]
  assert names == ['in', 'fc', 'test_only', 'fc_test_only_0_split', 'staged', 'not_other',
                   'lvl0']
  # After dropping loss/accuracy/silence, "fc" (after test_only) feeds 3 layers.
  assert net.layer('staged').bottoms == ('fc_test_only_0_split_0',)


def test_v1_include_exclude():
  text = '''input: "x" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3
    layers { name: "a" type: RELU bottom: "x" top: "a" include { phase: TRAIN } }
    layers { name: "b" type: RELU bottom: "x" top: "b" exclude { phase: TRAIN } }
    layers { name: "d" type: DATA top: "y" }
    layers { name: "l" type: SOFTMAX_LOSS bottom: "b" bottom: "y" }'''
  assert [l.name for l in parse_prototxt(text).layers] == ['input', 'b']
  with pytest.raises(CaffeFormatError, match="layer 'c'.*include rules or exclude rules"):
    parse_prototxt('input: "x" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3 '
                   'layers { name: "c" type: RELU bottom: "x" top: "c" '
                   'include { phase: TEST } exclude { phase: TRAIN } }', 'f.prototxt')


_TYPED = '''input: "x" input_shape { dim: 1 dim: 4 dim: 9 dim: 9 }
    layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param {
      num_output: 4 kernel_h: 3 kernel_w: 1 stride: 1 stride: 2 pad_h: 1 dilation: 2
      engine: CUDNN bias_term: false } }
    layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param {
      pool: AVE global_pooling: true round_mode: FLOOR } }
    layer { name: "n" type: "LRN" bottom: "c" top: "n" lrn_param {
      norm_region: WITHIN_CHANNEL alpha: 1e-4 } }
    layer { name: "cat" type: "Concat" bottom: "n" bottom: "p" top: "cat"
      concat_param { concat_dim: 0 } }
    layer { name: "e" type: "Eltwise" bottom: "n" bottom: "n" top: "e"
      eltwise_param { coeff: 1 coeff: -1 } }
    layer { name: "i" type: "InnerProduct" bottom: "e" top: "i"
      inner_product_param { num_output: 2 transpose: true axis: -3 } }
    layer { name: "f" type: "Flatten" bottom: "i" top: "f" flatten_param { axis: 0 } }
    layer { name: "r" type: "Reshape" bottom: "f" top: "r"
      reshape_param { shape { dim: 0 dim: -1 } } }
    layer { name: "crop" type: "Crop" bottom: "x" bottom: "c" top: "crop"
      crop_param { axis: 1 offset: 0 offset: 1 offset: 2 } }
    layer { name: "bn" type: "BatchNorm" bottom: "crop" top: "crop" }
    layer { name: "sc" type: "Scale" bottom: "crop" top: "crop" scale_param { bias_term: true } }
    layer { name: "sm" type: "Softmax" bottom: "crop" top: "sm" softmax_param { axis: 2 } }
    layer { name: "d" type: "Deconvolution" bottom: "sm" top: "d" convolution_param {
      num_output: 2 kernel_size: 4 stride: 2 pad: 1 group: 2 } }
    layer { name: "dr" type: "Dropout" bottom: "d" top: "d" dropout_param { dropout_ratio: 0.4 } }
'''


def test_typed_params_and_defaults():
  net = parse_prototxt(_TYPED)
  assert net.layer('c').param == nd.ConvolutionParam(4, (3, 1), (1, 2), (1, 0), (2, 2), 1, False)
  assert net.layer('p').param == nd.PoolingParam('AVE', (0, 0), (1, 1), (0, 0), True, 'FLOOR')
  assert net.layer('n').param == nd.LRNParam(5, float(np.float32(1e-4)), 0.75,
                                             'WITHIN_CHANNEL', 1.0)  # alpha not divided
  assert net.layer('cat').param == nd.ConcatParam(0)
  assert net.layer('e').param == nd.EltwiseParam('SUM', (1.0, -1.0))
  assert net.layer('i').param == nd.InnerProductParam(2, True, -3, True)
  assert net.layer('f').param == nd.FlattenParam(0, -1)
  assert net.layer('r').param == nd.ReshapeParam((0, -1), 0, -1)
  assert net.layer('crop').param == nd.CropParam(1, (0, 1, 2))
  assert net.layer('bn').param == nd.BatchNormParam(None, 1e-5)
  assert net.layer('d').param == nd.ConvolutionParam(2, (4, 4), (2, 2), (1, 1), group=2)
  assert net.layer('dr').param == nd.DropoutParam(float(np.float32(0.4)))


def test_writer_roundtrips_every_parameter_type(tmp_path):
  net = parse_prototxt(_TYPED)
  path = tmp_path / 'typed.caffemodel'
  write_caffemodel(path, net, {'c': [np.ones((4, 4, 3, 1), np.float32)]})
  assert _decode_net(path) == net
  assert [b.shape for b in read_caffemodel(path)['c']] == [(4, 4, 3, 1)]


# ---- errors ----------------------------------------------------------------------------------

def _top_level_boundaries(data: bytes) -> set[int]:
  pos, out = 0, {0}
  while pos < len(data):
    key, pos = wire._varint(data, pos, len(data))
    if key & 7 == 2:
      n, pos = wire._varint(data, pos, len(data))
      pos += n
    elif key & 7 == 0:
      pos = wire._varint(data, pos, len(data))[1]
    else:
      pos += 4 if key & 7 == 5 else 8
    out.add(pos)
  return out


@pytest.mark.parametrize('name', ['netA2', 'netA2_v0', 'netA2_v1', 'netB4'])
def test_truncated_caffemodel(tmp_path, name):
  data = (FIX / f'{name}.caffemodel').read_bytes()
  boundaries = _top_level_boundaries(data)
  cuts = [c for c in (1, 2, 7, len(data) // 3, len(data) // 2, len(data) - 4, len(data) - 1)
          if c not in boundaries]
  assert len(cuts) >= 5
  for cut in cuts:
    path = tmp_path / f'cut{cut}.caffemodel'
    path.write_bytes(data[:cut])
    with pytest.raises(CaffeFormatError) as err:
      read_caffemodel(path)
    assert str(path) in str(err.value)
  # A cut inside the data of a blob names the layer being decoded.
  path = tmp_path / 'mid.caffemodel'
  ref = read_caffemodel(FIX / f'{name}.caffemodel')
  big = max(ref, key=lambda k: sum(b.size for b in ref[k]))
  start = data.find(ref[big][0].tobytes()[:64])
  path.write_bytes(data[:start + 40])
  with pytest.raises(CaffeFormatError, match=re.escape(f"layer '{big}'")):
    read_caffemodel(path)


@pytest.mark.parametrize('payload,match', [
    (b'', 'empty'),
    (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), 'not a valid'),
    (b'\xff' * 64, 'varint'),
    (b'\x0f\x00', 'wire type 7'),
    (b'name: "x"\nlayer { name: "a" }\n', 'looks like text'),
    (_vi(1, 1) + _f32(2, 1.0), 'no layers'),
])
def test_not_a_caffemodel(tmp_path, payload, match):
  path = tmp_path / 'bad.caffemodel'
  path.write_bytes(payload)
  with pytest.raises(CaffeFormatError, match=match) as err:
    read_caffemodel(path)
  assert str(path) in str(err.value)


def test_bad_blobs(tmp_path):
  blob = _vi(1, 1) + _vi(2, 1) + _vi(3, 2) + _vi(4, 2) + _ld(5, np.zeros(3, '<f4').tobytes())
  path = tmp_path / 'short.caffemodel'
  path.write_bytes(_ld(100, _ld(1, b'conv9') + _ld(2, b'Convolution') + _ld(7, blob)))
  with pytest.raises(CaffeFormatError, match=r"short.caffemodel: layer 'conv9' blob 0: 3 values"):
    read_caffemodel(path)
  path.write_bytes(_ld(100, _ld(1, b'c') + _ld(7, _ld(5, b'\0' * 6))))
  with pytest.raises(CaffeFormatError, match="multiple of 4.*layer 'c'"):
    read_caffemodel(path)
  mean = tmp_path / 'mean.binaryproto'
  mean.write_bytes(encode_blobproto(np.zeros((2, 3, 4, 4), np.float32)))
  with pytest.raises(CaffeFormatError, match='mean.binaryproto'):
    read_mean_binaryproto(mean)
  mean.write_bytes((FIX / 'netA.caffemodel').read_bytes())
  with pytest.raises(CaffeFormatError, match='mean.binaryproto'):
    read_mean_binaryproto(mean)


def test_read_prototxt_of_binary_file_fails():
  with pytest.raises(CaffeFormatError, match='netA.caffemodel: not a text prototxt'):
    read_prototxt(FIX / 'netA.caffemodel')


_NET = '''input: "x" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "c" type: "Convolution" bottom: "x" top: "c"
  convolution_param { num_output: 4 kernel_size: 3 } }
'''


@pytest.mark.parametrize('extra,match', [
    ('layer { name: "u" type: "Foo" bottom: "c" top: "u" }',
     r"unsupported layer type Foo in layer 'u' \(net.prototxt\)"),
    ('layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }',
     r"net.prototxt:4: layer 'r' takes bottom blob 'nope'.*deploy"),
    ('layer { name: "c" type: "ReLU" bottom: "c" top: "c" }', "duplicate layer name 'c'"),
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "c" }', "layer 'r': top blob 'c'"),
    ('layer { name: "d" type: "Convolution" bottom: "c" top: "d"\n'
     '  convolution_param { num_output: 4 kernel_size: 3 foo: 1 } }',
     r"net.prototxt:5: unknown field 'foo' in convolution_param in layer 'd'"),
    ('layer { name: "d" type: "ReLU" bottom: "c" top: "d" bogus_param { } }',
     "unknown field 'bogus_param' in layer 'd'"),
    ('layer { name: "p" type: "Pooling" bottom: "c" top: "p"'
     ' pooling_param { pool: STOCHASTIC kernel_size: 2 } }', "layer 'p'.*STOCHASTIC"),
    ('layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: 7 } }',
     "layer 'p'.*pooling_param.pool"),
    ('layer { name: "p" type: "Pooling" bottom: "c" top: "p" }', "layer 'p'.*kernel_size"),
    ('layer { name: "p" type: "Pooling" bottom: "c" top: "p"'
     ' pooling_param { kernel_size: 2 pad: 2 } }', "layer 'p'.*pad"),
    ('layer { name: "s" type: "Scale" bottom: "c" bottom: "x" top: "s" }',
     "layer 's' \\(Scale\\).*bottom"),
    ('layer { name: "d" type: "Convolution" bottom: "c" top: "d"'
     ' convolution_param { num_output: 4 kernel_size: 3 axis: 2 } }', "layer 'd'.*axis 2"),
    ('layer { name: "d" type: "Convolution" bottom: "c" top: "d"'
     ' convolution_param { num_output: 4 kernel_size: 3 kernel_size: 3 kernel_size: 3 } }',
     "layer 'd'.*2-D"),
    ('layer { name: "d" type: "Convolution" bottom: "c" top: "d"'
     ' convolution_param { num_output: 3 kernel_size: 1 group: 2 } }', "layer 'd'.*group"),
    ('layer { name: "d" type: "Convolution" bottom: "c" top: "d"'
     ' convolution_param { num_output: "4" kernel_size: 1 } }', 'must be an integer'),
    ('layer { name: "b" type: "BatchNorm" bottom: "c" top: "c"'
     ' batch_norm_param { use_global_stats: false } }', "layer 'b'.*use_global_stats"),
    ('layer { name: "e" type: "Eltwise" bottom: "c" bottom: "c" top: "e"'
     ' eltwise_param { operation: PROD coeff: 2 coeff: 1 } }', "layer 'e'.*coeff"),
    ('layer { name: "i" type: "Input" top: "y" top: "z" input_param {'
     ' shape { dim: 1 } shape { dim: 1 } shape { dim: 1 } } }', "layer 'i'.*input_param"),
    ('layer { name: "y" type: "Python" bottom: "c" top: "y" }', 'unsupported layer type Python'),
])
def test_net_errors(extra, match):
  with pytest.raises(CaffeFormatError, match=match):
    parse_prototxt(_NET + extra, 'net.prototxt')


def test_net_level_errors():
  with pytest.raises(CaffeFormatError, match='f.prototxt.*4 values per input'):
    parse_prototxt('input: "x" input_dim: 1 input_dim: 2', 'f.prototxt')
  with pytest.raises(CaffeFormatError, match='f.prototxt.*input_shape'):
    parse_prototxt('input: "x" input: "y" input_shape { dim: 1 }', 'f.prototxt')
  with pytest.raises(CaffeFormatError, match="f.prototxt:1: unknown field 'inptu'"):
    parse_prototxt('inptu: "x"', 'f.prototxt')
  with pytest.raises(CaffeFormatError, match='mixes'):
    parse_prototxt('layer { name: "a" type: "Input" } layers { name: "b" }', 'f.prototxt')
  with pytest.raises(CaffeFormatError, match="'conv'.*not a V1 layer type"):
    parse_prototxt('layers { name: "a" type: "conv" }', 'f.prototxt')
  v0 = ('input: "x" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4\n'
        'layers { layer { name: "r" type: "relu" kernelsize: 3 } bottom: "x" top: "x" }')
  with pytest.raises(CaffeFormatError, match="f.prototxt:2: .*'kernelsize' is not valid in a V0"):
    parse_prototxt(v0, 'f.prototxt')
  with pytest.raises(CaffeFormatError, match="f.prototxt:2: unknown field 'kernel_size' in lay"):
    parse_prototxt(v0.replace('kernelsize', 'kernel_size'), 'f.prototxt')


# ---- text format -----------------------------------------------------------------------------

def test_text_parser_values():
  m = textformat.parse(r'''
    # a comment
    a: 1 a: -2 a: 0x1F a: 017   # repeated; hex; octal
    f: 1e-4 f: .5 f: 5. f: -inf f: inf f: 1.5f f: -0.25E+2
    s: "dq \"x\" \n\t\\ \101\x42" s: 'sq \'y\'' s: "con" 'cat'
    e: MAX e: CUDNN b: true b: false b: True
    m { x: 1 } m: { x: 2 }; m < x: 3 >, m: [ { x: 4 } ]
    l: [1, 2.5, "z"]
    u: "\u00e9"
  ''')
  assert m.getall('a') == [1, -2, 31, 15]
  assert m.getall('f')[:3] == [1e-4, 0.5, 5.0] and m.getall('f')[3:] == [-math.inf, math.inf,
                                                                         1.5, -25.0]
  assert m.getall('s') == ['dq "x" \n\t\\ AB', "sq 'y'", 'concat']
  assert m.getall('e') == ['MAX', 'CUDNN']
  assert all(isinstance(v, textformat.Ident) for v in m.getall('e'))
  assert m.getall('b') == [True, False, True]
  assert [x.get('x') for x in m.getall('m')] == [1, 2, 3, 4]
  assert m.getall('l') == [1, 2.5, 'z'] and m.get('u') == '\u00e9'
  assert math.isnan(textformat.parse('n: nan').get('n'))
  assert textformat.parse('x {\n y: 1 }').get('x').line == 1
  assert textformat.parse('\n\nx: 1').lines['x'] == 3


@pytest.mark.parametrize('text,where', [
    ('a: "unterminated\n', '1:4: unterminated string'),
    ('a {\n b: 1\n', '3:1: unexpected end of file'),
    ('a: 1\nb: @', "2:4: unexpected character '@'"),
    ('a: 3abc', '1:4: invalid number'),
    ('a 3', "1:3: expected ':' or '{'"),
    ('a: }', "1:4: expected a value, got '}'"),
    ('a: -x', '1:5: expected a number'),
    ('}', '1:1: expected a field name'),
    ('a: [1 2]', "1:7: expected ','"),
    ('a: "\\q"', '1:5: invalid escape'),
])
def test_text_syntax_errors(text, where):
  with pytest.raises(CaffeFormatError, match=re.escape(f'bad.prototxt:{where}')):
    textformat.parse(text, 'bad.prototxt')


def test_prototxt_syntax_error_reports_line(tmp_path):
  path = tmp_path / 'broken.prototxt'
  path.write_text(_NET.replace('kernel_size: 3 }', 'kernel_size: 3 '))
  with pytest.raises(CaffeFormatError, match=re.escape(f'{path}:4:1: unexpected end of file')):
    read_prototxt(path)


# ---- wire details and the writer -------------------------------------------------------------

def test_unpacked_scalars_unknown_fields_and_field_order(tmp_path):
  values = np.arange(6, dtype=np.float32) - 2.5
  unpacked = b''.join(_f32(5, v) for v in values)
  shape = _ld(7, _vi(1, 2) + _vi(1, 3))  # unpacked BlobShape.dim, written before the data
  junk = _vi(999, 5) + _ld(998, b'fork stuff') + _varint(997 << 3 | 5) + b'\0' * 4
  conv_param = _ld(106, _vi(1, 2) + _ld(4, _varint(3) + _varint(1)))  # packed kernel_size 3, 1
  layer = (_ld(1, b'c') + _ld(2, b'Convolution') + junk + _ld(7, shape + unpacked) +
           _ld(7, _ld(8, np.array([7.5], '<f8').tobytes()) + _ld(7, _vi(1, 1))) + conv_param)
  path = tmp_path / 'hand.caffemodel'
  path.write_bytes(_ld(100, layer) + junk)
  blobs = read_caffemodel(path)['c'].blobs
  np.testing.assert_array_equal(blobs[0], values.reshape(2, 3))
  assert blobs[1].dtype == np.float32 and blobs[1].tolist() == [7.5]  # double_data
  msg = wire.decode(path.read_bytes(), 'NetParameter', str(path))
  assert msg.get('layer').get('convolution_param').getall('kernel_size') == [3, 1]
  assert wire.decode(_vi(16, (1 << 64) - 3), 'ConvolutionParameter', 'x').get('axis') == -3


def _random_net(rng) -> tuple[nd.NetDef, dict[str, list[np.ndarray]]]:
  net = parse_prototxt('''name: "rt"
    input: "x" input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
    layer { name: "conv" type: "Convolution" bottom: "x" top: "conv"
      convolution_param { num_output: 4 kernel_size: 3 } }
    layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
    layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
      inner_product_param { num_output: 5 } }
    layer { name: "ip2" type: "InnerProduct" bottom: "conv" top: "ip2"
      inner_product_param { num_output: 1 bias_term: false } }''')
  blobs = {'conv': [rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
           'ip': [rng.standard_normal((5, 144)), rng.standard_normal(5)],
           'ip2': [rng.standard_normal((1, 144)).astype(np.float32)]}
  return net, blobs


@pytest.mark.parametrize('version', ['V1', 'V2'])
@pytest.mark.parametrize('legacy', [True, False])
def test_writer_roundtrip(tmp_path, version, legacy):
  net, blobs = _random_net(np.random.default_rng(0))
  path = tmp_path / 'rt.caffemodel'
  write_caffemodel(path, net, blobs, version=version, legacy_dims=legacy)
  assert path.read_bytes() == encode_caffemodel(net, blobs, version=version, legacy_dims=legacy)
  model = read_caffemodel(path)
  assert [k for k in model if k != 'input'] == [l.name for l in net.layers if l.type != 'Input']
  assert model['conv_relu_0_split'].type == 'Split' and model['relu'].type == 'ReLU'
  for name, arrays in blobs.items():
    got = model[name].blobs
    assert len(got) == len(arrays)
    for a, b in zip(arrays, got):
      want_shape = (1,) * (4 - a.ndim) + a.shape if legacy else a.shape
      assert b.shape == want_shape
      np.testing.assert_array_equal(b.reshape(a.shape), a.astype(np.float32))
  assert _decode_net(path) == net  # the typed parameters are written too


def test_writer_rewrites_fixture_identically():
  net = read_prototxt(FIX / 'netB4.prototxt')
  model = read_caffemodel(FIX / 'netB4.caffemodel')
  blobs = {k: list(v) for k, v in model.items() if v.blobs}
  again = encode_caffemodel(net, blobs)
  for name, arrays in blobs.items():
    for a, b in zip(arrays, wire.decode(again, 'NetParameter', 'x').getall('layer')
                    [[l.name for l in net.layers].index(name)].getall('blobs')):
      np.testing.assert_array_equal(a.reshape(-1), wire.concat_floats(b.getall('data')))


def test_writer_errors():
  net, blobs = _random_net(np.random.default_rng(0))
  with pytest.raises(ValueError, match='not in net'):
    encode_caffemodel(net, {'nope': [np.zeros(1)]})
  with pytest.raises(ValueError, match='legacy'):
    encode_caffemodel(net, {'conv': [np.zeros((1, 1, 1, 1, 2))]}, legacy_dims=True)
  bn = parse_prototxt('input: "x" input_shape { dim: 1 dim: 2 }\n'
                      'layer { name: "b" type: "BatchNorm" bottom: "x" top: "b" }')
  with pytest.raises(ValueError, match='no V1 encoding'):
    encode_caffemodel(bn, {}, version='V1')
  with pytest.raises(ValueError, match='version'):
    encode_caffemodel(net, blobs, version='V3')
