"""Scoring and export of the project's generators: reconstructions, code statistics, checkpoint.

* :func:`reconstruction_metrics`: PSNR of G(E(x)) against held-out x (the saved-photo convention:
  output + mean clipped to 0-255), pooled and per image, and the relative error of the re-encoded
  code E(G(E(x))).
* :func:`code_statistics`: per-unit mean and std of the post-ReLU code, the bounds file;
  :func:`encode_codes`: the codes themselves (percentile boxes).
* :func:`export_generator`: the generator checkpoint (CHECKPOINTS.md), naming its encoder.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax import data, images, nets
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets import convert
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.nets import small_gen

REGISTERED_NAME = 'cifar10_generator'  # the registry entry built from CIFAR10_GEN_CONFIG
CODE_BLOB = 'fc6'  # read after the whole forward, so post-ReLU (relu6 is in place)


def _photo_sq_err(fake, x, mean_bgr, n):
  """Per-image MSE of the saved photo (output + mean, clipped to 0-255) against the input x;
  rows past the valid ``n`` (batch padding) hold 0."""
  err = jnp.clip(fake + mean_bgr, 0, 255) - (x + mean_bgr)
  valid = jnp.arange(x.shape[0]) < n
  return jnp.where(valid, jnp.mean(jnp.square(err), axis=(1, 2, 3)), 0.0), valid


@functools.lru_cache(maxsize=8)
def make_recon_fn(encoder, generator) -> Callable:
  """jit(enc params, gen params, uint8 RGB, valid n, mean) -> (per-image MSE, rel code err, G).

  Rows past the valid ``n`` (batch padding) hold 0 in both error vectors.
  """

  def fn(enc_params, gen_params, images_u8, n, mean_bgr):
    x = data.to_net_input(images_u8, mean_bgr)
    code = encoder.apply({'params': enc_params}, x).blobs[CODE_BLOB]
    fake = generator.apply({'params': gen_params}, code).blobs['deconv0']
    sq, valid = _photo_sq_err(fake, x, mean_bgr, n)
    recode = encoder.apply({'params': enc_params}, fake).blobs[CODE_BLOB]
    rel = (jnp.linalg.norm(recode - code, axis=-1)
           / jnp.maximum(jnp.linalg.norm(code, axis=-1), 1e-6))
    return sq, jnp.where(valid, rel, 0.0), fake

  return jax.jit(fn)


@functools.lru_cache(maxsize=8)
def make_decode_fn(generator) -> Callable:
  """jit(gen params, codes, uint8 RGB, valid n, mean) -> (per-image MSE, G): reconstructions from
  given codes (a feature cache of another net; no re-encoding error)."""

  def fn(gen_params, code, images_u8, n, mean_bgr):
    x = data.to_net_input(images_u8, mean_bgr)
    fake = generator.apply({'params': gen_params}, code).blobs['deconv0']
    return _photo_sq_err(fake, x, mean_bgr, n)[0], fake

  return jax.jit(fn)


def _psnr_db(mse):
  return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12))


def _summary(sq: list[np.ndarray], rel: list[np.ndarray] | None) -> dict[str, Any]:
  sq = np.concatenate(sq)
  mse = float(sq.mean())
  return {'psnr_db': float(_psnr_db(mse)), 'psnr_image_mean_db': float(_psnr_db(sq).mean()),
          'mse': mse, 'code_rel_err': None if rel is None else float(np.concatenate(rel).mean()),
          'images': len(sq)}


def decode_metrics(generator, gen_params, dataset: data.ImageSet, codes: np.ndarray,
                   mean_bgr: np.ndarray, batch_size: int = 250) -> dict[str, Any]:
  """:func:`reconstruction_metrics` for a generator of cached codes (``codes[i]`` of image i);
  ``code_rel_err`` is None (re-encoding would run the big net)."""
  if len(codes) != len(dataset):
    raise ValueError(f'{len(codes)} codes for {len(dataset)} images')
  fn = make_decode_fn(generator)
  mean = np.asarray(mean_bgr, np.float32)
  # The labels carry each image's row in ``codes``, so the shared batching pads both alike.
  indexed = dataclasses.replace(dataset, labels=np.arange(len(dataset)))
  sq = []
  for x, rows, n in data.eval_batches(indexed, min(batch_size, len(dataset))):
    s, _ = fn(gen_params, jnp.asarray(codes[rows], jnp.float32), x, n, mean)
    sq.append(np.asarray(s, np.float64)[:n])
  return _summary(sq, None)


def reconstruction_metrics(encoder, enc_params, generator, gen_params, dataset: data.ImageSet,
                           mean_bgr: np.ndarray, batch_size: int = 250) -> dict[str, float]:
  """Reconstruction quality of G(E(x)) over a split (0-255 photo convention).

  Returns ``psnr_db``, the PSNR of the MSE pooled over all images (the stricter number, which the
  model cards lead with), ``psnr_image_mean_db``, the mean of per-image PSNRs (the convention of
  most image-restoration benchmarks; higher, since PSNR is concave in the MSE), ``mse``, and
  ``code_rel_err``, the mean relative fc6 re-encoding error.
  """
  fn = make_recon_fn(encoder, generator)
  mean = np.asarray(mean_bgr, np.float32)
  sq, rel = [], []
  for x, _, n in data.eval_batches(dataset, min(batch_size, len(dataset))):
    s, r, _ = fn(enc_params, gen_params, x, n, mean)
    sq.append(np.asarray(s, np.float64)[:n])
    rel.append(np.asarray(r, np.float64)[:n])
  return _summary(sq, rel)


def describe(ev: Mapping[str, float]) -> str:
  """One line for logs: both PSNRs and the re-encoding error of :func:`reconstruction_metrics`."""
  line = (f'held-out PSNR {ev["psnr_db"]:.2f} dB pooled, {ev["psnr_image_mean_db"]:.2f} dB mean '
          'per image')
  if ev.get('code_rel_err') is None:
    return line
  return line + f'; fc6 re-encoding error {ev["code_rel_err"]:.4f}'


def reconstruction_grid(encoder, enc_params, generator, gen_params, images_u8: np.ndarray,
                        mean_bgr: np.ndarray, path: str, scale: int = 3,
                        codes: np.ndarray | None = None) -> str:
  """A PNG of held-out originals (top row of each pair) above their reconstructions G(E(x))
  (from ``codes`` when given: a feature cache's codes of these images)."""
  mean = np.asarray(mean_bgr, np.float32)
  if codes is None:
    _, _, fake = make_recon_fn(encoder, generator)(enc_params, gen_params, images_u8,
                                                   len(images_u8), mean)
  else:
    _, fake = make_decode_fn(generator)(gen_params, jnp.asarray(codes, jnp.float32), images_u8,
                                        len(images_u8), mean)
  recon = data.from_net_input(np.asarray(fake), mean)
  cols = min(8, len(images_u8))
  tiles, labels = [], []
  for lo in range(0, len(images_u8), cols):
    for row, label in ((images_u8, 'real'), (recon, 'G(E(x))')):
      for img in row[lo:lo + cols]:
        tiles.append(images.enlarge(img, scale))
        labels.append(label)
  pic = images.grid(tiles, labels, cols)
  return images.save_image(path, pic)


def _code_batches(encoder, enc_params, dataset: data.ImageSet, mean_bgr: np.ndarray, blob: str,
                  batch_size: int):
  """(n, D) float32 post-ReLU codes, batch by batch."""
  # The whole forward: with end=blob an in-place ReLU after it would not have run yet.
  fn = jax.jit(lambda p, x: encoder.apply({'params': p}, x).blobs[blob])
  mean = np.asarray(mean_bgr, np.float32)
  for x, _, n in data.eval_batches(dataset, min(batch_size, len(dataset))):
    yield np.asarray(fn(enc_params, data.to_net_input(x, mean)), np.float32)[:n].reshape(n, -1)


def encode_codes(encoder, enc_params, dataset: data.ImageSet, mean_bgr: np.ndarray,
                 blob: str = CODE_BLOB, batch_size: int = 500) -> np.ndarray:
  """(N, D) float32: the encoder's post-ReLU code of every image of a split."""
  return np.concatenate(list(_code_batches(encoder, enc_params, dataset, mean_bgr, blob,
                                           batch_size)))


def statistics_of(codes: np.ndarray) -> np.ndarray:
  """(2, D) float32 per-unit mean and std (float64 arithmetic) of (N, D) codes in memory."""
  c = np.asarray(codes, np.float64)
  return np.stack([c.mean(0), c.std(0)]).astype(np.float32)


def code_statistics(encoder, enc_params, dataset: data.ImageSet, mean_bgr: np.ndarray,
                    blob: str = CODE_BLOB, batch_size: int = 500) -> np.ndarray:
  """(2, D): per-unit mean and std of the post-ReLU code over a split (float64 sums)."""
  s1 = s2 = 0.0
  for c in _code_batches(encoder, enc_params, dataset, mean_bgr, blob, batch_size):
    c = c.astype(np.float64)
    s1, s2 = s1 + c.sum(0), s2 + (c * c).sum(0)
  mu = s1 / len(dataset)
  std = np.sqrt(np.maximum(s2 / len(dataset) - mu * mu, 0.0))
  return np.stack([mu, std]).astype(np.float32)


def encoder_checkpoint(generator_path: str, meta: Mapping[str, Any]) -> str:
  """The encoder checkpoint a generator's metadata names (relative to the generator)."""
  enc = ((meta.get('generator') or {}).get('encoder') or {}).get('checkpoint')
  if not enc:
    raise ValueError(f'{generator_path} names no encoder; pass one explicitly')
  if enc.startswith(checkpoint.REGISTRY_PREFIX):  # a registry net names itself on every machine
    return enc
  return os.path.normpath(os.path.join(generator_path, enc))


def generator_metadata(generator_path: str) -> dict[str, Any]:
  """A generator checkpoint's metadata; ValueError naming the folder if it is another kind."""
  meta = checkpoint.read_metadata(generator_path)
  if meta.get('kind') != 'generator':
    raise ValueError(f'{generator_path} is not a generator checkpoint (kind {meta.get("kind")!r})')
  return meta


def open_generator(generator_path: str, encoder_path: str | None = None):
  """(generator, params, metadata, encoder, encoder params, encoder metadata) of a checkpoint.

  ``encoder_path`` defaults to the encoder the generator names. Raises ValueError naming the
  folder when it is not a generator checkpoint.
  """
  generator_metadata(generator_path)  # the clear error before any parameters load
  gen, gen_params, meta = checkpoint.load_checkpoint(generator_path)
  encoder, enc_params, enc_meta = checkpoint.load_checkpoint(
      encoder_path or encoder_checkpoint(generator_path, meta))
  return gen, gen_params, meta, encoder, enc_params, enc_meta


def registered_name(config: small_gen.SmallGenConfig, code_dim: int) -> str:
  ok = config == small_gen.CIFAR10_GEN_CONFIG and REGISTERED_NAME in nets.NETS
  return REGISTERED_NAME if ok and code_dim == config.code_dim else 'prototxt'


def export_generator(path: str, config: small_gen.SmallGenConfig, params: Mapping[str, Any],
                     mean_bgr: np.ndarray, stats: np.ndarray, encoder_path: str | None,
                     training_info: Mapping[str, Any] | None = None, bounds_k: float = 3.0,
                     code_blob: str = CODE_BLOB, code_signed: bool = False,
                     code_source: Mapping[str, Any] | None = None) -> str:
  """Writes a generator checkpoint (CHECKPOINTS.md) with mean_std bounds; returns its path.

  Args:
    path: the checkpoint directory to create.
    config: the architecture.
    params: deploy parameters (output scale folded).
    mean_bgr: the classifier's per-channel mean (the generator's output space).
    stats: (2, code_dim) code mean and std (:func:`code_statistics`), saved as bounds.npy.
    encoder_path: the classifier checkpoint (stored relative to ``path`` when possible).
    training_info: the 'training' metadata entry.
    bounds_k: the default multiple of std of the upper bound (the paper's 3).
    code_blob: the encoder output the codes are (``fc6``; a cached net's layer otherwise).
    code_signed: the codes go below 0 (DGN-AM's box is then mean -/+ k std, not [0, ...]).
    code_source: for codes from a feature cache, its settings (pooling cells, net hashes):
      the codes are then not the encoder's raw blob.
  """
  name = registered_name(config, config.code_dim)
  prototxt = small_gen.deploy_prototxt(config, name if name != 'prototxt' else 'SmallDeePSim')
  netdef = parse_prototxt(prototxt, '<generator prototxt>')
  _, blob_shapes = convert.shapes(netdef, batch=1)
  forward_order = list(dict.fromkeys(t for l in netdef.layers for t in l.tops))
  size = config.image_size
  enc = None
  if encoder_path and encoder_path.startswith(checkpoint.REGISTRY_PREFIX):
    enc = encoder_path
  elif encoder_path:
    rel = os.path.relpath(os.path.abspath(encoder_path), os.path.dirname(os.path.abspath(path)))
    enc = os.path.join('..', rel)
  meta = {
      'net': name, 'kind': 'generator', 'prototxt': prototxt,
      'inputs': [{'name': 'feat', 'shape': [1, config.code_dim]}],
      'channel_order': 'BGR', 'pixel_scale': 255.0, 'input_size': [size, size],
      'mean': {'file': 'mean.npy', 'shape': [3, size, size],
               'per_channel': [float(v) for v in mean_bgr]},
      'blobs': [{'name': k, 'shape': list(blob_shapes[k])} for k in forward_order],
      'layers': [{'name': l.name, 'type': l.type, 'bottoms': list(l.bottoms),
                  'tops': list(l.tops)} for l in netdef.layers],
      'class_names': None,
      'generator': {'code_layer': code_blob, 'code_shape': [config.code_dim],
                    'output_blob': 'deconv0', 'bounds_file': 'bounds.npy',
                    'bounds_kind': 'mean_std', 'bounds_k': bounds_k,
                    'encoder': {'checkpoint': enc, 'blob': code_blob,
                                **({'features': dict(code_source)} if code_source else {})},
                    **({'code_signed': True} if code_signed else {})},
      'architecture': config.to_dict(),
      'training': dict(training_info or {}),
  }
  arrays = {'mean': data.mean_image(mean_bgr, size, size), 'bounds': np.asarray(stats, np.float32)}
  return checkpoint.save(path, params, meta, arrays)
