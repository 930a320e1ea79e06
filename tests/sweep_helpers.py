"""Tiny checkpoints and output comparisons shared by the sweep tests (test_synthesize,
test_processes)."""

import json
import os
import shutil

import numpy as np

from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets import convert
from dgnam_jax.sweeps import outputs

import tiny_nets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = 16
CLASSES = 10


def _meta(netdef, text, kind):
  """Checkpoint metadata as the converter writes it (CHECKPOINTS.md)."""
  _, blobs = convert.shapes(netdef, batch=1)
  inputs = [{'name': n, 'shape': list(s)} for n, s in netdef.inputs]
  return {'net': 'prototxt', 'kind': kind, 'prototxt': text, 'inputs': inputs,
          'channel_order': 'BGR', 'pixel_scale': 255.0,
          'input_size': list(inputs[0]['shape'][2:]),
          'blobs': [{'name': k, 'shape': list(v)} for k, v in blobs.items()],
          'layers': [{'name': l.name, 'type': l.type, 'bottoms': list(l.bottoms),
                      'tops': list(l.tops)} for l in netdef.layers],
          'mean': None, 'class_names': None, 'generator': None}


def tiny_checkpoints(root):
  """(generator, classifier, generator without bounds) checkpoint directories under root."""
  gen_def = parse_prototxt(tiny_nets.GENERATOR, 'tiny_gen')
  clf_def = parse_prototxt(tiny_nets.CLASSIFIER, 'tiny_clf')
  gen_meta = _meta(gen_def, tiny_nets.GENERATOR, 'generator')
  gen_meta['generator'] = {'code_layer': 'fc6', 'code_shape': [CODE], 'output_blob': 'deconv0',
                           'bounds_file': 'bounds.npy', 'bounds_kind': 'mean_std'}
  clf_meta = _meta(clf_def, tiny_nets.CLASSIFIER, 'classifier')
  clf_meta['class_names'] = [f'n{i:08d} class{i}, other gloss' for i in range(CLASSES)]
  bounds = np.stack([np.full(CODE, 1.0, np.float32), np.linspace(0.5, 2, CODE, dtype=np.float32)])
  gen = checkpoint.save(str(root / 'gen'), tiny_nets.random_params(gen_def, 0, 20.0), gen_meta,
                        {'bounds': bounds})
  clf = checkpoint.save(str(root / 'clf'), tiny_nets.random_params(clf_def, 1, 1.5), clf_meta)
  bare = str(root / 'gen_nobounds')
  shutil.copytree(gen, bare)
  with open(os.path.join(bare, 'dgnam.json')) as f:
    meta = json.load(f)
  meta['generator']['bounds_file'] = None
  with open(os.path.join(bare, 'dgnam.json'), 'w') as f:
    json.dump(meta, f)
  return gen, clf, bare


def tree_bytes(root):
  """{relative path: bytes} of every file under root; manifest.json without provenance."""
  out = {}
  for d, _, names in os.walk(root):
    for name in names:
      path = os.path.join(d, name)
      rel = os.path.relpath(path, root)
      with open(path, 'rb') as f:
        data = f.read()
      if rel == outputs.MANIFEST_JSON:
        doc = json.loads(data)
        doc.pop('provenance')
        data = json.dumps(doc, sort_keys=True).encode()
      out[rel] = data
  return out
