"""Training of the project's DeePSim-style generators (``reference/original.md`` §7).

A generator G learns to invert a frozen classifier E at fc6 (the post-ReLU code): for a real
image x with code h = E(x), G(h) should match x in pixels, in the classifier's own features
(the comparator, E's conv3 and pool5 blobs) and to a discriminator D that sees the image and the
code. The losses are DeePSim's three terms, each normalised so the weights read as shares:

* image: ``mean((G(h) - x)^2) / mean(x^2)`` (mean-subtracted 0-255 pixels),
* feature: ``sum_l w_l * mean((E_l(G(h)) - E_l(x))^2) / mean(E_l(x)^2)``,
* adversarial: the non-saturating GAN loss ``softplus(-D(G(h), h))``,

with the original's D/G balancing (``r = (L_D_real + L_D_fake) / L_G_adv``: stop D below 0.1,
resume above 0.5, pause G above 10). The run is resumable exactly like the classifier's
(:class:`dgnam_jax.training.Workdir`, same data order after a restart).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dgnam_jax import data, files, training
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets import small, small_gen
from dgnam_jax.training import features, gen_stages
from dgnam_jax.training.discriminator import Discriminator, balance_gates  # noqa: F401
from dgnam_jax.training.gen_stages import save_stage  # noqa: F401 (public here since stage 2)
from dgnam_jax.training.gen_eval import (CODE_BLOB, code_statistics, decode_metrics, describe,
                                         export_generator, reconstruction_grid, statistics_of,
                                         reconstruction_metrics)

CURVES_FILE = 'training_curves.png'
RECON_FILE = 'reconstructions.png'


@dataclasses.dataclass(frozen=True)
class GenTrainConfig:
  """Optimisation settings (part of the resumable run's identity); the loss weights ``w_*`` are
  those of the module docstring."""
  epochs: float = 20.0  # schedule length in epochs of the training split
  batch_size: int = 64  # images per step (DeePSim: 64)
  lr: float = 1e-3  # peak Adam learning rate of G (cosine decay to lr * lr_floor)
  lr_floor: float = 0.05  # final learning rate as a fraction of lr
  lr_d: float = 2e-4  # Adam learning rate of D (DeePSim: 2e-4)
  b1: float = 0.9  # Adam beta1 of both (DeePSim: 0.9)
  w_img: float = 1.0  # image (pixel) loss
  w_conv3: float = 0.5  # feature loss at the encoder's conv3
  w_pool5: float = 1.0  # feature loss at pool5
  w_adv: float = 0.02  # adversarial loss
  w_comp: float = 0.0  # feature loss in a real net's layers (training.comparator; 0: none)
  output_scale: float = 64.0  # G's output multiplier in training (folded into deconv0 on export)
  balance: bool = True  # the original's D/G balancing rule
  pad: int = 0  # random-crop padding of the real images, in pixels
  flip: bool = True  # random horizontal flips of the real images
  seed: int = 0  # init, data order, augmentation


@dataclasses.dataclass(frozen=True)
class _Parts:
  """Static description of one training run's modules (hashable, so steps can be cached)."""
  encoder: Any
  generator: small_gen.SmallDeePSim
  disc: Discriminator
  cfg: GenTrainConfig
  total_steps: int
  cached_codes: bool = False  # codes come with each batch (a feature cache), not from E
  comparator: Any = None  # a comparator.Comparator (its params come with each step)


def _identity(cfg: GenTrainConfig) -> dict[str, Any]:
  """The settings in a run's identity; ``w_comp`` only when used, so that workdirs written before
  it existed still resume."""
  out = dataclasses.asdict(cfg)
  if not out['w_comp']:
    del out['w_comp']
  return out


def _g_schedule(cfg: GenTrainConfig, total: int):
  return optax.cosine_decay_schedule(cfg.lr, max(total, 1), cfg.lr_floor)


@functools.lru_cache(maxsize=8)
def _optimizers(cfg: GenTrainConfig, total: int):
  return (optax.adam(_g_schedule(cfg, total), b1=cfg.b1),
          optax.adam(cfg.lr_d, b1=cfg.b1))


def init_state(parts: _Parts, code_dim: int) -> dict[str, Any]:
  """A fresh run's state: G params (numpy MSRA init), D params, both optimiser states, gates."""
  cfg = parts.cfg
  g = jax.tree.map(jnp.asarray, small_gen.init_params(parts.generator.config, cfg.seed))
  size = parts.generator.config.image_size
  d = parts.disc.init(jax.random.PRNGKey(cfg.seed + 7), jnp.zeros((1, size, size, 3)),
                      jnp.zeros((1, code_dim)))['params']
  tx_g, tx_d = _optimizers(cfg, parts.total_steps)
  return {'step': jnp.zeros((), jnp.int32), 'g': g, 'd': d, 'g_opt': tx_g.init(g),
          'd_opt': tx_d.init(d), 'train_d': jnp.ones((), jnp.bool_)}


def _normalised_sq(a, b):
  return jnp.mean(jnp.square(a - b)) / (jnp.mean(jnp.square(b)) + 1e-8)


def feature_blobs(cfg: GenTrainConfig) -> tuple[tuple[str, float], ...]:
  return tuple((n, w) for n, w in (('conv3', cfg.w_conv3), ('pool5', cfg.w_pool5)) if w)


@functools.lru_cache(maxsize=8)
def make_train_step(parts: _Parts) -> Callable:
  """jit(state, encoder params, uint8 RGB images, mean_bgr[, codes]) -> (state, metrics).

  With ``parts.cached_codes`` the codes of the images are passed in (another net's cached
  features) and the encoder is only the comparator (its conv3/pool5).
  """
  cfg, enc, gen, disc = parts.cfg, parts.encoder, parts.generator, parts.disc
  tx_g, tx_d = _optimizers(cfg, parts.total_steps)
  feats = feature_blobs(cfg)
  last = 'pool5' if feats else None

  comp = parts.comparator

  def step(state, enc_params, images_u8, mean_bgr, cached=None, comp_params=None):
    x = data.to_net_input(images_u8, mean_bgr)
    if comp is not None:
      real_comp = jax.lax.stop_gradient(comp.features(comp_params, x, mean_bgr))
    if parts.cached_codes:
      real = enc.apply({'params': enc_params}, x, end=last).blobs if feats else {}
      code = jnp.asarray(cached, jnp.float32)
    else:
      real = enc.apply({'params': enc_params}, x).blobs  # whole forward: fc6 post-ReLU
      code = jax.lax.stop_gradient(real[CODE_BLOB])

    def g_loss(gp):
      fake = gen.apply({'params': gp}, code).blobs['deconv0']
      parts_ = {'img': _normalised_sq(fake, x)}
      if feats:
        got = enc.apply({'params': enc_params}, fake, end=last).blobs
        for name, _ in feats:
          parts_[name] = _normalised_sq(got[name], jax.lax.stop_gradient(real[name]))
      parts_['adv'] = jnp.mean(jax.nn.softplus(-disc.apply({'params': state['d']}, fake, code)))
      total = (cfg.w_img * parts_['img'] + sum(w * parts_[n] for n, w in feats)
               + cfg.w_adv * parts_['adv'])
      if comp is not None:
        got_comp = comp.features(comp_params, fake, mean_bgr)
        parts_['comp'] = sum(_normalised_sq(got_comp[n], real_comp[n])
                             for n in comp.layers) / len(comp.layers)
        total = total + cfg.w_comp * parts_['comp']
      return total, (fake, parts_)

    (g_total, (fake, g_parts)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(state['g'])
    fake = jax.lax.stop_gradient(fake)

    def d_loss(dp):
      lr_ = jnp.mean(jax.nn.softplus(-disc.apply({'params': dp}, x, code)))
      lf_ = jnp.mean(jax.nn.softplus(disc.apply({'params': dp}, fake, code)))
      return lr_ + lf_, (lr_, lf_)

    (_, (d_real, d_fake)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(state['d'])
    # The original's balancing, from this step's losses.
    if cfg.balance:
      train_d, train_g = balance_gates(d_real + d_fake, g_parts['adv'], state['train_d'])
    else:
      train_d, train_g = jnp.ones((), jnp.bool_), jnp.ones((), jnp.bool_)
    g_up, g_opt = tx_g.update(g_grads, state['g_opt'], state['g'])
    d_up, d_opt = tx_d.update(d_grads, state['d_opt'], state['d'])

    def keep(flag, new, old):
      return jax.tree.map(lambda n, o: jnp.where(flag, n, o), new, old)

    new = {'step': state['step'] + 1,
           'g': keep(train_g, optax.apply_updates(state['g'], g_up), state['g']),
           'g_opt': keep(train_g, g_opt, state['g_opt']),
           'd': keep(train_d, optax.apply_updates(state['d'], d_up), state['d']),
           'd_opt': keep(train_d, d_opt, state['d_opt']), 'train_d': train_d}
    metrics = {'loss': g_total, **g_parts, 'd_real': d_real, 'd_fake': d_fake,
               'train_d': train_d.astype(jnp.float32), 'train_g': train_g.astype(jnp.float32)}
    return new, metrics

  return jax.jit(step, donate_argnums=0)


def train_generator(train: data.ImageSet, test: data.ImageSet, encoder_path: str,
                    config: small_gen.SmallGenConfig, cfg: GenTrainConfig, workdir: str,
                    out: str | None = None, run_info: Mapping[str, Any] | None = None,
                    stop_at_step: int | None = None, checkpoint_every_secs: float = 300.0,
                    log_every_steps: int = 50, eval_images: int = 1000,
                    export_partial: bool = False, init_from: str | None = None,
                    codes: features.CachedCodes | None = None,
                    comparator: tuple[Any, Any, dict] | None = None) -> dict[str, Any]:
  """Trains (or resumes) a generator for the classifier at ``encoder_path``; exports when done.

  Args:
    train, test: the splits (uint8 RGB); the mean is the classifier's own (its checkpoint).
    encoder_path: the classifier checkpoint (its fc6 is the code, its conv3/pool5 the features).
    config: the generator architecture (``code_dim`` and ``image_size`` must fit the classifier).
    cfg: optimisation settings.
    workdir: checkpoints, run_config.json, train curves and reconstruction grids.
    out: where to export the generator checkpoint at the end (skipped if None or it exists).
    run_info: extra entries of the exported 'training' metadata (data path, command).
    stop_at_step: stop (after saving) at this step.
    checkpoint_every_secs: save at least this often, besides each epoch end.
    log_every_steps: log the running losses this often.
    eval_images: held-out images scored after each epoch (all of them at export).
    export_partial: export at ``stop_at_step`` too (a look at a run mid-schedule; its metadata
      records the steps done).
    init_from: a finished (or stopped) run's workdir with the same architecture: a new run
      starts from its G and D (fresh optimisers and schedule; a fine-tuning stage).
    codes: the codes of ``train`` and ``test`` from a feature cache (G then inverts that net's
      layer; ``encoder_path`` is only the comparator). Cached codes are of the unaugmented
      images: ``cfg.flip`` and ``cfg.pad`` must be off.
    comparator: (:class:`~dgnam_jax.training.comparator.Comparator`, params, description) of
      :func:`~dgnam_jax.training.comparator.load_comparator`: a real net's feature loss, weighted
      by ``cfg.w_comp`` (both or neither).

  Returns:
    {'step', 'done', 'history', 'metrics' (final, when done), 'out', 'wall_s'}.
  """
  t_start = time.time()
  encoder, enc_params, enc_meta = checkpoint.load_checkpoint(encoder_path)
  mean_bgr = np.asarray(enc_meta['mean']['per_channel'], np.float32)
  code_shape = next(b['shape'] for b in enc_meta['blobs'] if b['name'] == CODE_BLOB)
  if codes is not None:
    _check_codes(codes, config, cfg, train, test)
    code_shape = [1, codes.dim]
  if code_shape[1:] != [config.code_dim] or enc_meta['input_size'] != [config.image_size] * 2:
    raise ValueError(f'{encoder_path}: its {CODE_BLOB} is {code_shape[1:]} and its input '
                     f'{enc_meta["input_size"]}; the generator takes {config.code_dim} and makes '
                     f'{config.image_size} px images')
  if train.images.shape[1:3] != (config.image_size,) * 2:
    raise ValueError(f'images are {train.images.shape[1:3]}, the generator makes '
                     f'{config.image_size} px')
  stream = data.BatchStream(train, cfg.batch_size, cfg.seed, cfg.pad, cfg.flip)
  spe = stream.steps_per_epoch
  total = max(1, int(round(cfg.epochs * spe)))
  run_config = {
      'net': config.to_dict(), 'train': _identity(cfg), 'train_images': len(train),
      'test_images': len(test), 'encoder': files.relative_path(encoder_path),
      'encoder_metadata_sha256': files.sha256_file(os.path.join(encoder_path, 'dgnam.json')),
      'data': (run_info or {}).get('data')}
  if init_from:  # only then, so older single-stage workdirs still resume
    run_config['init_from'] = files.relative_path(init_from)
  if codes is not None:
    run_config['codes'] = {'layer': codes.layer, **codes.source}
  if (comparator is None) != (cfg.w_comp == 0):
    raise ValueError('a comparator needs w_comp > 0 and w_comp > 0 needs a comparator')
  if comparator is not None:
    run_config['comparator'] = comparator[2]
  training.check_run_config(workdir, run_config)
  parts = _Parts(encoder, small_gen.SmallDeePSim(config, output_scale=cfg.output_scale,
                                                 fast_weight_grad=True, train_form=True),
                 Discriminator(config.image_size), cfg, total, codes is not None,
                 comparator[0] if comparator else None)
  wd = training.Workdir(workdir)
  restored = wd.restore(jax.eval_shape(lambda: init_state(parts, config.code_dim)))
  history, wall0 = [], 0.0
  if restored is None:
    state = init_state(parts, config.code_dim)
    if init_from:
      state, prior_wall = gen_stages.warm_start(state, init_from)
      wall0 = prior_wall  # the model card's wall time counts every stage
    logging.info('new run in %s: %d train / %d test images, %d steps (%d per epoch), G %d '
                 'parameters, D %d', workdir, len(train), len(test), total, spe,
                 small.param_count(state['g']), small.param_count(state['d']))
  else:
    state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), restored[0])
    history, wall0 = list(restored[1].get('history', [])), float(restored[1].get('wall_s', 0))
    logging.info('resumed %s at step %d (epoch %.2f)', workdir, int(state['step']),
                 int(state['step']) / spe)
  step_fn = make_train_step(parts)
  # Spread over the split: test sets are often sorted by class.
  held_idx = data.spread_indices(len(test), eval_images)
  grid_idx = data.spread_indices(len(test), 16)
  held_out, grid_images = test.subset(held_idx), test.images[grid_idx]
  grid_codes = None if codes is None else codes.test[grid_idx]
  step = int(state['step'])
  end = total if stop_at_step is None else min(total, stop_at_step)

  def wall():
    return wall0 + time.time() - t_start

  deploy_gen = small_gen.SmallDeePSim(config)
  scaled_gen = parts.generator
  last_save, t_log, log_buf = time.time(), time.time(), []
  try:
    while step < end:
      batch = stream.batch(step)[0]  # no labels
      extra = {} if comparator is None else {'comp_params': comparator[1]}
      if codes is not None:  # batch() gathers the sorted indices of the step
        extra['cached'] = codes.train[np.sort(stream.indices(step))]
      state, metrics = step_fn(state, enc_params, batch, mean_bgr, **extra)
      step += 1
      log_buf.append(metrics)
      log_now, epoch_end = training.step_events(step, spe, total, log_every_steps)
      if log_now:
        m = {k: float(np.mean([v[k] for v in jax.device_get(log_buf)])) for k in log_buf[0]}
        logging.info('step %d/%d epoch %.2f: %s, %.1f img/s', step, total, step / spe,
                     ' '.join(f'{k} {v:.4f}' for k, v in m.items()),
                     len(log_buf) * cfg.batch_size / (time.time() - t_log))
        log_buf, t_log = [], time.time()
      if epoch_end:
        ev = _recon(encoder, enc_params, scaled_gen, state['g'], held_out, mean_bgr,
                    None if codes is None else codes.test[held_idx])
        history.append({'epoch': round(step / spe, 4), 'step': step, **m,
                        'test_psnr_db': ev['psnr_db'], 'test_code_rel_err': ev['code_rel_err'],
                        'wall_s': round(wall(), 1)})
        logging.info('epoch %.2f: %s (%d images, wall %.0f s)', step / spe, describe(ev),
                     ev['images'], wall())
        plot_history(history, os.path.join(workdir, CURVES_FILE), os.path.basename(workdir))
        reconstruction_grid(encoder, enc_params, scaled_gen, state['g'], grid_images,
                            mean_bgr, os.path.join(workdir, RECON_FILE), codes=grid_codes)
        wd.save(step, state, {'history': history, 'wall_s': wall()})
        last_save, t_log = time.time(), time.time()
      elif time.time() - last_save > checkpoint_every_secs or step == end:
        wd.save(step, state, {'history': history, 'wall_s': wall()})
        last_save = time.time()
  finally:
    wd.close()
  result = {'step': step, 'done': step >= total, 'history': history, 'wall_s': wall(),
            'out': None, 'metrics': None}
  if step < total and not export_partial:
    return result
  deploy = small_gen.deploy_params(config, jax.device_get(state['g']), cfg.output_scale)
  ev = _recon(encoder, enc_params, deploy_gen, deploy, test, mean_bgr,
              None if codes is None else codes.test)
  if codes is None:
    stats = code_statistics(encoder, enc_params, test, mean_bgr)
  else:
    stats = statistics_of(codes.test)
  logging.info('deploy generator over %d images: %s', ev['images'], describe(ev))
  result['metrics'] = ev
  if out and os.path.exists(out):
    logging.warning('%s exists; not exporting again', out)
  elif out:
    info = {**(run_info or {}), 'epochs': cfg.epochs * step / total, 'steps': step,
            'train_images': len(train), 'test_images': len(test),
            'test_psnr_db': ev['psnr_db'], 'test_psnr_image_mean_db': ev['psnr_image_mean_db'],
            'test_mse': ev['mse'], 'test_code_rel_err': ev['code_rel_err'],
            'wall_time_s': round(wall(), 1),
            'seed': cfg.seed, 'device': training.device_description(),
            'param_count': small.param_count(deploy), 'config': dataclasses.asdict(cfg),
            'bounds_from': f'{len(test)} held-out images', 'history': history,
            **({'init_from': files.relative_path(init_from)} if init_from else {})}
    if codes is not None:
      info['comparator'] = files.relative_path(encoder_path)
    if comparator is not None:
      info['comparator_features'] = comparator[2]
    result['out'] = export_generator(
        out, config, deploy, mean_bgr, stats, codes.encoder if codes else encoder_path, info,
        code_blob=codes.layer if codes else CODE_BLOB, code_signed=bool(codes and codes.signed),
        code_source=codes.source if codes else None)
    if os.path.exists(os.path.join(workdir, CURVES_FILE)):
      shutil.copy(os.path.join(workdir, CURVES_FILE), os.path.join(out, CURVES_FILE))
    reconstruction_grid(encoder, enc_params, deploy_gen, deploy, grid_images, mean_bgr,
                        os.path.join(out, RECON_FILE), codes=grid_codes)  # the exported net
    logging.info('exported %s', result['out'])
  return result


def _recon(encoder, enc_params, gen, gen_params, dataset, mean_bgr, codes):
  if codes is None:
    return reconstruction_metrics(encoder, enc_params, gen, gen_params, dataset, mean_bgr)
  return decode_metrics(gen, gen_params, dataset, codes, mean_bgr)


def _check_codes(codes, config, cfg, train, test) -> None:
  if (len(codes.train), len(codes.test)) != (len(train), len(test)):
    raise ValueError(f'the feature cache has {len(codes.train)} train / {len(codes.test)} test '
                     f'codes for {len(train)} / {len(test)} images')
  if codes.dim != config.code_dim:
    raise ValueError(f'the cached {codes.layer} codes have {codes.dim} units; the generator '
                     f'takes {config.code_dim}')
  if cfg.flip or cfg.pad:
    raise ValueError('cached codes are of the unaugmented images: train with --noflip --pad=0')


def plot_history(history, path: str, title: str) -> None:
  """Loss terms, the adversarial game and held-out PSNR against epoch."""
  training.plot_curves(history, path, title, panels=(
      ('G losses (normalised)', ('img', 'conv3', 'pool5')),
      ('adversarial', ('adv', 'd_real', 'd_fake')),
      ('held-out PSNR (dB)', ('test_psnr_db',))))
