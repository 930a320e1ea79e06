"""dgnam_jax.files and dgnam_jax.sweeps.outputs: atomic files, manifest, provenance, gallery,
grid PNG, GIF."""

import csv
import json
import os
import re

import numpy as np
from PIL import Image
import pytest

from dgnam_jax import files, images
from dgnam_jax.sweeps import outputs


def _temp_files(root):
  return [f for _, _, fs in os.walk(root) for f in fs if f.startswith(images.TEMP_PREFIX)]


def _rows(out_dir, n=3):
  rows = []
  for i in range(n):
    layer = 'loss3/classifier' if i == 2 else 'fc8'
    name = images.request_name(layer, 600 + i, 200, 0.99, 8.0, 0,
                               position=(6, 6) if i == 1 else None)
    image = name + '.png'
    images.save_image(os.path.join(out_dir, image), np.full((8, 10, 3), 50 * i, np.uint8))
    rows.append({'name': name, 'layer': layer, 'unit': np.int64(600 + i),
                 'position': (6, 6) if i == 1 else None, 'seed': 0,
                 'activation': np.float32(10.5 + i), 'class_name': f'<b>cls {i}</b> & "x"',
                 'image': image, 'zeta': [1.5, 2.0], 'alpha': {'k': 1}})
  return rows


def test_atomic_text_and_npy(tmp_path):
  path = str(tmp_path / 'a' / 'b.txt')
  files.atomic_write_text(path, 'héllo\n')
  files.atomic_write_text(path, 'second\n')
  with open(path, encoding='utf-8') as f:
    assert f.read() == 'second\n'
  arr = np.arange(6, dtype=np.float32).reshape(2, 3)
  npy = str(tmp_path / 'codes' / 'c')  # no extension: the name must stay as given
  files.atomic_save_npy(npy, arr)
  np.testing.assert_array_equal(np.load(npy, allow_pickle=False), arr)
  with pytest.raises(ValueError):
    files.atomic_save_npy(str(tmp_path / 'obj.npy'), np.array([{}], dtype=object))
  assert not os.path.exists(tmp_path / 'obj.npy')
  assert not _temp_files(tmp_path)


def test_cleanup_temp_files(tmp_path):
  (tmp_path / 'fc8').mkdir()
  for p in ['.tmp-abc.png', 'fc8/.tmp-x.npy', 'keep.png', 'fc8/keep.tmp-']:
    (tmp_path / p).write_bytes(b'x')
  assert files.cleanup_temp_files(str(tmp_path)) == 2
  assert sorted(os.listdir(tmp_path)) == ['fc8', 'keep.png']
  assert os.listdir(tmp_path / 'fc8') == ['keep.tmp-']
  assert files.cleanup_temp_files(str(tmp_path)) == 0


def test_manifest_round_trip(tmp_path):
  out = str(tmp_path)
  assert outputs.read_manifest(out) is None
  rows = _rows(out)
  meta = {'provenance': {'argv': ['x']}, 'settings': {'lr': 8.0, 'shape': (2, 3)}}
  outputs.write_manifest(out, rows, meta)
  doc = outputs.read_manifest(out)
  assert doc['provenance'] == {'argv': ['x']} and doc['settings']['shape'] == [2, 3]
  assert doc['rows'][1]['position'] == [6, 6] and doc['rows'][0]['unit'] == 600
  assert doc['rows'][2]['activation'] == pytest.approx(12.5)
  with open(tmp_path / 'manifest.csv', newline='', encoding='utf-8') as f:
    table = list(csv.reader(f))
  header = table[0]
  assert header[:len(outputs.CSV_LEADING)] == list(outputs.CSV_LEADING)
  assert header[len(outputs.CSV_LEADING):] == ['alpha', 'zeta']
  assert len(table) == 1 + len(rows)
  by_col = [dict(zip(header, line)) for line in table[1:]]
  assert by_col[1]['position'] == '6x6' and by_col[0]['position'] == ''
  assert by_col[0]['zeta'] == '[1.5,2.0]' and json.loads(by_col[0]['alpha']) == {'k': 1}
  assert by_col[2]['layer'] == 'loss3/classifier' and by_col[2]['activation'] == '12.5'
  assert by_col[0]['class_name'] == rows[0]['class_name']
  with pytest.raises(ValueError):
    outputs.write_manifest(out, rows, {'rows': []})
  assert not _temp_files(tmp_path)


def test_provenance(tmp_path):
  ckpt = tmp_path / 'gen'
  (ckpt / 'params' / 'sub').mkdir(parents=True)
  (ckpt / 'dgnam.json').write_text('{"net": "x"}')
  (ckpt / 'params' / 'a').write_bytes(b'1')
  (ckpt / 'params' / 'sub' / 'b').write_bytes(b'22')
  prov = files.provenance(['run', '--x=1'], {'generator': str(ckpt)}, 'float32')
  info = prov['checkpoints']['generator']
  assert re.fullmatch('[0-9a-f]{64}', info['dgnam_json_sha256'])
  assert info['params_files'] == 2 and info['params_bytes'] == 3
  assert prov['versions']['numpy'] == np.__version__ and prov['versions']['dgnam_jax']
  assert prov['devices']['count'] >= 1 and prov['dtype'] == 'float32'
  json.dumps(prov)
  (ckpt / 'params' / 'sub' / 'b').write_bytes(b'23')
  changed = files.provenance([], {'generator': str(ckpt)}, 'float32')
  assert changed['checkpoints']['generator']['params_sha256'] != info['params_sha256']
  with pytest.raises(FileNotFoundError):
    files.provenance([], {'x': str(tmp_path / 'missing')}, 'float32')


def test_gallery(tmp_path):
  out = str(tmp_path)
  rows = _rows(out)
  rows[0]['blend_unit'], rows[0]['gamma'] = 624, 0.5
  rows[0]['activation_init'] = 1.25
  rows[1]['wnid'] = 'n01443537'  # Tiny ImageNet rows carry their synset id
  path = outputs.write_gallery(out, rows, title='Run <1>', scale=4,
                              extra_sections=[('Grid & more', [{'image': 'none.png',
                                                                'label': '<x>'}])])
  assert path == os.path.join(out, 'index.html')
  with open(path, encoding='utf-8') as f:
    page = f.read()
  assert '&lt;b&gt;cls 0&lt;/b&gt; &amp; &quot;x&quot;' in page and '<b>cls' not in page
  assert '<title>Run &lt;1&gt;</title>' in page and 'Grid &amp; more' in page
  assert page.count('<small>n01443537</small>') == 1
  assert 'image-rendering:pixelated' in page and 'width="40" height="32"' in page
  srcs = re.findall(r'<img src="([^"]+)"', page)
  assert len(srcs) == 4
  for src in srcs[:3]:
    assert not os.path.isabs(src) and os.path.isfile(os.path.join(out, src))
  assert 'loss3/classifier_0602_200_0.99_8.0__0.png' in srcs


def test_grid_png(tmp_path):
  out = str(tmp_path)
  rows = _rows(out, n=5) + [{'name': 'pending'}]
  path = outputs.write_grid_png(out, rows, 'grid.png', columns=2, scale=3)
  assert path == os.path.join(out, 'grid.png')
  with Image.open(path) as im:
    assert im.format == 'PNG' and im.width == 2 * (10 * 3 + 2) + 2
    assert im.height > 3 * (8 * 3 + 2)
  labels = []
  outputs.write_grid_png(out, rows[:2], str(tmp_path / 'g2.png'),
                        label_fn=lambda r: labels.append(r['name']) or 'x')
  assert labels == [rows[0]['name'], rows[1]['name']]
  assert not _temp_files(tmp_path)


def test_gif(tmp_path):
  frames = [np.full((4, 5, 3), 30 * i, np.uint8) for i in range(6)]
  path = outputs.write_gif(str(tmp_path / 'anim' / 'a.gif'), frames, duration_ms=50, scale=2)
  with Image.open(path) as im:
    assert im.format == 'GIF' and im.n_frames == 6 and im.size == (10, 8)
    assert im.info.get('loop') == 0
  assert not _temp_files(tmp_path)
