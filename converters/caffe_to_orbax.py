r"""Converts a Caffe net (prototxt + caffemodel) into a dgnam_jax checkpoint directory.

  python -m converters.caffe_to_orbax --net=caffenet \
      --prototxt=deploy.prototxt --caffemodel=bvlc_reference_caffenet.caffemodel \
      --mean=ilsvrc_2012_mean.npy --class_names=synset_words.txt --out=checkpoints/caffenet

Reads every Caffe encoding (V0, V1, V2 text and binary; legacy 4-D or BlobShape blob dims)
without Caffe, and writes an Orbax params tree named after the Caffe layers plus ``dgnam.json``
(format: CHECKPOINTS.md). Layers of the caffemodel that the prototxt does not run (data, loss,
auxiliary heads) are ignored, as Caffe ignores them.

``--net=auto`` builds the generic net from the prototxt. A paper net name builds its hand-written
module (CaffeNet, Places205, DeePSim generators) or compares with the project's prototxt
(GoogLeNet, ResNet-50), checking every layer and blob shape. On any error one message names the
file and layer, nothing is written, and the exit status is 1.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from dgnam_jax import cli
from dgnam_jax import nets
from dgnam_jax.nets.from_caffe import ConvertOptions, convert_caffe

_PROTOTXT = flags.DEFINE_string('prototxt', None, 'Deploy prototxt (V0, V1 or V2 text).')
_CAFFEMODEL = flags.DEFINE_string('caffemodel', None, 'Trained weights (.caffemodel).')
_OUT = flags.DEFINE_string('out', None, 'Checkpoint directory to create (must not exist).',
    allow_override=True)
_NET = flags.DEFINE_enum('net', 'auto', ['auto'] + sorted(nets.NETS),
                         'auto: the generic net built from the prototxt. A paper net: check the '
                         'prototxt against it and record its name, so loaders build that net.')
_MEAN = flags.DEFINE_string('mean', None, 'Optional mean image: Caffe mean.binaryproto, or a '
                            '.npy (C,H,W) array such as Caffe\'s ilsvrc_2012_mean.npy.')
_CLASS_NAMES = flags.DEFINE_string('class_names', None, 'Optional text file, one class name per '
                                   'line in output order (e.g. synset_words.txt).')
_BOUNDS = flags.DEFINE_string('bounds', None, 'Generators only: per-unit upper bounds of the code '
                              '(e.g. act_range/3x/fc6.txt).')
_CHANNEL_ORDER = flags.DEFINE_enum('channel_order', 'BGR', ['BGR', 'RGB', 'GRAY'],
                                   'Channel order of the net\'s image input (or output).')
_PIXEL_SCALE = flags.DEFINE_float('pixel_scale', 255.0, 'Value of a white pixel in the net\'s '
                                  'input space before mean subtraction (Caffe nets: 255).')
_STRICT = flags.DEFINE_bool('strict', False, 'NaN or Inf weights are an error (default: a warning '
                            'naming the layer and blob).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  options = ConvertOptions(net=_NET.value, mean=_MEAN.value, class_names=_CLASS_NAMES.value,
                           bounds=_BOUNDS.value, channel_order=_CHANNEL_ORDER.value,
                           pixel_scale=_PIXEL_SCALE.value, strict=_STRICT.value)
  return cli.run('caffe_to_orbax', lambda: 'wrote ' + convert_caffe(
      _PROTOTXT.value, _CAFFEMODEL.value, _OUT.value, options,
      log=lambda message: cli.say('caffe_to_orbax', message)), resumable=False)


if __name__ == '__main__':
  flags.mark_flags_as_required(['prototxt', 'caffemodel', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
