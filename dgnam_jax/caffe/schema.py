"""Field tables for the parts of caffe.proto this project reads and writes.

Written from the field lists in ``reference/caffe.md`` §1 (no generated protobuf code). One table
per message maps a field number to its name, kind and, for sub-messages, the message name. The
wire decoder (:mod:`wire`) is driven by these tables, the encoder (:mod:`writer`) uses them for
field numbers, and the normaliser uses them to reject unknown field names in text prototxts.

Kinds: ``string``, ``bytes``, ``int32``, ``int64``, ``uint32``, ``uint64``, ``bool``, ``enum``,
``float``, ``double``, ``message`` (decoded into a nested Message; ``sub=None`` means opaque: the
bytes are skipped by the decoder and its text is not checked), ``floats``/``doubles`` (packed
payloads decoded with numpy into one float32 array per record) and ``skip`` (known, never read:
BlobProto.diff).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Field:
  """One field of a message.

  Attributes:
    name: the field name as written in prototxt.
    kind: see the module docstring.
    sub: for ``message`` fields, the sub-message's table name (None: opaque); for ``enum``
      fields, the enum's table name in :data:`ENUMS`.
    repeated: whether the field is ``repeated`` in caffe.proto.
  """
  name: str
  kind: str
  sub: str | None = None
  repeated: bool = False


def _f(name: str, kind: str, sub: str | None = None) -> Field:
  return Field(name, kind, sub)


def _r(name: str, kind: str, sub: str | None = None) -> Field:
  return Field(name, kind, sub, repeated=True)


def _opaque(name: str) -> Field:
  return Field(name, 'message')


ENUMS: dict[str, dict[int, str]] = {
    'Phase': {0: 'TRAIN', 1: 'TEST'},
    'PoolMethod': {0: 'MAX', 1: 'AVE', 2: 'STOCHASTIC'},
    'RoundMode': {0: 'CEIL', 1: 'FLOOR'},
    'NormRegion': {0: 'ACROSS_CHANNELS', 1: 'WITHIN_CHANNEL'},
    'EltwiseOp': {0: 'PROD', 1: 'SUM', 2: 'MAX'},
    'Engine': {0: 'DEFAULT', 1: 'CAFFE', 2: 'CUDNN'},
    'DimCheckMode': {0: 'STRICT', 1: 'PERMISSIVE'},
    'V1LayerType': {
        0: 'NONE', 1: 'ACCURACY', 2: 'BNLL', 3: 'CONCAT', 4: 'CONVOLUTION', 5: 'DATA',
        6: 'DROPOUT', 7: 'EUCLIDEAN_LOSS', 8: 'FLATTEN', 9: 'HDF5_DATA', 10: 'HDF5_OUTPUT',
        11: 'IM2COL', 12: 'IMAGE_DATA', 13: 'INFOGAIN_LOSS', 14: 'INNER_PRODUCT', 15: 'LRN',
        16: 'MULTINOMIAL_LOGISTIC_LOSS', 17: 'POOLING', 18: 'RELU', 19: 'SIGMOID', 20: 'SOFTMAX',
        21: 'SOFTMAX_LOSS', 22: 'SPLIT', 23: 'TANH', 24: 'WINDOW_DATA', 25: 'ELTWISE',
        26: 'POWER', 27: 'SIGMOID_CROSS_ENTROPY_LOSS', 28: 'HINGE_LOSS', 29: 'MEMORY_DATA',
        30: 'ARGMAX', 31: 'THRESHOLD', 32: 'DUMMY_DATA', 33: 'SLICE', 34: 'MVN', 35: 'ABSVAL',
        36: 'SILENCE', 37: 'CONTRASTIVE_LOSS', 38: 'EXP', 39: 'DECONVOLUTION'},
}

# V1 enum name -> V2 type string (UpgradeV1LayerType).
V1_TO_V2_TYPE: dict[str, str] = {
    'NONE': '', 'ABSVAL': 'AbsVal', 'ACCURACY': 'Accuracy', 'ARGMAX': 'ArgMax', 'BNLL': 'BNLL',
    'CONCAT': 'Concat', 'CONTRASTIVE_LOSS': 'ContrastiveLoss', 'CONVOLUTION': 'Convolution',
    'DATA': 'Data', 'DECONVOLUTION': 'Deconvolution', 'DROPOUT': 'Dropout',
    'DUMMY_DATA': 'DummyData', 'EUCLIDEAN_LOSS': 'EuclideanLoss', 'ELTWISE': 'Eltwise',
    'EXP': 'Exp', 'FLATTEN': 'Flatten', 'HDF5_DATA': 'HDF5Data', 'HDF5_OUTPUT': 'HDF5Output',
    'HINGE_LOSS': 'HingeLoss', 'IM2COL': 'Im2col', 'IMAGE_DATA': 'ImageData',
    'INFOGAIN_LOSS': 'InfogainLoss', 'INNER_PRODUCT': 'InnerProduct', 'LRN': 'LRN',
    'MEMORY_DATA': 'MemoryData', 'MULTINOMIAL_LOGISTIC_LOSS': 'MultinomialLogisticLoss',
    'MVN': 'MVN', 'POOLING': 'Pooling', 'POWER': 'Power', 'RELU': 'ReLU', 'SIGMOID': 'Sigmoid',
    'SIGMOID_CROSS_ENTROPY_LOSS': 'SigmoidCrossEntropyLoss', 'SILENCE': 'Silence',
    'SOFTMAX': 'Softmax', 'SOFTMAX_LOSS': 'SoftmaxWithLoss', 'SPLIT': 'Split', 'SLICE': 'Slice',
    'TANH': 'TanH', 'WINDOW_DATA': 'WindowData', 'THRESHOLD': 'Threshold',
}
V2_TO_V1_TYPE: dict[str, str] = {v: k for k, v in V1_TO_V2_TYPE.items() if v}

# V0 type string -> V1 enum name (UpgradeV0LayerType). "padding" is folded away separately.
V0_TO_V1_TYPE: dict[str, str] = {
    'accuracy': 'ACCURACY', 'bnll': 'BNLL', 'concat': 'CONCAT', 'conv': 'CONVOLUTION',
    'data': 'DATA', 'dropout': 'DROPOUT', 'euclidean_loss': 'EUCLIDEAN_LOSS',
    'flatten': 'FLATTEN', 'hdf5_data': 'HDF5_DATA', 'hdf5_output': 'HDF5_OUTPUT',
    'im2col': 'IM2COL', 'images': 'IMAGE_DATA', 'infogain_loss': 'INFOGAIN_LOSS',
    'innerproduct': 'INNER_PRODUCT', 'lrn': 'LRN',
    'multinomial_logistic_loss': 'MULTINOMIAL_LOGISTIC_LOSS', 'pool': 'POOLING', 'relu': 'RELU',
    'sigmoid': 'SIGMOID', 'softmax': 'SOFTMAX', 'softmax_loss': 'SOFTMAX_LOSS', 'split': 'SPLIT',
    'tanh': 'TANH', 'window_data': 'WINDOW_DATA',
}

# LayerParameter (V2) type-specific parameter fields, numbers 100..148.
_V2_PARAMS = (
    'transform', 'loss', 'accuracy', 'argmax', 'concat', 'contrastive_loss', 'convolution', 'data',
    'dropout', 'dummy_data', 'eltwise', 'exp', 'hdf5_data', 'hdf5_output', 'hinge_loss',
    'image_data', 'infogain_loss', 'inner_product', 'lrn', 'memory_data', 'mvn', 'pooling',
    'power', 'relu', 'sigmoid', 'softmax', 'slice', 'tanh', 'threshold', 'window_data', 'python',
    'prelu', 'spp', 'reshape', 'log', 'flatten', 'reduction', 'embed', 'tile', 'batch_norm', 'elu',
    'bias', 'scale', 'input', 'crop', 'parameter', 'recurrent', 'swish', 'clip')

# The parameter messages the normaliser interprets: `<prefix>_param` -> message table name.
INTERPRETED_PARAMS: dict[str, str] = {
    'concat_param': 'ConcatParameter', 'convolution_param': 'ConvolutionParameter',
    'dropout_param': 'DropoutParameter', 'eltwise_param': 'EltwiseParameter',
    'inner_product_param': 'InnerProductParameter', 'lrn_param': 'LRNParameter',
    'pooling_param': 'PoolingParameter', 'relu_param': 'ReLUParameter',
    'softmax_param': 'SoftmaxParameter', 'reshape_param': 'ReshapeParameter',
    'flatten_param': 'FlattenParameter', 'batch_norm_param': 'BatchNormParameter',
    'scale_param': 'ScaleParameter', 'input_param': 'InputParameter',
    'crop_param': 'CropParameter',
}


def _param_field(prefix: str) -> Field:
  name = prefix + '_param'
  return Field(name, 'message', INTERPRETED_PARAMS.get(name))


_V1_PARAMS = {
    27: 'accuracy', 23: 'argmax', 9: 'concat', 40: 'contrastive_loss', 10: 'convolution',
    11: 'data', 12: 'dropout', 26: 'dummy_data', 24: 'eltwise', 41: 'exp', 13: 'hdf5_data',
    14: 'hdf5_output', 29: 'hinge_loss', 15: 'image_data', 16: 'infogain_loss',
    17: 'inner_product', 18: 'lrn', 22: 'memory_data', 34: 'mvn', 19: 'pooling', 21: 'power',
    30: 'relu', 38: 'sigmoid', 39: 'softmax', 31: 'slice', 37: 'tanh', 25: 'threshold',
    20: 'window_data', 36: 'transform', 42: 'loss',
}

MESSAGES: dict[str, dict[int, Field]] = {
    'NetParameter': {
        1: _f('name', 'string'), 2: _r('layers', 'message', 'V1LayerParameter'),
        3: _r('input', 'string'), 4: _r('input_dim', 'int32'), 5: _f('force_backward', 'bool'),
        6: _f('state', 'message', 'NetState'), 7: _f('debug_info', 'bool'),
        8: _r('input_shape', 'message', 'BlobShape'),
        100: _r('layer', 'message', 'LayerParameter'),
    },
    'NetState': {1: _f('phase', 'enum', 'Phase'), 2: _f('level', 'int32'),
                 3: _r('stage', 'string')},
    'NetStateRule': {1: _f('phase', 'enum', 'Phase'), 2: _f('min_level', 'int32'),
                     3: _f('max_level', 'int32'), 4: _r('stage', 'string'),
                     5: _r('not_stage', 'string')},
    'BlobShape': {1: _r('dim', 'int64')},
    'BlobProto': {
        1: _f('num', 'int32'), 2: _f('channels', 'int32'), 3: _f('height', 'int32'),
        4: _f('width', 'int32'), 5: _r('data', 'floats'), 6: _r('diff', 'skip'),
        7: _f('shape', 'message', 'BlobShape'), 8: _r('double_data', 'doubles'),
        9: _r('double_diff', 'skip'),
    },
    'LayerParameter': {
        1: _f('name', 'string'), 2: _f('type', 'string'), 3: _r('bottom', 'string'),
        4: _r('top', 'string'), 5: _r('loss_weight', 'float'), 6: _r('param', 'message'),
        7: _r('blobs', 'message', 'BlobProto'), 8: _r('include', 'message', 'NetStateRule'),
        9: _r('exclude', 'message', 'NetStateRule'), 10: _f('phase', 'enum', 'Phase'),
        11: _r('propagate_down', 'bool'),
        **{100 + i: _param_field(p) for i, p in enumerate(_V2_PARAMS)},
    },
    'V1LayerParameter': {
        1: _f('layer', 'message', 'V0LayerParameter'), 2: _r('bottom', 'string'),
        3: _r('top', 'string'), 4: _f('name', 'string'), 5: _f('type', 'enum', 'V1LayerType'),
        6: _r('blobs', 'message', 'BlobProto'), 7: _r('blobs_lr', 'float'),
        8: _r('weight_decay', 'float'), 32: _r('include', 'message', 'NetStateRule'),
        33: _r('exclude', 'message', 'NetStateRule'), 35: _r('loss_weight', 'float'),
        1001: _r('param', 'string'), 1002: _r('blob_share_mode', 'enum', 'DimCheckMode'),
        **{n: _param_field(p) for n, p in _V1_PARAMS.items()},
    },
    'V0LayerParameter': {
        1: _f('name', 'string'), 2: _f('type', 'string'), 3: _f('num_output', 'uint32'),
        4: _f('biasterm', 'bool'), 5: _opaque('weight_filler'), 6: _opaque('bias_filler'),
        7: _f('pad', 'uint32'), 8: _f('kernelsize', 'uint32'), 9: _f('group', 'uint32'),
        10: _f('stride', 'uint32'), 11: _f('pool', 'enum', 'PoolMethod'),
        12: _f('dropout_ratio', 'float'), 13: _f('local_size', 'uint32'), 14: _f('alpha', 'float'),
        15: _f('beta', 'float'), 22: _f('k', 'float'), 16: _f('source', 'string'),
        17: _f('scale', 'float'), 18: _f('meanfile', 'string'), 19: _f('batchsize', 'uint32'),
        20: _f('cropsize', 'uint32'), 21: _f('mirror', 'bool'),
        50: _r('blobs', 'message', 'BlobProto'), 51: _r('blobs_lr', 'float'),
        52: _r('weight_decay', 'float'), 65: _f('concat_dim', 'uint32'),
    },
    'ConvolutionParameter': {
        1: _f('num_output', 'uint32'), 2: _f('bias_term', 'bool'), 3: _r('pad', 'uint32'),
        4: _r('kernel_size', 'uint32'), 5: _f('group', 'uint32'), 6: _r('stride', 'uint32'),
        7: _opaque('weight_filler'), 8: _opaque('bias_filler'), 9: _f('pad_h', 'uint32'),
        10: _f('pad_w', 'uint32'), 11: _f('kernel_h', 'uint32'), 12: _f('kernel_w', 'uint32'),
        13: _f('stride_h', 'uint32'), 14: _f('stride_w', 'uint32'),
        15: _f('engine', 'enum', 'Engine'), 16: _f('axis', 'int32'),
        17: _f('force_nd_im2col', 'bool'), 18: _r('dilation', 'uint32'),
    },
    'PoolingParameter': {
        1: _f('pool', 'enum', 'PoolMethod'), 2: _f('kernel_size', 'uint32'),
        3: _f('stride', 'uint32'), 4: _f('pad', 'uint32'), 5: _f('kernel_h', 'uint32'),
        6: _f('kernel_w', 'uint32'), 7: _f('stride_h', 'uint32'), 8: _f('stride_w', 'uint32'),
        9: _f('pad_h', 'uint32'), 10: _f('pad_w', 'uint32'), 11: _f('engine', 'enum', 'Engine'),
        12: _f('global_pooling', 'bool'), 13: _f('round_mode', 'enum', 'RoundMode'),
    },
    'LRNParameter': {
        1: _f('local_size', 'uint32'), 2: _f('alpha', 'float'), 3: _f('beta', 'float'),
        4: _f('norm_region', 'enum', 'NormRegion'), 5: _f('k', 'float'),
        6: _f('engine', 'enum', 'Engine'),
    },
    'InnerProductParameter': {
        1: _f('num_output', 'uint32'), 2: _f('bias_term', 'bool'), 3: _opaque('weight_filler'),
        4: _opaque('bias_filler'), 5: _f('axis', 'int32'), 6: _f('transpose', 'bool'),
    },
    'ReLUParameter': {1: _f('negative_slope', 'float'), 2: _f('engine', 'enum', 'Engine')},
    'DropoutParameter': {1: _f('dropout_ratio', 'float')},
    'SoftmaxParameter': {1: _f('engine', 'enum', 'Engine'), 2: _f('axis', 'int32')},
    'ConcatParameter': {1: _f('concat_dim', 'uint32'), 2: _f('axis', 'int32')},
    'EltwiseParameter': {1: _f('operation', 'enum', 'EltwiseOp'), 2: _r('coeff', 'float'),
                         3: _f('stable_prod_grad', 'bool')},
    'BatchNormParameter': {1: _f('use_global_stats', 'bool'),
                           2: _f('moving_average_fraction', 'float'), 3: _f('eps', 'float')},
    'ScaleParameter': {1: _f('axis', 'int32'), 2: _f('num_axes', 'int32'),
                       3: _opaque('filler'), 4: _f('bias_term', 'bool'),
                       5: _opaque('bias_filler')},
    'ReshapeParameter': {1: _f('shape', 'message', 'BlobShape'), 2: _f('axis', 'int32'),
                         3: _f('num_axes', 'int32')},
    'FlattenParameter': {1: _f('axis', 'int32'), 2: _f('end_axis', 'int32')},
    'CropParameter': {1: _f('axis', 'int32'), 2: _r('offset', 'uint32')},
    'InputParameter': {1: _r('shape', 'message', 'BlobShape')},
}

# name -> (number, Field) per message, for the encoder and for text validation.
BY_NAME: dict[str, dict[str, tuple[int, Field]]] = {
    msg: {f.name: (num, f) for num, f in table.items()} for msg, table in MESSAGES.items()}
