"""Loading nets by checkpoint: a generator/classifier pair as a :class:`Pipeline`, a classifier
alone, and the output shapes of a classifier's layers (traced, never run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from dgnam_jax import nets
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets.pipeline import Pipeline, code_shape_internal, space_from_metadata


def _out_blob_size(meta: Mapping[str, Any], blob: str) -> tuple[int, int]:
  for spec in meta.get('blobs') or []:
    if spec['name'] == blob and len(spec['shape']) == 4:
      return tuple(spec['shape'][2:4])
  raise ValueError(f'the generator metadata has no 4-D output blob {blob!r}')


def load_pair(generator_dir: str, classifier_dir: str, dtype=jnp.float32):
  """Loads a generator and a classifier checkpoint into a :class:`Pipeline`.

  Returns:
    (pipeline, generator params, classifier params, generator metadata, classifier metadata).
  """
  gen, gen_params, gen_meta = checkpoint.load_checkpoint(generator_dir, dtype=dtype)
  clf, clf_params, clf_meta = checkpoint.load_checkpoint(classifier_dir, dtype=dtype)
  info = gen_meta.get('generator')
  if gen_meta.get('kind') != 'generator' or not info:
    raise ValueError(f'{generator_dir} is not a generator checkpoint (kind '
                     f'{gen_meta.get("kind")!r})')
  if clf_meta.get('kind') != 'classifier':
    raise ValueError(f'{classifier_dir} is not a classifier checkpoint (kind '
                     f'{clf_meta.get("kind")!r})')
  out_blob = info.get('output_blob') or 'deconv0'
  gen_space = space_from_metadata(gen_meta, _out_blob_size(gen_meta, out_blob))
  if not gen_meta.get('mean') and gen_space.channel_order == 'BGR' and gen_space.pixel_scale == 255:
    # DeePSim draws ImageNet-mean-subtracted BGR; only used when converting to another space.
    gen_space = dataclasses.replace(gen_space, mean=nets.IMAGENET_MEAN_BGR)
  clf_space = space_from_metadata(clf_meta)
  # The original feeds the crop unchanged whenever both nets are Caffe-space (even Places).
  same = (gen_space.channel_order, gen_space.pixel_scale) == (clf_space.channel_order,
                                                              clf_space.pixel_scale)
  pipe = Pipeline(gen, clf, code_shape_internal(info['code_shape']), gen_space, clf_space,
                  out_blob, same)
  return pipe, gen_params, clf_params, gen_meta, clf_meta


def layer_shapes(pipe: Pipeline, clf_params, clf_meta: Mapping[str, Any], use_blob: bool
                 ) -> dict[str, tuple[int, ...]]:
  """Output shapes (NHWC / NC, batch 1) of every classifier layer (or blob), traced only."""
  channels = clf_meta['inputs'][0]['shape'][1] if clf_meta.get('inputs') else 3
  x = jax.ShapeDtypeStruct((1, *pipe.classifier_space.size, channels), jnp.float32)
  outs = jax.eval_shape(pipe.classify, clf_params, x)
  table = outs.blobs if use_blob else outs.layers
  return {k: tuple(v.shape) for k, v in table.items()}


def load_classifier_pipeline(classifier_dir: str, dtype=jnp.float32):
  """A classifier alone as a :class:`Pipeline` without a generator (pixel-space methods).

  Returns:
    (pipeline, classifier params, classifier metadata).
  """
  clf, clf_params, clf_meta = checkpoint.load_checkpoint(classifier_dir, dtype=dtype)
  if clf_meta.get('kind') != 'classifier':
    raise ValueError(f'{classifier_dir} is not a classifier checkpoint (kind '
                     f'{clf_meta.get("kind")!r})')
  space = space_from_metadata(clf_meta)
  return Pipeline(None, clf, (*space.size, 3), space, space, same_space=True), clf_params, clf_meta
