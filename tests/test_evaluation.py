"""The evaluation pass on cases with a known answer."""

import os

import numpy as np
import pytest

from dgnam_jax import data
from dgnam_jax.evaluation import scoring as evaluation
from dgnam_jax.evaluation import judging
from dgnam_jax.nets import NetOutputs


class OneHotJudge:
  """A judge that reads the class off the image (pixel value // 20) and is sure of it."""
  class_names = [str(i) for i in range(10)]

  def logits(self, rgb):
    cls = np.asarray(rgb)[:, 0, 0, 0].astype(int) // 20
    return np.eye(10)[cls]


def _images(classes, seeds):
  out = []
  for c, s in zip(classes, seeds):
    img = np.full((8, 8, 3), 20 * c, np.uint8)
    img[1:, :, :] = (37 * s + 11 * c) % 256  # seeds differ by far more than 20/255
    out.append(img)
  return np.stack(out)


def test_identity_judge_scores_all_and_distinct():
  classes, seeds = [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 0]
  imgs = _images(classes, seeds)
  rendered = {'original': imgs, 'photo': imgs}
  got = evaluation.judge_scores(OneHotJudge(), rendered, classes)
  assert got['top1_original'] == 1.0 and got['top1_photo'] == 1.0
  # The last two images are identical (same class, same seed): one distinct image.
  assert got['distinct_original']['images'] == 5 and got['distinct_photo']['top1'] == 1.0
  assert got['diversity_photo']['per_group'] == {'0': 1.0, '1': 1.0, '2': 0.0}
  wrong = evaluation.judge_scores(OneHotJudge(), rendered, [9, 9, 8, 8, 7, 7])
  assert wrong['top1_original'] == 0.0 and wrong['top5_photo'] == 0.0


def _classify(params, x):
  """A 'classifier' with a logit layer fc8 = the per-channel means and a conv blob."""
  del params
  return NetOutputs(blobs={'conv': x * 2}, layers={'fc8': x.mean(axis=(1, 2)), 'conv': x * 2})


def test_relative_activation_against_the_dataset_maximum():
  rng = np.random.default_rng(0)
  dataset = rng.integers(0, 256, (40, 4, 4, 3)).astype(np.uint8)
  mean = (10.0, 20.0, 30.0)
  rows = [{'layer': 'fc8', 'unit': 1, 'position': None, 'kind': 'unit'},
          {'layer': 'conv', 'unit': 2, 'position': [1, 3], 'kind': 'unit'},
          {'layer': 'conv', 'unit': 0, 'position': None, 'kind': 'channel_mean'}]
  specs = evaluation.unit_specs(rows)
  acts = evaluation.dataset_activations(_classify, None, dataset, mean, specs, batch=16)
  x = data.to_net_input(dataset, mean)
  np.testing.assert_allclose(acts[:, 0], x[..., 1].mean((1, 2)), rtol=1e-5)
  np.testing.assert_allclose(acts[:, 1], 2 * x[:, 1, 3, 2], rtol=1e-5)
  np.testing.assert_allclose(acts[:, 2], 2 * x[..., 0].mean((1, 2)), rtol=1e-5)
  # The dataset's own argmax image, as a "synthetic" image of each row: M1 = 1 (photo: exact
  # uint8, so the quantised protocol agrees).
  best = dataset[acts.argmax(0)]
  rendered = {'raw': data.to_net_input(best, mean), 'photo': best}
  rel = evaluation.relative_activations(_classify, None, rendered, specs, acts.max(0), mean)
  np.testing.assert_allclose(rel['rel_raw'], 1.0, rtol=1e-6)
  np.testing.assert_allclose(rel['rel_photo'], 1.0, rtol=1e-6)


def test_memorization_flags_a_copied_training_image():
  rng = np.random.default_rng(1)
  train = data.ImageSet(rng.integers(0, 256, (60, 8, 8, 3)).astype(np.uint8),
                        np.repeat(np.arange(3), 20), ['a', 'b', 'c'], [])
  photos = rng.integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
  photos[2] = train.images[45]  # class 2's image planted as the class-2 "synthetic"
  codes = lambda rgb, layers: {'rowmeans': rgb.astype(np.float32).mean(axis=(2, 3))}
  res, nearest = evaluation.memorization(photos, np.array([0, 1, 2, 2]), train, codes,
                                         ['rowmeans'])
  assert nearest[2] == 45 and res['min_ratio'] == pytest.approx(0.0)
  assert res['share_below_0.5'] == 0.25
  assert res['rowmeans_min_ratio'] == pytest.approx(0.0) and res['rowmeans_ratio']['n'] == 4


def test_distinct_rows_drops_near_duplicates():
  a = np.zeros((2, 2, 3), np.uint8)
  imgs = np.stack([a, a + 5, a + 100, a + 101])
  np.testing.assert_array_equal(evaluation.distinct_rows(imgs), [0, 2])
  np.testing.assert_array_equal(evaluation.distinct_rows(imgs, [0, 1, 1, 1]), [0, 1, 2])
  assert judging.pairwise_mad(imgs)[0, 1] < 20 / 255


def test_prefill_cache_matches_the_per_sweep_passes():
  """One shared pass fills the cache with what separate passes per sweep compute."""
  rng = np.random.default_rng(2)
  train = data.ImageSet(rng.integers(0, 256, (30, 4, 4, 3)).astype(np.uint8),
                        np.repeat(np.arange(3), 10), ['a', 'b', 'c'], [])
  test = rng.integers(0, 256, (7, 4, 4, 3)).astype(np.uint8)
  everything = data.ImageSet(np.concatenate([train.images, test]), np.zeros(37, int),
                             train.class_names, [])
  mean = (10.0, 20.0, 30.0)
  rows = [{'layer': 'fc8', 'unit': u, 'position': None, 'kind': 'unit'} for u in (0, 2)]
  rows.append({'layer': 'conv', 'unit': 1, 'position': [2, 0], 'kind': 'unit'})
  specs = evaluation.unit_specs(rows)
  cache: dict = {}
  evaluation.prefill_cache(cache, classify=_classify, params=None, mean_bgr=mean,
                           dataset=everything, specs=specs, train=train, memo_classes=[0, 2],
                           memo_layers=['conv'], batch=8)
  acts = evaluation.dataset_activations(_classify, None, everything.images, mean, specs)
  for j, sp in enumerate(specs):
    np.testing.assert_allclose(cache[('acts', sp)], acts[:, j], rtol=1e-6)
  for c in (0, 2):
    want = evaluation.layer_codes(_classify, None, train.images[train.labels == c], mean,
                                  ['conv'])
    np.testing.assert_allclose(cache[('codes', c, ('conv',))]['conv'], want['conv'], rtol=1e-6)
  assert ('codes', 1, ('conv',)) not in cache  # only the classes asked for


def test_methods_grid_spreads_at_most_max_classes(tmp_path, monkeypatch):
  from dgnam_jax.evaluation import runs as eval_runs
  got = {}
  monkeypatch.setattr(eval_runs.images, 'grid',
                      lambda tiles, labels, cols: got.update(tiles=tiles, labels=labels, cols=cols))
  monkeypatch.setattr(eval_runs.images, 'save_image', lambda path, im: path)
  rows = [{'layer': 'fc8', 'unit': u, 'seed': s, 'class_name': f'c{u}'}
          for u in range(45) for s in (0, 1, 2)]
  imgs = np.zeros((len(rows), 8, 8, 3), np.uint8)
  eval_runs.methods_grid(str(tmp_path / 'g.png'), {'p_a_classes': (rows, imgs),
                                                   'p_b_classes': (rows[:30], imgs[:30])})
  units = sorted({int(l.split()[0][1:]) for l in got['labels']})
  assert units == list(range(0, 45, 3))  # 15 evenly spaced classes, not the first 20
  assert len(got['tiles']) == 15 * 2 * 2 and got['cols'] == 2  # seeds 0, 1; two methods
  assert got['tiles'][0].shape == (96, 96, 3)  # 8 px tiles enlarged to ~96 px
  # Run b lacks classes >= 10: blank tiles keep the lines aligned.
  assert got['labels'][-1] == 'c42 s1: b' and got['tiles'][-1].min() == 255
  # Runs of other seeds (a pilot at seed 10) show their own two lowest; other names whole.
  later = [dict(r, seed=r['seed'] + 10) for r in rows]
  eval_runs.methods_grid(str(tmp_path / 'g.png'), {'adam_shrink': (later, imgs)})
  assert got['labels'][0] == 'c0 s10: adam_shrink' and got['labels'][1] == 'c0 s11: adam_shrink'


def test_report_winner_counts_the_worse_convention():
  from experiments import report  # pylint: disable=import-outside-toplevel

  def scores(t1o, t1p, t5o, t5p):
    return {'top1_original': t1o, 'top1_photo': t1p, 'top5_original': t5o, 'top5_photo': t5p}
  # 'a' leads on the photo convention only; under the worse convention 'b' wins top-5.
  line = report._winner({'a': scores(0.1, 0.9, 0.2, 1.0), 'b': scores(0.3, 0.3, 0.5, 0.5)})
  assert 'top-5 `b` (50.0 %)' in line and 'also top-1 (30.0 %)' in line
  line = report._winner({'a': scores(0.4, 0.4, 0.45, 0.45), 'b': scores(0.3, 0.3, 0.5, 0.5)})
  assert 'top-5 `b` (50.0 %)' in line and 'top-1 `a` (40.0 %)' in line


def test_bar_chart_takes_values_below_zero(tmp_path):
  from experiments import report  # pylint: disable=import-outside-toplevel
  path = report.bar_chart(str(tmp_path / 'c.png'), 't', ['a', 'b'],
                          {'m1': [1.2, -0.02], 'top1': [0.5, None]})
  assert os.path.getsize(path) > 100
