"""Section 2: hidden units at their receptive field (Figs. S14-S16, S23).

For each layer, a few units (conv layers: the channel at the centre of its map) are synthesized
with DGN-AM; each image is cropped to the unit's receptive field
(:mod:`dgnam_jax.nets.receptive`) and shown beside the 9 real image patches that drive the
channel most (each image's best position, cropped to that position's field). M1 per layer: the
unit's activation on its synthetic image over its maximum over the dataset's images, at the
same position (the reports' definition).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from dgnam_jax import data
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.evaluation import scoring
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets.receptive import receptive_fields
from dgnam_jax.sweeps import configs
from experiments.paper import common

TILE = 48  # px of each crop in the figures


def channel_peaks(classify, params, rgb: np.ndarray, mean_bgr, layer: str, channels,
                  batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """Per image and channel: the maximum of ``layer`` over positions and where it is (flat
  y * W + x); (N, C) each. For a flat layer the value itself and position 0."""
  chans = jnp.asarray(np.asarray(channels, np.int32))

  @jax.jit
  def peaks(p, x, mean):
    v = classify(p, data.to_net_input(x, mean)).layers[layer][..., chans]
    if v.ndim == 2:
      return v, jnp.zeros(v.shape, jnp.int32)
    flat = v.reshape(v.shape[0], -1, v.shape[-1])
    return flat.max(axis=1), flat.argmax(axis=1).astype(jnp.int32)

  mean = jnp.asarray(mean_bgr, jnp.float32)
  vals, pos = zip(*[jax.device_get(peaks(params, rgb[i:i + batch], mean))
                    for i in range(0, len(rgb), batch)])
  return np.concatenate(vals), np.concatenate(pos)


def _crop(img: np.ndarray, box) -> np.ndarray:
  top, bottom, left, right = box
  return np.asarray(Image.fromarray(img[top:bottom, left:right]).resize((TILE, TILE),
                                                                         Image.NEAREST))


def _layer(cfg, ctx, layer, fields, everything, settings) -> dict:
  units = list(cfg.units)
  r = ctx.sweep(layer, cfg.preset, layer=layer, units=','.join(map(str, units)), **settings)
  config = r['config']
  pipe, _, clf_params, meta = ctx.pair(config.generator, config.classifier)
  mean = meta['mean']['per_channel']
  specs = scoring.unit_specs(r['rows'], output_layer='fc8')
  best = scoring.dataset_activations(pipe.classify, clf_params, everything.images, mean, specs)
  m1 = scoring.relative_activations(pipe.classify, clf_params, r, specs, best.max(0),
                                    mean)['rel_raw']
  vals, pos = channel_peaks(pipe.classify, clf_params, everything.images, mean, layer, units)
  field = fields[layer]
  size = everything.images.shape[1:3]
  blob = next(b['shape'] for b in meta['blobs'] if b['name'] == layer)
  width = blob[3] if len(blob) == 4 else 1
  tiles, labels = [], []
  for i, row in enumerate(r['rows']):
    j = units.index(int(row['unit']))
    y, x = row.get('position') or (0, 0)
    box = field.box(y, x, size) if field else (0, size[0], 0, size[1])
    tiles += [_crop(r['photo'][i], (0, size[0], 0, size[1])), _crop(r['photo'][i], box)]
    labels += [f'{layer} {row["unit"]} s{row["seed"]}', f'M1 {m1[i]:.2f}']
    for k in np.argsort(-vals[:, j], kind='stable')[:9]:
      py, px = divmod(int(pos[k, j]), width)
      tiles.append(_crop(everything.images[k], field.box(py, px, size) if field
                         else (0, size[0], 0, size[1])))
      labels.append(f'{vals[k, j]:.1f}')
  common.save_grid(ctx, f'{layer}.png', tiles, labels, cols=11)
  rf = f'{field.size[0]} px' if field else 'whole image'
  return {'m1_median': float(np.nanmedian(m1)), 'm1_share_above_1': float(np.mean(m1 > 1)),
          'units': units, 'receptive_field': rf, 'images': len(m1)}


def run(cfg, ctx: common.Context) -> dict:
  settings = {'seeds': cfg.seeds, **({'iters': cfg.iters} if cfg.get('iters') else {})}
  classifier = configs.load(cfg.preset)['classifier']  # the net's layers, before any sweep
  meta = checkpoint.read_metadata(classifier)
  fields = receptive_fields(parse_prototxt(meta['prototxt'], 'classifier'))
  train, test = ctx.dataset(cfg.data, cfg.get('cache_dir'))
  everything = data.train_then_test(train, test)
  layers = {l: _layer(cfg, ctx, l, fields, everything, settings) for l in cfg.layers}
  return {'layers': layers, 'classifier': classifier, 'seeds': list(cfg.seeds),
          'dataset_images': len(everything)}


def verdict(res: dict) -> str:
  above = [v['m1_median'] >= 1 for v in res['layers'].values()]
  return 'holds' if all(above) else 'partly' if sum(above) >= len(above) / 2 else \
      'does not hold'


def describe(res: dict, link) -> str:
  rows = [[l, v['receptive_field'], ', '.join(map(str, v['units'])), f'{v["m1_median"]:.2f}',
           common.pct(v['m1_share_above_1'])] for l, v in res['layers'].items()]
  figs = '\n\n'.join(f'*{l}*: per unit, the synthetic image, its crop to the receptive field, '
                     f'then the 9 real patches that drive the channel most (their activation '
                     f'below)\n\n![{l}]({link(f"{l}.png")})' for l in res['layers'])
  return (f'`{res["classifier"]}`, seeds {common.span(res["seeds"])}; real patches from its '
          f'{res["dataset_images"]} train and test images.\n\n'
          + common.table(['layer', 'receptive field', 'units', 'M1 median', 'M1 > 1'], rows)
          + '\n\n' + figs)


SECTION = common.Section(
    number=2, name='receptive_fields', title='Hidden units at their receptive field',
    figures='Figs. S14-S16, S23',
    claim='DGN-AM also visualizes hidden units: cropped to the unit\'s receptive field, its '
          'image shows what the real patches that drive the unit most show, and drives the '
          'unit harder than any of them.',
    rule='Holds if in every layer the median M1 (activation on the synthetic image over the '
         'unit\'s maximum over all the dataset\'s images, same position) is >= 1; partly if in '
         'at least half of the layers; does not hold otherwise. The crops beside the real '
         'patches are shown for the reader to judge the resemblance.',
    run=run, describe=describe, verdict=verdict)
