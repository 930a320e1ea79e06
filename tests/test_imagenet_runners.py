"""The real-ImageNet runners: class splits, batch choice, and (slow) the demo end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dgnam_jax.nets import imagenet
from dgnam_jax.synthesis.batching import least_padding_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATOR = os.path.join(ROOT, 'checkpoints', 'tinyimagenet200', 'generator')


def test_split_units_spreads_seen_and_unseen_classes():
  wnids = imagenet.encoder_wnids(GENERATOR)
  assert len(wnids) == 200
  seen, unseen = imagenet.split_units(wnids, 10, 10)
  index = imagenet.wnid_index()
  seen_all = {index[w] for w in wnids}
  assert len(set(seen)) == 10 and set(seen) <= seen_all
  assert len(set(unseen)) == 10 and not set(unseen) & seen_all
  assert max(seen) > 800 and max(unseen) > 800 and min(seen) < 100 and min(unseen) < 100
  with pytest.raises(ValueError, match='at most 200 seen'):
    imagenet.split_units(wnids, 201, 0)
  with pytest.raises(ValueError, match='not ImageNet-1k wnids'):
    imagenet.split_units(['n00000000'], 1, 0)


def test_least_padding_batch():
  assert least_padding_batch([0, 1, 2, 3], range(2, 6)) == 4  # one call of 4 rows
  assert least_padding_batch([0, 10, 20, 30], range(5, 11)) == 7  # 10 would take 4 calls
  units = [1, 128, 313, 400, 463, 543, 655, 760, 849, 929, 0, 91, 185, 270, 377, 489]
  b = least_padding_batch(units)
  calls = max(sum(1 for u in units if u % b == r) for r in range(b))
  assert calls * b <= 4 * len(units)


@pytest.mark.slow
def test_demo_imagenet_end_to_end(tmp_path):
  """make demo-imagenet's runner (needs the `imagenet` extra; make test-slow installs it)."""
  out = tmp_path / 'imagenet'
  r = subprocess.run([sys.executable, '-m', 'experiments.demo_imagenet', f'--out={out}',
                      '--classes=2', '--iters=2'], cwd=ROOT, capture_output=True, text=True,
                     timeout=1800)
  assert r.returncode == 0, r.stderr[-2000:]
  with open(out / 'manifest.json') as f:
    rows = json.load(f)['rows']
  assert [row['unit'] for row in rows] == [1, 0]  # goldfish (seen), tench (unseen)
  assert rows[0]['wnid'] == 'n01443537' and rows[0]['layer'] == '_fc'
  assert (out / 'index.html').exists() and (out / 'grid.png').exists()


def test_registry_file_falls_back_to_a_weights_folder(tmp_path, monkeypatch):
  """On a machine without the registry package (an accelerator without a package index)."""
  from dgnam_jax.nets import from_torch  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(from_torch.importlib.util, 'find_spec', lambda name: None)
  monkeypatch.delenv('DGNAM_JAX_WEIGHTS', raising=False)
  with pytest.raises(FileNotFoundError, match='DGNAM_JAX_WEIGHTS'):
    from_torch.registry_file('efficientnet_lite1')
  (tmp_path / 'efficientnet-lite1-77cc7160.pth').write_bytes(b'x')
  monkeypatch.setenv('DGNAM_JAX_WEIGHTS', str(tmp_path))
  assert from_torch.registry_file('efficientnet_lite1') == str(
      tmp_path / 'efficientnet-lite1-77cc7160.pth')


def _split(images, top1, top5, kid=None):
  r = {'images': images, 'top1_worse': top1, 'top5_worse': top5, 'top1_original': top1,
       'top1_photo': top1, 'm1_median': 0.5}
  if kid is not None:
    r['kid_photo'] = {'kid': kid}
  return r


def test_imagenet_report_names_the_winner_and_adds_up_wall_times(tmp_path):
  # Only the flag-free module: a runner's flags would clash with other runners' in one process.
  from experiments import imagenet_report  # pylint: disable=import-outside-toplevel
  imagenet_report.record_time(str(tmp_path), 'a_dgnam', 100.0, 60)
  imagenet_report.record_time(str(tmp_path), 'a_dgnam', 50.0, 40)  # a resumed sweep
  with open(tmp_path / imagenet_report.TIMINGS) as f:
    timings = json.load(f)
  assert timings['a_dgnam']['seconds'] == 150.0 and timings['a_dgnam']['requests'] == 100
  record = {'command': 'x', 'eval_s': 1.0, 'synthesis': timings,
            'judges': {'a': 'registry:b', 'b': 'registry:a'},
            'runs': {'a_dgnam': {'seen': _split(50, 0.1, 0.3, 0.2), 'unseen': _split(50, .2, .2)},
                     'a_fourier': {'seen': _split(50, 0.2, 0.2, 0.1),
                                   'unseen': _split(50, .2, .2)},
                     'b_dgnam': {'seen': _split(20, 0.0, 0.1), 'unseen': _split(0, 0, 0)}}}
  lines = imagenet_report.verdict(record)
  assert len(lines) == 2  # b has one method: no comparison
  assert 'top-5: **dgnam** (30.0 % vs fourier 20.0 %)' in lines[0]
  assert 'top-1: **fourier**' in lines[0] and 'KID (photo, lower is better): **fourier**' in lines[0]
  assert 'unseen classes (50): top-5: a tie at 20.0 %' in lines[1]
  notes = tmp_path / 'notes.md'
  notes.write_text('## By eye\n\nblobs\n')
  path = imagenet_report.write_report(record, str(tmp_path / 'r.md'), str(tmp_path / 'r_figures'),
                                      [str(notes)])
  text = open(path).read()
  assert '| a_dgnam | 100 | 150 | 1.5 |' in text and text.rstrip().endswith('blobs')
  assert '| b_dgnam | unseen |' not in text  # an empty split has no row
