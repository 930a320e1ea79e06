"""The small DeePSim-style generator, its trainer (resumable), export, and the bounds runner.

The trainer runs on tests/fixtures/images with a tiny classifier trained here for one epoch; the
runners (``experiments.train_generator``, ``experiments.code_bounds``) run as subprocesses, since
their flags share names with ``experiments.train_classifier``.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dgnam_jax import data, files, load_checkpoint, nets
from dgnam_jax.nets import checkpoint
from dgnam_jax.synthesis import codes
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.nets import small, small_gen
from dgnam_jax.training import classifier, gen_eval, generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NPZ = os.path.join(ROOT, 'tests', 'fixtures', 'images', 'cifar10_tiny_jpeg.npz')
TINY_GEN = small_gen.SmallGenConfig(code_dim=16, fc_widths=(32, 32), start_channels=16,
                                    trunk=(16, 8, 8))
TINY_CFG = generator.GenTrainConfig(epochs=2.0, batch_size=20, seed=3)  # 5 steps per epoch


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """(train, test, classifier checkpoint path) with a 1-epoch tiny classifier."""
  root = tmp_path_factory.mktemp('gen')
  train, test = data.load_dataset(NPZ, str(root / 'cache'))
  cfg = classifier.TrainConfig(epochs=1.0, batch_size=20, seed=1)
  r = classifier.train_classifier(train, test, small.SmallNetConfig(width=0.25, fc_width=16), cfg,
                                  str(root / 'cls_work'), str(root / 'cls'),
                                  checkpoint_every_secs=1e9)
  return train, test, r['out'], root


def _random_params(config, seed=0):
  p = small_gen.init_params(config, seed)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: a + rng.normal(0, 0.01, a.shape).astype(np.float32), p)


@pytest.mark.parametrize('config', [small_gen.CIFAR10_GEN_CONFIG,
                                    small_gen.SmallGenConfig(trunk=(64, 32, 16, 8))])
def test_module_equals_its_prototxt(config):
  params = _random_params(config)
  h = jnp.asarray(np.random.default_rng(1).random((2, config.code_dim)), jnp.float32)
  got = jax.jit(small_gen.SmallDeePSim(config).apply)({'params': params}, h)
  graph = nets.CaffeGraph(parse_prototxt(small_gen.deploy_prototxt(config), 'gen'))
  want = jax.jit(graph.apply)({'params': params}, h)
  side = config.image_size
  assert got.blobs['deconv0'].shape == (2, side, side, 3)
  assert set(got.blobs) == set(want.blobs)
  for name in got.blobs:
    np.testing.assert_array_equal(got.blobs[name], want.blobs[name], err_msg=name)
  # defc* and every trunk layer but deconv0 are leaky (slope 0.3), as in DeePSim.
  assert float(got.blobs['defc7'].min()) < 0 and float(got.layers['defc7'].min()) < 0
  np.testing.assert_allclose(np.minimum(got.layers['defc7'], 0) * 0.3,
                             np.minimum(got.blobs['defc7'], 0), rtol=1e-6)


def test_registered_prototxt_is_current():
  want = small_gen.deploy_prototxt(small_gen.CIFAR10_GEN_CONFIG, 'cifar10_generator')
  assert nets.prototxt_text('cifar10_generator') == want, (
      'regenerate dgnam_jax/nets/prototxt/cifar10_generator.prototxt')
  assert isinstance(nets.net_info('cifar10_generator').factory(), small_gen.SmallDeePSim)


def test_output_scale_folds_into_deconv0():
  params = _random_params(TINY_GEN)
  h = jnp.asarray(np.random.default_rng(2).random((3, 16)), jnp.float32)
  scaled = small_gen.SmallDeePSim(TINY_GEN, output_scale=64.0).apply({'params': params}, h)
  folded = small_gen.SmallDeePSim(TINY_GEN).apply(
      {'params': small_gen.fold_output_scale(params, 64.0)}, h)
  np.testing.assert_allclose(scaled.blobs['deconv0'], folded.blobs['deconv0'], rtol=1e-5,
                             atol=1e-4)
  assert float(jnp.abs(scaled.blobs['deconv0']).max()) > 1.0


def test_resize_conv_trains_as_resize_plus_conv_and_deploys_as_the_same_deconv():
  from dgnam_jax.nets import layers  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32)
  w3 = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
  resized = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  want = layers.conv2d(resized, w3, None, pad=(1, 1))
  got = layers.deconv2d(x, small_gen.resize_conv_kernel(w3), None, stride=(2, 2), pad=(1, 1))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  k_np = small_gen.resize_conv_kernel(np.asarray(w3))
  assert isinstance(k_np, np.ndarray) and k_np.shape == (4, 4, 4, 3)

  config = dataclasses.replace(TINY_GEN, upsample='resize_conv')
  params = _random_params(config)
  assert params['deconv5']['kernel'].shape == (3, 3, 16, 16)  # the training form's 3x3
  h = jnp.asarray(rng.random((2, 16)), jnp.float32)
  train = small_gen.SmallDeePSim(config, output_scale=8.0, train_form=True,
                                 fast_weight_grad=True).apply({'params': params}, h)
  deploy = small_gen.deploy_params(config, params, 8.0)
  assert deploy['deconv5']['kernel'].shape == (4, 4, 16, 16)
  out = small_gen.SmallDeePSim(config).apply({'params': deploy}, h)
  graph = nets.CaffeGraph(parse_prototxt(small_gen.deploy_prototxt(config), 'gen'))
  via_caffe = graph.apply({'params': deploy}, h)
  np.testing.assert_allclose(out.blobs['deconv0'], train.blobs['deconv0'], rtol=1e-4, atol=1e-3)
  np.testing.assert_array_equal(via_caffe.blobs['deconv0'], out.blobs['deconv0'])
  assert 'resize' in small_gen.deploy_prototxt(config)
  assert small_gen.deploy_prototxt(TINY_GEN) == small_gen.deploy_prototxt(
      dataclasses.replace(TINY_GEN, upsample='deconv'))
  assert 'upsample' not in TINY_GEN.to_dict() and config.to_dict()['upsample'] == 'resize_conv'
  with pytest.raises(ValueError, match='upsample must be one of'):
    small_gen.SmallGenConfig(upsample='bilinear')
  # The gradient reaches the 3x3 kernels through the composition.
  g = jax.grad(lambda p: jnp.sum(small_gen.SmallDeePSim(config, train_form=True,
                                                        fast_weight_grad=True).apply(
      {'params': p}, h).blobs['deconv0'] ** 2))(params)
  assert g['deconv5']['kernel'].shape == (3, 3, 16, 16)
  assert float(jnp.abs(g['deconv5']['kernel']).max()) > 0


def test_balance_gates():
  gates = jax.jit(generator.balance_gates)
  on, off = jnp.array(True), jnp.array(False)
  assert [bool(v) for v in gates(0.05, 1.0, on)] == [False, True]  # D winning: stop D
  assert [bool(v) for v in gates(0.3, 1.0, off)] == [False, True]  # hysteresis keeps it off
  assert [bool(v) for v in gates(0.3, 1.0, on)] == [True, True]
  assert [bool(v) for v in gates(0.6, 1.0, off)] == [True, True]  # resume D
  assert [bool(v) for v in gates(20.0, 1.0, on)] == [True, False]  # D losing badly: pause G


def test_code_statistics_match_numpy(tiny):
  _, test, cls, _ = tiny
  module, params, meta = load_checkpoint(cls)
  mean = meta['mean']['per_channel']
  stats = gen_eval.code_statistics(module, params, test, mean, batch_size=16)  # ragged batches
  x = data.to_net_input(test.images, mean)
  codes_ = np.asarray(module.apply({'params': params}, x).blobs['fc6'], np.float64)
  assert codes_.min() == 0.0  # post-ReLU
  np.testing.assert_allclose(stats[0], codes_.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats[1], codes_.std(0), rtol=1e-4, atol=1e-5)


def test_trainer_resumes_exactly_and_exports(tiny):
  train, test, cls, root = tiny
  work, out = str(root / 'g_work'), str(root / 'g_out')
  first = generator.train_generator(train, test, cls, TINY_GEN, TINY_CFG, work, out,
                                    stop_at_step=3, checkpoint_every_secs=1e9)
  assert first['step'] == 3 and not first['done'] and not os.path.exists(out)
  res = generator.train_generator(train, test, cls, TINY_GEN, TINY_CFG, work, out,
                                  checkpoint_every_secs=1e9)
  assert res['done'] and res['step'] == 10 and len(res['history']) == 2
  ref = generator.train_generator(train, test, cls, TINY_GEN, TINY_CFG, str(root / 'g_ref'),
                                  None, checkpoint_every_secs=1e9)
  assert ref['metrics']['psnr_db'] == pytest.approx(res['metrics']['psnr_db'], abs=1e-3)
  for name in ('reconstructions.png', 'training_curves.png'):
    assert os.path.getsize(os.path.join(work, name)) > 1000
    assert os.path.getsize(os.path.join(out, name)) > 1000
  with pytest.raises(ValueError, match='seed'):
    generator.train_generator(train, test, cls, TINY_GEN,
                              generator.GenTrainConfig(epochs=2.0, batch_size=20, seed=4), work,
                              None)

  module, params, meta = load_checkpoint(out)
  assert isinstance(module, nets.CaffeGraph) and meta['kind'] == 'generator'
  g = meta['generator']
  assert g['code_shape'] == [16] and g['bounds_kind'] == 'mean_std' and g['bounds_k'] == 3.0
  assert os.path.normpath(os.path.join(out, g['encoder']['checkpoint'])) == os.path.normpath(cls)
  stats = checkpoint.load_array(out, 'bounds')
  assert stats.shape == (2, 16) and float(stats.min()) >= 0.0
  upper = codes.generator_bounds(out, meta, k=3.0)
  np.testing.assert_allclose(upper, stats[0] + 3 * stats[1], rtol=1e-6)
  t = meta['training']
  assert t['steps'] == 10 and np.isfinite(t['test_psnr_db']) and t['test_code_rel_err'] >= 0
  # The exported (folded) net reproduces what the trainer scored.
  enc, enc_params, enc_meta = load_checkpoint(cls)
  again = gen_eval.reconstruction_metrics(enc, enc_params, module, params, test,
                                          enc_meta['mean']['per_channel'])
  assert again['psnr_db'] == pytest.approx(t['test_psnr_db'], abs=1e-3)
  assert again['psnr_image_mean_db'] == pytest.approx(t['test_psnr_image_mean_db'], abs=1e-3)
  # Both PSNRs from the photos themselves (per-image MSE in NumPy).
  mean = np.asarray(enc_meta['mean']['per_channel'], np.float32)
  fake = module.apply({'params': params},
                      enc.apply({'params': enc_params}, data.to_net_input(test.images, mean))
                      .blobs['fc6']).blobs['deconv0']
  err = np.clip(np.asarray(fake) + mean, 0, 255) - test.images[..., ::-1].astype(np.float32)
  mse = np.mean(np.square(err, dtype=np.float64), axis=(1, 2, 3))
  assert again['psnr_db'] == pytest.approx(10 * np.log10(255 ** 2 / mse.mean()), abs=1e-3)
  assert again['psnr_image_mean_db'] == pytest.approx(
      np.mean(10 * np.log10(255 ** 2 / mse)), abs=1e-3)
  assert again['psnr_image_mean_db'] > again['psnr_db']  # Jensen: the images' errors differ

  # A second stage starts from the first one's G (here exported before any step of its own).
  stage2 = str(root / 'g_stage2')
  res2 = generator.train_generator(
      train, test, cls, TINY_GEN, dataclasses.replace(TINY_CFG, w_adv=0.0, lr=1e-4),
      str(root / 'g_work2'), stage2, stop_at_step=0, export_partial=True, init_from=work,
      checkpoint_every_secs=1e9)
  assert res2['out'] == stage2 and not res2['done']
  _, params2, meta2 = load_checkpoint(stage2)
  jax.tree.map(np.testing.assert_array_equal, params2, params)
  assert meta2['training']['init_from'] == files.relative_path(work)
  # Stages add up (the first stage's wall time as of its last save, a little under its export's).
  assert meta2['training']['wall_time_s'] >= 0.8 * t['wall_time_s']
  # The same stage from a light .npz of G and D (what travels to another machine).
  light = str(root / 'stage1.npz')
  generator.save_stage(work, light)
  stage3 = str(root / 'g_stage3')
  generator.train_generator(
      train, test, cls, TINY_GEN, dataclasses.replace(TINY_CFG, w_adv=0.0, lr=1e-4),
      str(root / 'g_work4'), stage3, stop_at_step=0, export_partial=True, init_from=light,
      checkpoint_every_secs=1e9)
  jax.tree.map(np.testing.assert_array_equal, load_checkpoint(stage3)[1], params)
  generator.save_stage(work, light, g_dtype='float16')  # rounded G: close, not equal
  with np.load(light) as f:
    assert all(f[k].dtype == np.float16 for k in f.files if k.startswith('g/'))
  with pytest.raises(ValueError, match='init_from'):
    generator.train_generator(train, test, cls, TINY_GEN, TINY_CFG, str(root / 'g_work3'), None,
                              init_from=str(root / 'nowhere'))


def _run(module, *args):
  proc = subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  return proc.returncode, proc.stdout + proc.stderr


def test_runners(tiny):
  _, _, cls, root = tiny
  out = str(root / 'runner_out')
  rc, log = _run('experiments.train_generator', f'--data={NPZ}', f'--classifier={cls}',
                 f'--workdir={root / "runner_work"}', f'--out={out}',
                 f'--cache_dir={root / "cache"}', '--epochs=1', '--batch_size=25',
                 '--fc_widths=32,32', '--start_channels=16', '--trunk=8,8,8', '--w_adv=0.1')
  assert rc == 0, log
  assert 'held-out PSNR' in (root / 'runner_work' / 'train.log').read_text()
  meta = checkpoint.read_metadata(out)
  assert meta['net'] == 'prototxt' and meta['training']['config']['w_adv'] == 0.1
  before = checkpoint.load_array(out, 'bounds')

  rc, log = _run('experiments.code_bounds', f'--generator={out}', f'--data={NPZ}',
                 '--split=train', f'--cache_dir={root / "cache"}')
  assert rc == 0, log
  after = checkpoint.load_array(out, 'bounds')
  assert after.shape == before.shape and not np.array_equal(after, before)  # other images
  with open(os.path.join(out, 'dgnam.json')) as f:
    assert 'train images' in json.load(f)['generator']['bounds_from']
  rc, log = _run('experiments.code_bounds', f'--generator={cls}', f'--data={NPZ}')
  assert rc != 0 and 'not a generator' in log
  # A percentile box: an upper-bounds file of the real codes' per-unit percentile.
  p90 = root / 'p90.npy'
  rc, log = _run('experiments.code_bounds', f'--generator={out}', f'--data={NPZ}',
                 f'--cache_dir={root / "cache"}', '--percentile=90', f'--out_file={p90}')
  assert rc == 0, log
  enc, enc_params, enc_meta = checkpoint.load_checkpoint(cls)
  test = data.load_split(NPZ, 'test', str(root / 'cache'))
  codes = gen_eval.encode_codes(enc, enc_params, test, enc_meta['mean']['per_channel'])
  np.testing.assert_allclose(np.load(p90), np.percentile(codes, 90, axis=0), rtol=1e-6)
  assert np.array_equal(checkpoint.load_array(out, 'bounds'), after)  # checkpoint unchanged
  rc, log = _run('experiments.code_bounds', f'--generator={out}', f'--data={NPZ}',
                 '--percentile=90')
  assert rc != 0 and '--percentile and --out_file go together' in log

  scores, grid = root / 'scores.json', root / 'recon.png'
  rc, log = _run('experiments.score_generator', f'--generator={out}', f'--data={NPZ}',
                 f'--cache_dir={root / "cache"}', f'--json={scores}', f'--grid={grid}')
  assert rc == 0, log
  ev = json.loads(scores.read_text())
  assert ev['psnr_db'] == pytest.approx(meta['training']['test_psnr_db'], abs=1e-3)
  assert ev['psnr_image_mean_db'] > ev['psnr_db'] and f'{ev["psnr_db"]:.2f} dB pooled' in log
  assert grid.stat().st_size > 1000
  bad = root / 'bad.json'
  rc, log = _run('experiments.score_generator', f'--generator={cls}', f'--data={NPZ}',
                 f'--json={bad}')
  assert rc != 0 and f'{cls} is not a generator checkpoint' in log and not bad.exists()


def test_evaluate_and_report_runners(tiny, tmp_path):
  """synthesize -> evaluate -> report on the tiny pair (the classifier doubles as the judge)."""
  train, test, cls, root = tiny
  gen = str(root / 'g_eval')
  generator.train_generator(train, test, cls, TINY_GEN, generator.GenTrainConfig(
      epochs=1.0, batch_size=25, seed=5), str(root / 'g_eval_work'), gen,
                            checkpoint_every_secs=1e9)
  syn = tmp_path / 'syn'
  rc, log = _run('experiments.synthesize', f'--generator={gen}', f'--classifier={cls}',
                 '--units=0-2', '--seeds=0,1', '--iters=2', f'--out={syn}')
  assert rc == 0, log
  pix = tmp_path / 'pix'  # a baseline run beside it: seed 1 only, so the methods grid has gaps
  rc, log = _run('experiments.synthesize', '--method=pixel_tv', f'--classifier={cls}',
                 '--units=0-2', '--seeds=1', '--iters=2', f'--out={pix}')
  assert rc == 0, log
  twin = tmp_path / 'judge_twin'  # a further judge: the same net, so the same verdicts
  shutil.copytree(cls, twin)
  rc, log = _run('experiments.evaluate', f'--runs={syn},{pix}', f'--data={NPZ}', f'--judge={cls}',
                 f'--generator={gen}', f'--classifier={cls}', f'--out={tmp_path / "eval"}',
                 f'--cache_dir={root / "cache"}', '--subset_budget=10', f'--extra_judges={twin}')
  assert rc == 0, log
  with open(tmp_path / 'eval' / 'metrics.json') as f:
    m = json.load(f)['runs']['syn']
  assert m['rows'] == 6 and m['judge']['images'] == 6 and m['m1_output']['raw']['n'] == 6
  assert m['extra_judges']['judge_twin'] == m['judge']
  rc, log = _run('experiments.evaluate', f'--runs={syn}', f'--data={NPZ}', f'--judge={cls}',
                 f'--generator={gen}', f'--classifier={cls}', f'--out={tmp_path / "eval2"}',
                 f'--extra_judges={twin},{tmp_path / "x" / "judge_twin"}')
  assert rc != 0 and 'distinct folder names' in log
  assert not (tmp_path / 'eval2' / 'metrics.json').exists()
  assert m['kid_fid']['photo']['n_real'] == 15  # the 5 test images of each of 3 classes
  # Each run is shown through the generator it was made with (runs of several generators can
  # share one evaluation): a copy is the same net, another net falls back to the recorded one.
  from dgnam_jax.evaluation import runs as runs_lib  # pylint: disable=import-outside-toplevel
  copy, other = tmp_path / 'gen_copy', tmp_path / 'gen_other'
  shutil.copytree(gen, copy)
  shutil.copytree(gen, other)
  with open(other / 'dgnam.json', 'a') as f:  # metadata only: still the same net
    f.write('\n')
  assert runs_lib.run_generator(str(syn), str(other)) == str(other)
  leaf = next(p for p in sorted((other / 'params').rglob('*')) if p.is_file())
  leaf.write_bytes(leaf.read_bytes() + b'\0')  # other parameters: another net
  assert runs_lib.run_generator(str(syn), str(copy)) == str(copy)
  assert os.path.samefile(runs_lib.run_generator(str(syn), str(other)), gen)
  assert runs_lib.run_generator(str(pix), str(other)) == str(other)  # no generator
  shutil.move(gen, str(gen) + '_moved')
  try:
    with pytest.raises(ValueError, match='neither --generator nor found with the same parameters'):
      runs_lib.run_generator(str(syn), str(other))
  finally:
    shutil.move(str(gen) + '_moved', gen)
  c = m['checkerboard']  # 32 px images: a 4 x 4 map upsampled 8 times
  assert c['upsampling'] == 8 and c['real'] > 0
  assert c['photo']['ratio_to_real'] == pytest.approx(c['photo']['energy'] / c['real'])
  assert 'M1' in (syn / 'index.html').read_text()  # the gallery was annotated
  with Image.open(tmp_path / 'eval' / 'methods_grid.png') as im:
    tile = 3 * 32  # methods_grid enlarges 3x
    assert 2 * tile < im.width < 3 * tile  # 2 method columns
    assert im.height > 6 * tile  # 6 (class, seed) lines: seed 0 of pix is a blank tile
  rc, log = _run('experiments.report', f'--metrics={tmp_path / "eval" / "metrics.json"}',
                 f'--out={tmp_path / "r" / "tiny.md"}', '--title=tiny')
  assert rc == 0, log
  text = (tmp_path / 'r' / 'tiny.md').read_text()
  assert '| syn | 6 |' in text and '| pix | 3 |' in text
  assert f'{c["photo"]["energy"]:.2f} ({c["photo"]["ratio_to_real"]:.2f}x)' in text
  assert 'For scale: the judge classifies' in text  # its accuracy on real images, from metadata
  assert '**Winner under this judge**' in text and "the judge's pool5 features" in text
  assert 'further judge `judge_twin`' in text and 'For scale: `judge_twin` classifies' in text
  assert (tmp_path / 'r' / 'tiny_figures' / 'headline.png').exists()
  assert (tmp_path / 'r' / 'tiny_figures' / 'methods_grid.png').exists() and 'Fig. S17' in text

  # The model card of a folder like checkpoints/cifar10/, with a second judge judge_<name>/.
  card_dir = tmp_path / 'card'
  for src, sub in ((cls, 'classifier'), (gen, 'generator'), (cls, 'judge'),
                   (cls, 'judge_caffenet')):
    shutil.copytree(src, card_dir / sub)
  rc, log = _run('experiments.model_card', f'--dir={card_dir}', '--title=tiny card')
  assert rc == 0, log
  card = (card_dir / 'MODEL_CARD.md').read_text()
  assert card.count('**Test top-1 accuracy:') == 3 and 'Second judge `judge_caffenet`' in card
  t = checkpoint.read_metadata(gen)['training']
  assert f'PSNR: {t["test_psnr_db"]:.2f} dB' in card
  assert f'per-image PSNRs is {t["test_psnr_image_mean_db"]:.2f} dB' in card
  assert card.count('| `judge') == 2  # both judges in the files table


def test_feature_cache_is_resumable_and_matches_a_forward_pass(tiny, tmp_path):
  from dgnam_jax.nets import forward  # pylint: disable=import-outside-toplevel
  from dgnam_jax.training import features  # pylint: disable=import-outside-toplevel
  train, test, cls, root = tiny
  out = str(tmp_path / 'feats')
  m = features.encode_dataset(cls, NPZ, out, ['fc6', 'conv3'], cells=2, splits=('test',),
                              chunk=7, cache_dir=str(root / 'cache'))
  assert m['files']['test']['images'] == len(test) and len(m['files']['test']['chunks']) > 1
  fc6, labels = features.load_features(out, 'test', 'fc6')
  conv3, _ = features.load_features(out, 'test', 'conv3')
  np.testing.assert_array_equal(labels, test.labels)
  # The blobs after the whole forward: in-place ReLUs have run (the generator code convention).
  want = {k: np.maximum(v, 0) for k, v in forward.forward_rgb(cls, test.images).items()}
  np.testing.assert_allclose(fc6, want['fc6'], rtol=2e-3, atol=2e-3)  # stored as float16
  c = want['conv3']  # (N, H, W, C): 2 x 2 cells of near-equal slices, (y, x, channel) order
  h, w = c.shape[1:3]
  cell = c[:, :-(-h // 2), :-(-w // 2)].mean(axis=(1, 2))
  np.testing.assert_allclose(conv3[:, :c.shape[3]], cell, rtol=2e-3, atol=2e-3)
  assert conv3.shape == (len(test), 4 * c.shape[3])
  # A rerun skips finished chunks; a lost chunk is recomputed identically.
  first = sorted(os.listdir(out))
  lost = os.path.join(out, m['files']['test']['chunks'][1])
  os.remove(lost)
  features.encode_dataset(cls, NPZ, out, ['fc6', 'conv3'], cells=2, splits=('test',), chunk=7,
                          cache_dir=str(root / 'cache'))
  assert sorted(os.listdir(out)) == first
  np.testing.assert_array_equal(features.load_features(out, 'test', 'fc6')[0], fc6)
  with pytest.raises(ValueError, match='other settings'):
    features.encode_dataset(cls, NPZ, out, ['fc6'], cells=2, splits=('test',), chunk=7)
  with pytest.raises(ValueError, match='no output'):
    features.encode_dataset(cls, NPZ, str(tmp_path / 'x'), ['nope'])
  with pytest.raises(ValueError, match="split must be 'train' or 'test', not 'val'"):
    features.encode_dataset(cls, NPZ, str(tmp_path / 'y'), ['fc6'], splits=('test', 'val'))
  assert not os.path.exists(tmp_path / 'x') and not os.path.exists(tmp_path / 'y')
  with pytest.raises(ValueError, match="no 'train' features"):
    features.load_features(out, 'train', 'fc6')
  with pytest.raises(ValueError, match='cannot pool'):
    features.pooling_matrix(3, 4)
  # A pilot's cache of every 3rd train image: the codes of exactly those images.
  every = str(tmp_path / 'every3')
  features.encode_dataset(cls, NPZ, every, ['fc6'], splits=('train', 'test'), chunk=40,
                          cache_dir=str(root / 'cache'), train_every=3)
  sub = features.cached_codes(every, 'fc6')
  full_train, train_labels = features.load_features(every, 'train', 'fc6')
  assert sub.train_every == 3 and sub.source['train_every'] == 3
  picked = sub.train_subset(train)
  assert len(picked) == len(sub.train) == -(-len(train) // 3)
  np.testing.assert_array_equal(picked.images, train.images[::3])
  np.testing.assert_array_equal(train_labels, train.labels[::3])
  np.testing.assert_allclose(full_train, np.maximum(forward.forward_rgb(
      cls, picked.images)['fc6'], 0), rtol=2e-3, atol=2e-3)
  with pytest.raises(ValueError, match='train_every'):
    features.encode_dataset(cls, NPZ, str(tmp_path / 'z'), ['fc6'], train_every=0)


def test_trainer_on_cached_codes_with_resize_conv(tiny, tmp_path):
  """G inverts another net's cached layer (here the classifier's own fc6 from a feature cache,
  so the numbers can be checked), trained as resize + conv, and exports its encoder and layer."""
  from dgnam_jax.training import features  # pylint: disable=import-outside-toplevel
  train, test, cls, root = tiny
  feats = str(tmp_path / 'feats')
  features.encode_dataset(cls, NPZ, feats, ['fc6', 'fc8'], cells=1, chunk=40,
                          cache_dir=str(root / 'cache'))
  cached = features.cached_codes(feats, 'fc6')
  assert cached.dim == 16 and cached.encoder == files.relative_path(cls)
  config = dataclasses.replace(TINY_GEN, upsample='resize_conv')
  cfg = dataclasses.replace(TINY_CFG, flip=False)
  out = str(tmp_path / 'g_out')
  res = generator.train_generator(train, test, cls, config, cfg, str(tmp_path / 'work'), out,
                                  checkpoint_every_secs=1e9, codes=cached)
  assert res['done'] and res['metrics']['code_rel_err'] is None
  module, params, meta = load_checkpoint(out)
  assert params['deconv5']['kernel'].shape[:2] == (4, 4)  # deployed as the Caffe deconv
  g = meta['generator']
  assert g['code_layer'] == 'fc6' and g['encoder']['blob'] == 'fc6'
  assert g['encoder']['features']['cells'] == 1  # pooled cached features, not the raw blob
  assert meta['training']['comparator'] == files.relative_path(cls)
  np.testing.assert_allclose(checkpoint.load_array(out, 'bounds')[0], cached.test.mean(0),
                             rtol=1e-5, atol=1e-6)
  # The deploy net from the cached codes scores what the trainer recorded.
  again = gen_eval.decode_metrics(module, params, test, cached.test,
                                  meta['mean']['per_channel'])
  assert again['psnr_db'] == pytest.approx(meta['training']['test_psnr_db'], abs=1e-3)
  with pytest.raises(ValueError, match='noflip'):
    generator.train_generator(train, test, cls, config, TINY_CFG, str(tmp_path / 'w2'), None,
                              codes=cached)
  with pytest.raises(ValueError, match='units'):
    generator.train_generator(train, test, cls, dataclasses.replace(config, code_dim=8), cfg,
                              str(tmp_path / 'w3'), None, codes=cached)
  # Its percentile box comes from the feature cache it was trained on.
  p90 = tmp_path / 'p90.npy'
  rc, log = _run('experiments.code_bounds', f'--generator={out}', f'--codes={feats}',
                 '--percentile=90', f'--out_file={p90}')
  assert rc == 0, log
  np.testing.assert_allclose(np.load(p90), np.percentile(cached.test, 90, axis=0), rtol=1e-6)
  rc, log = _run('experiments.code_bounds', f'--generator={out}', f'--data={NPZ}',
                 '--percentile=90', f'--out_file={tmp_path / "p90b.npy"}')
  assert rc != 0 and 'pass --codes=DIR' in log and not (tmp_path / 'p90b.npy').exists()
  # Signed codes (logits here; a real net's block output in use): the box is mean -/+ k std.
  signed = features.cached_codes(feats, 'fc8')
  assert signed.signed and not cached.signed
  out8 = str(tmp_path / 'g8')
  generator.train_generator(train, test, cls, dataclasses.replace(config, code_dim=signed.dim),
                            cfg, str(tmp_path / 'w8'), out8, checkpoint_every_secs=1e9,
                            codes=signed)
  meta8 = checkpoint.read_metadata(out8)
  assert meta8['generator']['code_signed'] and not g.get('code_signed')
  stats = checkpoint.load_array(out8, 'bounds')
  lower, upper = codes.generator_box(out8, meta8, k=2.0)
  np.testing.assert_allclose(lower, stats[0] - 2 * stats[1], rtol=1e-6)
  np.testing.assert_allclose(upper, stats[0] + 2 * stats[1], rtol=1e-6)
  assert lower.min() < 0
  lower_fc6, _ = codes.generator_box(out, meta, k=2.0)
  assert not lower_fc6.any()  # post-ReLU codes keep DGN-AM's [0, upper]
  # A sweep on the signed generator clips to that box.
  from dgnam_jax.sweeps import plan as plan_lib  # pylint: disable=import-outside-toplevel
  p = plan_lib.plan_sweep(plan_lib.SweepConfig(generator=out8, classifier=cls, units='0,1',
                                               out=str(tmp_path / 's8'), bounds_k=2.0))
  np.testing.assert_allclose(p.lower.reshape(-1), lower.reshape(-1), rtol=1e-6)
  assert 'lower_sha256' in p.settings['bounds']


def test_comparator_features_and_training_with_one(tiny, tmp_path):
  """A second net's feature loss: its features of Caffe-space images equal a plain forward of
  the same pictures resized to its size; a run records it and refuses another on resume."""
  from dgnam_jax.nets.pipeline import rgb_to_input  # pylint: disable=import-outside-toplevel
  from dgnam_jax.training import comparator  # pylint: disable=import-outside-toplevel
  train, test, cls, _ = tiny
  with pytest.raises(ValueError, match='cannot take 48 px'):  # a Caffe graph: fixed input
    comparator.load_comparator(cls, ['conv1'], 48)
  comp, comp_params, desc = comparator.load_comparator(cls, ['conv3', 'conv1'], 32)
  assert comp.layers == ('conv1', 'conv3') and desc['size'] == 32  # forward order
  module, params, meta = load_checkpoint(cls)
  mean = np.asarray(meta['mean']['per_channel'], np.float32)
  rgb = test.images[:4]
  got = comp.features(comp_params, data.to_net_input(rgb, mean), mean)
  want = module.apply({'params': params}, rgb_to_input(rgb, comp.space), end='conv3').blobs
  for name in comp.layers:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-3)
  with pytest.raises(ValueError, match=r"no output\(s\) \['nope'\]"):
    comparator.load_comparator(cls, ['nope'], 32)

  cfg = dataclasses.replace(TINY_CFG, epochs=1.0, w_comp=1.0)
  out = str(tmp_path / 'out')
  res = generator.train_generator(train, test, cls, TINY_GEN, cfg, str(tmp_path / 'work'), out,
                                  checkpoint_every_secs=1e9, comparator=(comp, comp_params, desc))
  assert res['done'] and res['history'][-1]['comp'] > 0
  assert checkpoint.read_metadata(out)['training']['comparator_features']['layers'] == [
      'conv1', 'conv3']
  other = comparator.load_comparator(cls, ['conv1'], 32)
  with pytest.raises(ValueError, match='comparator'):  # the run's identity
    generator.train_generator(train, test, cls, TINY_GEN, cfg, str(tmp_path / 'work'), None,
                              comparator=other)
  with pytest.raises(ValueError, match='w_comp'):
    generator.train_generator(train, test, cls, TINY_GEN, TINY_CFG, str(tmp_path / 'w2'), None,
                              comparator=other)
