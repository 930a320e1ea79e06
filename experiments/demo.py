r"""Demo on the bundled fixtures: convert a real Caffe LeNet and check it against Caffe's outputs.

  python -m experiments.demo --out=demo_out

Converts ``tests/fixtures/caffe`` LeNet (a caffemodel written by a real BVLC Caffe) into a
checkpoint, runs it through ``converters.caffe_forward`` on the inputs Caffe saw, and prints the
relative max error of every blob against Caffe's own outputs. Takes ~10 s on 2 CPU cores.
(This becomes the DGN-AM synthesis demo once the embedded default nets land.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from absl import app
from absl import flags
import numpy as np

_OUT = flags.DEFINE_string('out', 'demo_out', 'Directory for the checkpoint and outputs '
                           '(replaced if it exists).',
    allow_override=True)
_FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests',
                         'fixtures', 'caffe')


def _run(*args: str) -> None:
  subprocess.run([sys.executable, '-m', *args], check=True)


def main(argv):
  del argv
  out = os.path.abspath(_OUT.value)
  shutil.rmtree(out, ignore_errors=True)
  os.makedirs(out)
  ckpt = os.path.join(out, 'lenet')
  _run('converters.caffe_to_orbax',
       f'--prototxt={_FIXTURES}/bvlc_lenet_deploy.prototxt',
       f'--caffemodel={_FIXTURES}/ethereon_caffe-tensorflow__lenet_iter_10000.caffemodel',
       f'--out={ckpt}')
  golden = os.path.join(_FIXTURES, 'golden_lenet_v2.npz')
  result = os.path.join(out, 'lenet_blobs.npz')
  _run('converters.caffe_forward', f'--checkpoint={ckpt}', f'--inputs={golden}',
       f'--out={result}')
  worst = 0.0
  with np.load(golden) as want, np.load(result) as got:
    for key in sorted(k for k in want.files if k.startswith('blob_')):
      ref = want[key]
      err = float(np.abs(got[key] - ref).max() / max(np.abs(ref).max(), 1e-30))
      worst = max(worst, err)
      print(f'{key[5:]:>8s} {str(ref.shape):>18s}  rel. max error vs Caffe {err:.2e}')
    pred = got['blob_prob'].argmax(1)
  print(f'LeNet predictions on the two Caffe test inputs: {pred.tolist()}; worst error {worst:.1e}')
  return 0 if worst <= 1e-5 else 1


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
