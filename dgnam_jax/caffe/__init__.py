"""Reading and writing Caffe files: prototxt (V0/V1/V2), caffemodel, mean binaryproto."""

from dgnam_jax.caffe.netdef import CaffeFormatError, LayerDef, NetDef
from dgnam_jax.caffe.reader import (CaffeLayerBlobs, parse_prototxt, read_caffemodel,
                                    read_mean_binaryproto, read_prototxt)
from dgnam_jax.caffe.writer import encode_blobproto, encode_caffemodel, write_caffemodel

__all__ = [
    'CaffeFormatError', 'CaffeLayerBlobs', 'LayerDef', 'NetDef', 'encode_blobproto',
    'encode_caffemodel', 'parse_prototxt', 'read_caffemodel', 'read_mean_binaryproto',
    'read_prototxt', 'write_caffemodel',
]
