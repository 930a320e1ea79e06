"""Training, evaluation and export of the project's small CaffeNet-like classifiers.

:func:`train_classifier` runs the whole job: SGD (Nesterov) or AdamW with warmup + cosine decay,
label smoothing, crop/flip augmentation, resumable Orbax checkpoints in a workdir (every few
minutes and at each epoch end; a restart with the same settings continues from the last save with
the same data order), a test evaluation and training-curve PNG per epoch, and finally the export
of the deploy net (BatchNorm folded) with :func:`dgnam_jax.nets.checkpoint.save`.
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

from dgnam_jax import data, nets, training
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets import convert
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.nets import small, small_resnet

REGISTERED_NAME = 'cifar10_classifier'  # the registry entry built from small.CIFAR10_CONFIG
CURVES_FILE = 'training_curves.png'


def arch_of(config):
  """The nets module that builds ``config`` (:mod:`small` or :mod:`small_resnet`)."""
  return small_resnet if isinstance(config, small_resnet.SmallResNetConfig) else small


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation settings (all of them are part of the resumable run's identity)."""
  epochs: float = 30.0  # length of the schedule in epochs
  batch_size: int = 128  # images per step (the last partial batch of each epoch is dropped)
  optimizer: str = 'sgd'  # 'sgd' (Nesterov momentum) or 'adamw'
  lr: float = 0.1  # peak learning rate
  momentum: float = 0.9  # SGD momentum (or AdamW's b1)
  weight_decay: float = 5e-4  # on conv/fc kernels only (not biases or BatchNorm)
  warmup_epochs: float = 1.0  # linear warmup from 0 to lr, then cosine decay to 0
  label_smoothing: float = 0.1  # of the cross-entropy targets
  dropout: float = 0.3  # after relu6 and relu7
  pad: int = 4  # random-crop padding in pixels (0: no crop)
  flip: bool = True  # random horizontal flips
  seed: int = 0  # parameter init, data order, augmentation and dropout


def make_optimizer(cfg: TrainConfig, total_steps: int,
                   steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimiser with its warmup + cosine schedule; decay skips biases and BatchNorm."""
  warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), max(total_steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, max(total_steps, 1), 0.0)

  def decay_mask(params):
    return {layer: {leaf: leaf == 'kernel' for leaf in leaves} for layer, leaves in params.items()}

  if cfg.optimizer == 'sgd':
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay, decay_mask),
                       optax.sgd(schedule, cfg.momentum, nesterov=True))
  if cfg.optimizer == 'adamw':
    return optax.adamw(schedule, b1=cfg.momentum, weight_decay=cfg.weight_decay, mask=decay_mask)
  raise ValueError(f'unknown optimizer {cfg.optimizer!r} (sgd or adamw)')


@functools.lru_cache(maxsize=8)
def _optimizer(cfg: TrainConfig, total_steps: int, steps_per_epoch: int):
  # One object per setting, so make_train_step's cache (keyed on it) hits on a resume.
  return make_optimizer(cfg, total_steps, steps_per_epoch)


def init_state(model, tx: optax.GradientTransformation, seed: int
               ) -> dict[str, Any]:
  """{'step', 'params', 'batch_stats', 'opt_state'} of a fresh run (no compilation)."""
  variables = jax.tree.map(jnp.asarray, arch_of(model.config).init_train_variables(
      model.config, seed))
  params = variables['params']
  return {'step': jnp.zeros((), jnp.int32), 'params': params,
          'batch_stats': variables['batch_stats'], 'opt_state': tx.init(params)}


@functools.lru_cache(maxsize=8)
def make_train_step(model, tx: optax.GradientTransformation,
                    label_smoothing: float, seed: int) -> Callable:
  """jit(state, uint8 RGB images, labels, mean_bgr) -> (state, {'loss', 'acc'}).

  Pixels become the net's BGR mean-subtracted input on the device, so the host only ships uint8.
  Cached, so a resumed run in the same process (tests) does not compile again.
  """
  base_key = jax.random.PRNGKey(seed + 1)  # not the init key
  num_classes = model.config.num_classes

  def step(state, images, labels, mean_bgr):
    x = data.to_net_input(images, mean_bgr)
    key = jax.random.fold_in(base_key, state['step'])

    def loss_fn(params):
      out, updates = model.apply({'params': params, 'batch_stats': state['batch_stats']}, x,
                                 end='fc8', train=True, mutable=['batch_stats'],
                                 rngs={'dropout': key})
      logits = out.layers['fc8']
      targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
      return optax.softmax_cross_entropy(logits, targets).mean(), (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    deltas, opt_state = tx.update(grads, state['opt_state'], state['params'])
    new = {'step': state['step'] + 1, 'params': optax.apply_updates(state['params'], deltas),
           'batch_stats': updates['batch_stats'], 'opt_state': opt_state}
    return new, {'loss': loss, 'acc': jnp.mean(logits.argmax(-1) == labels)}

  return jax.jit(step, donate_argnums=0)


@functools.lru_cache(maxsize=8)
def make_eval_fn(module) -> Callable:
  """jit(variables, uint8 RGB images, labels, valid count, mean_bgr) -> (sum of loss, correct)."""

  def fn(variables, images, labels, n, mean_bgr):
    logits = module.apply(variables, data.to_net_input(images, mean_bgr), end='fc8').layers['fc8']
    valid = jnp.arange(labels.shape[0]) < n
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return (jnp.sum(jnp.where(valid, loss, 0.0)),
            jnp.sum(jnp.where(valid, logits.argmax(-1) == labels, False)))

  return jax.jit(fn)


def evaluate(module, variables: Mapping[str, Any], dataset: data.ImageSet,
             mean_bgr: np.ndarray, batch_size: int = 500) -> dict[str, float]:
  """{'loss', 'acc'} (plain cross-entropy, top-1) of a module over a whole split."""
  eval_fn = make_eval_fn(module)
  mean = np.asarray(mean_bgr, np.float32)
  batch_size = min(batch_size, len(dataset))
  loss, correct = 0.0, 0
  for x, y, n in data.eval_batches(dataset, batch_size):
    l, c = eval_fn(variables, x, y, n, mean)
    loss, correct = loss + float(l), correct + int(c)
  return {'loss': loss / len(dataset), 'acc': correct / len(dataset)}


def registered_name(config) -> str:
  """The registry name a net of ``config`` is exported under ('prototxt' if it has none)."""
  info = nets.NETS.get(REGISTERED_NAME)
  return REGISTERED_NAME if info is not None and config == small.CIFAR10_CONFIG else 'prototxt'


def export_classifier(path: str, config, params: Mapping[str, Any],
                      mean_bgr: np.ndarray, class_names: list[str] | None,
                      training_info: Mapping[str, Any] | None = None,
                      dropout: float = 0.3) -> str:
  """Writes a deploy-form checkpoint (CHECKPOINTS.md) and returns its path.

  Args:
    path: the checkpoint directory to create.
    config: the architecture.
    params: deploy-form parameters (``export_params`` of the architecture's module).
    mean_bgr: per-channel train mean (B, G, R) in 0-255 units; saved as a (3, H, W) mean.npy.
    class_names: one name per fc8 output.
    training_info: the 'training' metadata entry.
    dropout: recorded in the prototxt's Dropout layers.
  """
  name = registered_name(config)
  arch = arch_of(config)
  prototxt = arch.deploy_prototxt(config, arch.MODEL.__name__ if name == 'prototxt' else name,
                                   dropout)
  netdef = parse_prototxt(prototxt, '<deploy prototxt>')
  _, blob_shapes = convert.shapes(netdef, batch=1)
  # eval_shape returns the blobs dict key-sorted; CHECKPOINTS.md wants forward order.
  forward_order = list(dict.fromkeys(t for l in netdef.layers for t in l.tops))
  size = config.input_size
  mean = data.mean_image(mean_bgr, size, size)
  meta = {
      'net': name, 'kind': 'classifier', 'prototxt': prototxt,
      'inputs': [{'name': 'data', 'shape': [1, 3, size, size]}],
      'channel_order': 'BGR', 'pixel_scale': 255.0, 'input_size': [size, size],
      'mean': {'file': 'mean.npy', 'shape': list(mean.shape),
               'per_channel': [float(v) for v in mean_bgr]},
      'blobs': [{'name': k, 'shape': list(blob_shapes[k])} for k in forward_order],
      'layers': [{'name': l.name, 'type': l.type, 'bottoms': list(l.bottoms),
                  'tops': list(l.tops)} for l in netdef.layers],
      'class_names': list(class_names) if class_names else None, 'generator': None,
      'architecture': config.to_dict(),
      'training': dict(training_info or {}),
  }
  return checkpoint.save(path, params, meta, {'mean': mean})


def train_classifier(train: data.ImageSet, test: data.ImageSet, config,
                     cfg: TrainConfig, workdir: str, out: str | None = None,
                     run_info: Mapping[str, Any] | None = None, stop_at_step: int | None = None,
                     checkpoint_every_secs: float = 300.0, log_every_steps: int = 50,
                     snapshot_every_steps: int = 0, snapshot_dir: str | None = None
                     ) -> dict[str, Any]:
  """Trains (or resumes) a classifier in ``workdir`` and exports it to ``out`` when done.

  Args:
    train, test: the splits (uint8 RGB); the mean is the train split's.
    config: the architecture (``num_classes`` must match the data).
    cfg: optimisation settings.
    workdir: Orbax checkpoints, run_config.json and the curve PNG; a restart resumes here.
    out: where to export the deploy checkpoint at the end (skipped if None or it exists).
    run_info: extra entries of the exported 'training' metadata (data path, command).
    stop_at_step: stop (after saving) at this step, e.g. to split a run or in tests.
    checkpoint_every_secs: save at least this often, besides each epoch end.
    log_every_steps: log the running train loss/accuracy this often.
    snapshot_every_steps, snapshot_dir: with both, a deploy checkpoint of the net at step 0 and
      every ``snapshot_every_steps`` steps goes to ``<snapshot_dir>/step_<step:06d>`` (its
      'training' metadata holds the step, epoch and deploy test accuracy): the net's evolution,
      for visualizing it along the way. A resumed run writes the ones it has not.

  Returns:
    {'step', 'done', 'history', 'test_acc' (deploy net, when done), 'out', 'wall_s'}.
  """
  if config.num_classes != len(train.class_names):
    raise ValueError(f'net has {config.num_classes} outputs, data has '
                     f'{len(train.class_names)} classes')
  if train.images.shape[1:3] != (config.input_size,) * 2:
    raise ValueError(f'images are {train.images.shape[1:3]}, the net expects '
                     f'{config.input_size} px (pass --image_size to resize)')
  t_start = time.time()
  stream = data.BatchStream(train, cfg.batch_size, cfg.seed, cfg.pad, cfg.flip)
  spe = stream.steps_per_epoch
  total = max(1, int(round(cfg.epochs * spe)))
  mean_bgr = data.channel_mean_bgr(train.images)
  training.check_run_config(workdir, {
      'net': config.to_dict(), 'train': dataclasses.asdict(cfg),
      'train_images': len(train), 'test_images': len(test), 'classes': train.class_names,
      'mean_bgr': [round(float(v), 4) for v in mean_bgr], 'data': (run_info or {}).get('data')})
  arch = arch_of(config)
  model = arch.MODEL(config, train_form=True, dropout=cfg.dropout)
  tx = _optimizer(cfg, total, spe)
  wd = training.Workdir(workdir)
  restored = wd.restore(jax.eval_shape(lambda: init_state(model, tx, cfg.seed)))
  history, wall0 = [], 0.0
  if restored is None:
    state = init_state(model, tx, cfg.seed)
    logging.info('new run in %s: %d train / %d test images, %d steps (%d per epoch), '
                 '%d parameters (train form)', workdir, len(train), len(test), total, spe,
                 small.param_count(state['params']))
  else:
    # Uncommitted host-made arrays, like a fresh state's, so the cached step does not recompile.
    state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), restored[0])
    extra = restored[1]
    history, wall0 = list(extra.get('history', [])), float(extra.get('wall_s', 0.0))
    logging.info('resumed %s at step %d (epoch %.2f)', workdir, int(state['step']),
                 int(state['step']) / spe)
  step_fn = make_train_step(model, tx, cfg.label_smoothing, cfg.seed)
  curves = os.path.join(workdir, CURVES_FILE)
  step = int(state['step'])
  end = total if stop_at_step is None else min(total, stop_at_step)

  def wall():
    return wall0 + time.time() - t_start

  def save():
    wd.save(step, state, {'history': history, 'wall_s': wall()})

  def snapshot():
    path = os.path.join(snapshot_dir, f'step_{step:06d}')
    if os.path.exists(path):
      return
    deploy = arch.export_params(config, jax.device_get(state['params']),
                                jax.device_get(state['batch_stats']), model.input_scale_div)
    ev = evaluate(arch.MODEL(config), {'params': deploy}, test, mean_bgr)
    export_classifier(path, config, deploy, mean_bgr, train.class_names,
                      {**(run_info or {}), 'step': step, 'epoch': round(step / spe, 4),
                       'test_accuracy': ev['acc'], 'test_loss': ev['loss'], 'seed': cfg.seed,
                       'config': dataclasses.asdict(cfg),
                       'train_acc': history[-1]['train_acc'] if history else None},
                      cfg.dropout)
    logging.info('snapshot %s: test acc %.4f', path, ev['acc'])

  snapshots = bool(snapshot_every_steps and snapshot_dir)
  if snapshots and step == 0:
    snapshot()
  last_save, t_log = time.time(), time.time()
  log_buf, epoch_buf = [], []
  try:
    while step < end:
      state, metrics = step_fn(state, *stream.batch(step), mean_bgr)  # (images, labels)
      step += 1
      log_buf.append(metrics)
      epoch_buf.append(metrics)
      if snapshots and step % snapshot_every_steps == 0:
        snapshot()
      log_now, epoch_end = training.step_events(step, spe, total, log_every_steps)
      if log_now:
        loss, acc = _means(log_buf)
        logging.info('step %d/%d epoch %.2f: train loss %.4f acc %.4f, %.1f img/s', step, total,
                     step / spe, loss, acc, len(log_buf) * cfg.batch_size / (time.time() - t_log))
        log_buf, t_log = [], time.time()
      if epoch_end:
        train_loss, train_acc = _means(epoch_buf)  # over this epoch (since the resume, if any)
        epoch_buf, t_eval = [], time.time()
        ev = evaluate(model, {'params': state['params'], 'batch_stats': state['batch_stats']},
                      test, mean_bgr)
        history.append({'epoch': round(step / spe, 4), 'step': step, 'train_loss': train_loss,
                        'train_acc': train_acc, 'test_loss': ev['loss'], 'test_acc': ev['acc'],
                        'wall_s': round(wall(), 1)})
        logging.info('epoch %.2f: test loss %.4f acc %.4f (eval %.0f s, wall %.0f s)',
                     step / spe, ev['loss'], ev['acc'], time.time() - t_eval, wall())
        training.plot_curves(history, curves, f'{os.path.basename(workdir)}: {config}')
        save()
        last_save, t_log = time.time(), time.time()
      elif time.time() - last_save > checkpoint_every_secs or step == end:
        save()
        last_save = time.time()
  finally:
    wd.close()
  result = {'step': step, 'done': step >= total, 'history': history, 'wall_s': wall(),
            'out': None, 'test_acc': None}
  if step < total:
    return result
  deploy = arch.export_params(config, jax.device_get(state['params']),
                               jax.device_get(state['batch_stats']), model.input_scale_div)
  ev = evaluate(arch.MODEL(config), {'params': deploy}, test, mean_bgr)
  logging.info('deploy net (BatchNorm folded): test acc %.4f, train-form %.4f',
               ev['acc'], history[-1]['test_acc'] if history else float('nan'))
  result['test_acc'] = ev['acc']
  if out and os.path.exists(out):
    logging.warning('%s exists; not exporting again', out)
  elif out:
    info = {**(run_info or {}), 'epochs': cfg.epochs, 'steps': total,
            'train_images': len(train), 'test_images': len(test),
            'test_accuracy': ev['acc'], 'test_loss': ev['loss'],
            'wall_time_s': round(wall(), 1), 'seed': cfg.seed, 'width': config.width,
            'device': training.device_description(), 'param_count': small.param_count(deploy),
            'config': dataclasses.asdict(cfg), 'history': history}
    result['out'] = export_classifier(out, config, deploy, mean_bgr, train.class_names, info,
                                      cfg.dropout)
    if os.path.exists(curves):
      shutil.copy(curves, os.path.join(out, CURVES_FILE))
    logging.info('exported %s', result['out'])
  return result


def _means(metrics: list[dict[str, jax.Array]]) -> tuple[float, float]:
  """Mean loss and accuracy of a list of per-step metrics (one device-to-host transfer)."""
  m = jax.device_get(metrics)
  return float(np.mean([v['loss'] for v in m])), float(np.mean([v['acc'] for v in m]))
