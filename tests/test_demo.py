"""``make demo``'s synthesis step and the settings search on the committed CIFAR-10 checkpoints.

Both run as subprocesses (their flags share names with other runners) with very few iterations;
the full demo is a benchmark (BUILD_NOTES.md), not a test.
"""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from dgnam_jax.nets import checkpoint
from dgnam_jax.sweeps import configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.join(ROOT, 'checkpoints', 'cifar10')
TINY = os.path.join(ROOT, 'checkpoints', 'tinyimagenet200')


def _run(*args, check=True):
  proc = subprocess.run([sys.executable, '-m', *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=900)
  assert (proc.returncode == 0) == check, proc.stdout + proc.stderr
  return proc.stdout + proc.stderr


def _size(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def test_committed_checkpoints_are_complete_and_small():
  for root in (CIFAR, TINY):
    extra_judges = sorted(d for d in os.listdir(root) if d.startswith('judge_'))
    for sub in ('classifier', 'generator', 'judge', *extra_judges):
      path = os.path.join(root, sub)
      meta = checkpoint.read_metadata(path)
      assert _size(path) <= 50e6, (path, _size(path))
      assert meta['training']['command'] and meta['training']['wall_time_s'] > 0
    gen = checkpoint.read_metadata(os.path.join(root, 'generator'))['generator']
    assert os.path.normpath(os.path.join(root, 'generator', gen['encoder']['checkpoint'])) == \
        os.path.join(root, 'classifier')
    preset = configs.load(os.path.basename(root))
    assert os.path.abspath(preset['generator']) == os.path.join(root, 'generator')
  assert os.path.exists(os.path.join(CIFAR, 'MODEL_CARD.md'))
  with open(os.path.join(TINY, 'MODEL_CARD.md')) as f:  # the card names its own data set
    data_line = next(l for l in f if l.startswith('Data:'))
  assert 'tinyimagenet200_jpeg.npz' in data_line and 'CIFAR-10' not in data_line
  assert _size(os.path.join(ROOT, 'checkpoints')) <= 120e6
  names = checkpoint.read_metadata(os.path.join(TINY, 'classifier'))['class_names']
  assert len(names) == 200 and names[1].startswith('n01629819 European fire salamander')


def test_demo_synthesis_step(tmp_path):
  out = tmp_path / 'demo'
  log = _run('experiments.demo', f'--out={out}', '--iters=3', '--conv5_units=0-1')
  assert 'demo: open' in log
  page = (out / 'index.html').read_text()
  with open(out / 'cifar10' / 'manifest.json') as f:
    rows = json.load(f)['rows']
  assert len(rows) == 20 and {r['class_name'] for r in rows} >= {'airplane', 'truck'}
  assert all(r['iterations'] == 3 for r in rows)
  for r in rows[:2] + rows[-2:]:
    assert f'cifar10/{r["image"]}' in page
    with Image.open(out / 'cifar10' / r['image']) as im:
      assert im.size == (32, 32)
  with open(out / 'cifar10_conv5' / 'manifest.json') as f:
    conv5 = json.load(f)['rows']
  assert [r['unit'] for r in conv5] == [0, 1] and all(r['layer'] == 'conv5' for r in conv5)
  assert (out / 'cifar10' / 'grid.png').exists() and (out / 'cifar10_conv5' / 'grid.png').exists()
  with open(out / 'tinyimagenet200' / 'manifest.json') as f:  # 20 classes spread over 200
    tiny = json.load(f)['rows']
  assert [r['unit'] for r in tiny] == list(range(0, 200, 10))
  assert tiny[0]['class_name'] == 'goldfish' and tiny[0]['wnid'] == 'n01443537'
  assert f'tinyimagenet200/{tiny[-1]["image"]}' in page and 'n01443537' in page
  with Image.open(out / 'tinyimagenet200' / tiny[0]['image']) as im:
    assert im.size == (64, 64)
  # A rerun resumes: nothing is synthesised again and the images are unchanged.
  before = np.asarray(Image.open(out / 'cifar10' / rows[0]['image']))
  _run('experiments.demo', f'--out={out}', '--iters=3', '--conv5_units=0-1')
  np.testing.assert_array_equal(np.asarray(Image.open(out / 'cifar10' / rows[0]['image'])), before)


def test_settings_search_smoke(tmp_path):
  out = tmp_path / 'search'
  log = _run('experiments.search_settings', f'--judge={os.path.join(CIFAR, "judge")}',
             f'--out={out}', '--trials=2', '--seeds=0', '--iters=3', '--iters_choices=2',
             '--pixel_lrs=2')
  with open(out / 'search.json') as f:
    rec = json.load(f)
  assert len(rec['trials']) == 2 and rec['classes'] == 10
  for t in rec['trials'] + rec['pixel']:
    assert 0.0 <= t['top1_photo'] <= 1.0 and 0.0 <= t['top5_original'] <= 1.0
  assert {t['iters'] for t in rec['trials']} <= {2, 3}  # the (shortened) preset or a draw
  assert 'trial' in (out / 'search.md').read_text() and 'pixel ascent' in log
  assert rec['pixel'][0]['iters'] == rec['trials'][0]['iters']  # the best trial's budget
  assert (out / 'pixel_lr2' / 'grid.png').exists() and len(rec['pixel'][0]['dir']) > 0
  with open(out / 'best_settings.json') as f:
    assert json.load(f)['dgnam']['lr'] == rec['trials'][0]['lr']
  # A baseline method's own search: its budget is the preset's iterations, its lr its own.
  out = tmp_path / 'search_tv'
  _run('experiments.search_settings', f'--judge={os.path.join(CIFAR, "judge")}', f'--out={out}',
       '--method=pixel_tv', '--trials=2', '--seeds=0', '--iters=3', '--pixel_lrs=',
       '--units=1,4,7')
  with open(out / 'search.json') as f:
    rec = json.load(f)
  assert rec['classes'] == 3 and rec['units'] == '1,4,7'  # a subset of the preset's classes
  assert {t['iters'] for t in rec['trials']} == {3}  # the same budget for every trial
  assert not any('l2' in t or 'bounds_k' in t for t in rec['trials'])  # no code, no code decay
  assert all('tv=' in t.get('method_args', 'tv=') for t in rec['trials']) and rec['pixel'] == []
  with open(out / 'best_settings.json') as f:
    assert set(json.load(f)) == {'pixel_tv'}
  # A bounds file (a percentile box) replaces the checkpoint's bounds in every trial.
  box = tmp_path / 'box.npy'
  np.save(box, np.full(512, 0.25, np.float32))  # the CIFAR-10 generator's 512-d code
  out = tmp_path / 'search_box'
  _run('experiments.search_settings', f'--judge={os.path.join(CIFAR, "judge")}', f'--out={out}',
       '--trials=1', '--seeds=0', '--iters=3', '--pixel_lrs=', '--units=1', f'--bounds={box}',
       '--method_args=shrink=0.01')
  with open(out / 'trial_00' / 'manifest.json') as f:
    settings = json.load(f)['settings']
  assert settings['bounds']['source'] == 'file' and settings['method_args'] == 'shrink=0.01'
  final = np.load(next((out / 'trial_00' / 'codes').glob('*_final.npy')))
  assert final.max() <= 0.25 and final.min() >= 0.0
  with open(out / 'best_settings.json') as f:
    assert json.load(f)['dgnam']['bounds'] == str(box)  # what the trial was scored under
  assert 'box.npy' in (out / 'search.md').read_text()
  bad = tmp_path / 'search_badbox'
  log = _run('experiments.search_settings', f'--judge={os.path.join(CIFAR, "judge")}',
             f'--out={bad}', '--trials=1', f'--bounds={tmp_path / "missing.npy"}', check=False)
  assert 'does not exist' in log and not bad.exists()


def test_evaluate_preset_smoke(tmp_path):
  """The whole preset evaluation (two methods, one hidden layer) on the committed test subset."""
  npz = os.path.join(ROOT, 'tests', 'fixtures', 'images', 'cifar10_tiny_jpeg.npz')
  report_md = tmp_path / 'report.md'
  sweeps = ['--class_seeds=0-1', '--baseline_seeds=0', '--methods=dgnam,pixel,dgnam_nobounds',
            '--hidden_layers=conv5', '--hidden_units=0-1', '--hidden_seeds=0', '--iters=3']
  # Synthesis alone first (as on an accelerator machine without the dataset) ...
  _run('experiments.evaluate_preset', '--preset=cifar10', f'--out={tmp_path / "eval"}',
       '--noevaluate', *sweeps)
  assert (tmp_path / 'eval' / 'cifar10_dgnam_conv5' / 'manifest.json').exists()
  assert not (tmp_path / 'eval' / 'metrics').exists()
  # ... then the evaluation, which resumes the finished sweeps.
  _run('experiments.evaluate_preset', '--preset=cifar10', f'--data={npz}',
       f'--judge={os.path.join(CIFAR, "judge")}', f'--out={tmp_path / "eval"}',
       f'--report={report_md}', *sweeps)
  with open(tmp_path / 'eval' / 'metrics' / 'metrics.json') as f:
    runs = json.load(f)['runs']
  assert runs['cifar10_dgnam_classes']['judge']['images'] == 20
  assert runs['cifar10_pixel_classes']['judge']['images'] == 10
  assert runs['cifar10_dgnam_conv5']['m1_hidden']['raw']['n'] == 2
  # The ablation is a DGN-AM run with the preset's settings but no code clipping.
  with open(tmp_path / 'eval' / 'cifar10_dgnam_nobounds_classes' / 'manifest.json') as f:
    settings = json.load(f)['settings']
  assert settings['method'] == 'dgnam' and settings['bounds']['source'] == 'none'
  assert runs['cifar10_dgnam_nobounds_classes']['judge']['images'] == 10
  text = report_md.read_text()
  assert 'cifar10_pixel_classes' in text and 'Wall times' in text and 'Fig. S17' in text


def test_evaluate_preset_rejects_an_unknown_method_before_running(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'experiments.evaluate_preset', '--preset=cifar10',
                         '--data=x.npz', f'--judge={os.path.join(CIFAR, "judge")}',
                         f'--out={tmp_path / "e"}', '--methods=dgnam,dgnam_sparkle'],
                        cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode != 0 and 'dgnam_sparkle' in proc.stderr
  assert not (tmp_path / 'e').exists()


def test_evaluate_preset_needs_data_and_judge_to_evaluate(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'experiments.evaluate_preset', '--preset=cifar10',
                         f'--out={tmp_path / "e"}'], cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode != 0 and '--noevaluate' in proc.stderr
  assert not (tmp_path / 'e').exists()


def test_demo_rejects_a_bad_class_count(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'experiments.demo', f'--out={tmp_path / "d"}',
                         '--tiny_classes=300'], cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 1 and '--tiny_classes' in proc.stderr
  assert not (tmp_path / 'd').exists()  # no partial output
