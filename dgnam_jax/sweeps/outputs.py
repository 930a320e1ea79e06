"""A sweep's outputs besides the images: manifest (JSON + CSV), HTML gallery, grid, GIF.

Nothing below the sweep imports this module. Every file goes through
:func:`dgnam_jax.files.atomic_write_text` (temp + rename).
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from dgnam_jax import images
from dgnam_jax.files import atomic_write_text

MANIFEST_JSON = 'manifest.json'
MANIFEST_CSV = 'manifest.csv'
GALLERY_HTML = 'index.html'
CSV_LEADING = ('name', 'layer', 'unit', 'position', 'objective', 'blend_unit', 'gamma',
               'minimize', 'seed', 'iters', 'lr', 'lr_end', 'l2', 'activation',
               'activation_init', 'class_name', 'wnid', 'image', 'code', 'code_index',
               'final_code')


def _jsonable(value):
  """Plain JSON types for numpy scalars/arrays and tuples (json.dumps rejects numpy types)."""
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  return value


def _csv_cell(value) -> str:
  if value is None:
    return ''
  if isinstance(value, (list, tuple)):
    if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
      return 'x'.join(str(v) for v in value)  # position / shapes read as 3x5
    return json.dumps(value, separators=(',', ':'))
  if isinstance(value, dict):
    return json.dumps(value, separators=(',', ':'), sort_keys=True)
  return str(value)


def write_manifest(out_dir: str, rows: Sequence[Mapping[str, Any]],
                   meta: Mapping[str, Any]) -> None:
  """Writes ``manifest.json`` ({"rows": rows, **meta}) and ``manifest.csv``, both atomically.

  Args:
    out_dir: the run's output directory.
    rows: one dict per result; numpy values are converted to plain JSON types.
    meta: run-level entries such as 'provenance' and 'settings' (must not use the key 'rows').
  """
  if 'rows' in meta:
    raise ValueError("meta must not contain 'rows'")
  plain_rows = [_jsonable(dict(row)) for row in rows]
  doc = {'rows': plain_rows, **_jsonable(dict(meta))}
  atomic_write_text(os.path.join(out_dir, MANIFEST_JSON), json.dumps(doc, indent=1) + '\n')
  extra = sorted({k for row in plain_rows for k in row} - set(CSV_LEADING))
  columns = list(CSV_LEADING) + extra
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator='\n')
  writer.writerow(columns)
  for row in plain_rows:
    writer.writerow([_csv_cell(row.get(c)) for c in columns])
  atomic_write_text(os.path.join(out_dir, MANIFEST_CSV), buf.getvalue())


def read_manifest(out_dir: str) -> dict | None:
  """The manifest written by :func:`write_manifest`, or None if there is none yet."""
  path = os.path.join(out_dir, MANIFEST_JSON)
  if not os.path.exists(path):
    return None
  with open(path, encoding='utf-8') as f:
    return json.load(f)


CHUNK_RECORDS = 'chunks'  # chunks/chunk_<k:05d>.json: the rows of one finished chunk
_RECORD = re.compile(r'chunk_(\d{5,})\.json')


def write_chunk_record(out_dir: str, chunk: int, rows: Sequence[Mapping[str, Any]]) -> None:
  """Records a finished chunk's rows (atomically; written after the chunk's files)."""
  os.makedirs(os.path.join(out_dir, CHUNK_RECORDS), exist_ok=True)
  doc = {'chunk': chunk, 'rows': [_jsonable(dict(row)) for row in rows]}
  atomic_write_text(os.path.join(out_dir, CHUNK_RECORDS, f'chunk_{chunk:05d}.json'),
                    json.dumps(doc, indent=1) + '\n')


def chunk_rows(out_dir: str) -> dict[int, list[dict]]:
  """Rows per finished chunk: the manifest's, merged with the chunk records (what a run of any
  process wrote, even one killed before the manifest was rewritten)."""
  by_chunk: dict[int, list[dict]] = {}
  for row in (read_manifest(out_dir) or {}).get('rows', []):
    by_chunk.setdefault(int(row['chunk']), []).append(row)
  folder = os.path.join(out_dir, CHUNK_RECORDS)
  for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
    m = _RECORD.fullmatch(name)
    if m:
      with open(os.path.join(folder, name), encoding='utf-8') as f:
        by_chunk[int(m.group(1))] = json.load(f)['rows']
  return by_chunk


def finished_manifest(out_dir: str) -> dict:
  """:func:`read_manifest` of a finished sweep; a ValueError naming ``out_dir`` otherwise."""
  manifest = read_manifest(out_dir)
  if manifest is None or not manifest['rows']:
    raise ValueError(f'{out_dir} holds no finished sweep (no manifest rows)')
  return manifest


def _card(out_dir: str, row: Mapping[str, Any], scale: int) -> str:
  """One gallery card; every value is escaped."""
  esc = lambda v: html.escape(str(v), quote=True)
  parts = [f'<div class="card" title="{esc(row.get("name", ""))}">']
  image = row.get('image')
  if image:
    src = urllib.parse.quote(str(image).replace(os.sep, '/'))
    size = ''
    full = os.path.join(out_dir, image)
    if os.path.exists(full):
      with Image.open(full) as im:
        size = f' width="{im.width * scale}" height="{im.height * scale}"'
    parts.append(f'<img src="{esc(src)}"{size} alt="{esc(row.get("name", image))}">')
  if 'layer' in row or 'unit' in row:
    line = f'{esc(row.get("layer", ""))} unit {esc(row.get("unit", ""))}'
    if row.get('position') is not None:
      line += f' @ (y, x) = {esc(tuple(row["position"]))}'
    if row.get('blend_unit') is not None:
      line += f' + {esc(row["blend_unit"])}'
      if row.get('gamma') is not None:
        line += f' (&gamma; {esc(row["gamma"])})'
    parts.append(f'<div>{line}</div>')
  if row.get('class_name'):
    wnid = f' <small>{esc(row["wnid"])}</small>' if row.get('wnid') else ''
    parts.append(f'<div class="cls">{esc(row["class_name"])}{wnid}</div>')
  if row.get('activation') is not None:
    line = f'act {esc(_fmt(row["activation"]))}'
    if row.get('activation_init') is not None:
      line += f' (init {esc(_fmt(row["activation_init"]))})'
    parts.append(f'<div>{line}</div>')
  if row.get('label'):
    parts.append(f'<div>{esc(row["label"])}</div>')
  parts.append('</div>')
  return ''.join(parts)


def _fmt(value) -> str:
  return f'{value:.4g}' if isinstance(value, (float, np.floating)) else str(value)


def write_gallery(out_dir: str, rows: Sequence[Mapping[str, Any]], *, title: str, scale: int = 4,
                  columns: int = 5,
                  extra_sections: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] | None = None
                  ) -> str:
  """Writes ``index.html``: image cards that open from disk (relative paths, no server).

  Args:
    out_dir: the run's output directory; row 'image' paths are relative to it.
    rows: manifest rows (keys used: image, name, layer, unit, position, blend_unit, gamma,
      class_name, activation, activation_init, label, scale (overrides ``scale``); all
      optional).
    title: page title.
    scale: displayed enlargement of each image (pixelated, so pixels stay sharp).
    columns: cards per row.
    extra_sections: (heading, rows) pairs shown after the main grid (e.g. a grid PNG or GIFs
      as rows with 'image' and 'label').

  Returns:
    The path of index.html.
  """
  esc = html.escape
  style = ('body{font-family:sans-serif;margin:16px}'
           f'.grid{{display:grid;grid-template-columns:repeat({int(columns)},max-content);'
           'gap:8px}'
           '.card{border:1px solid #ccc;padding:4px;font-size:12px}'
           '.card img{display:block;image-rendering:crisp-edges;image-rendering:pixelated}'
           '.cls{font-weight:bold}')
  sections = [(None, rows)] + list(extra_sections or [])
  body = [f'<h1>{esc(title)}</h1>']
  for heading, section_rows in sections:
    if heading is None and not section_rows:
      continue
    if heading is not None:
      body.append(f'<h2>{esc(heading)}</h2>')
    cards = '\n'.join(_card(out_dir, row, row.get('scale', scale)) for row in section_rows)
    body.append(f'<div class="grid">\n{cards}\n</div>')
  page = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
          f'<title>{esc(title)}</title><style>{style}</style></head>\n<body>\n'
          + '\n'.join(body) + '\n</body></html>\n')
  return atomic_write_text(os.path.join(out_dir, GALLERY_HTML), page)


def _default_label(row: Mapping[str, Any]) -> str:
  label = f'{row.get("layer", "")} {row.get("unit", "")}'.strip()
  if row.get('class_name'):
    label += f'\n{row["class_name"]}'
  return label


def write_grid_png(out_dir: str, rows: Sequence[Mapping[str, Any]], path: str, *,
                   label_fn: Callable[[Mapping[str, Any]], str] | None = None,
                   columns: int = 10, scale: int = 2) -> str:
  """Writes a labelled montage PNG of the rows' images (atomically).

  Args:
    out_dir: the run's output directory; row 'image' paths are relative to it.
    rows: manifest rows; rows without an 'image' are skipped.
    path: the PNG to write; a relative path is taken relative to ``out_dir``.
    label_fn: row -> label text; default "layer unit" and the class name.
    columns: tiles per row.
    scale: nearest-neighbour enlargement.

  Returns:
    The path written.
  """
  label_fn = label_fn or _default_label
  tiles, labels = [], []
  for row in rows:
    if not row.get('image'):
      continue
    with Image.open(os.path.join(out_dir, row['image'])) as im:
      tiles.append(np.asarray(im.convert('RGB')))
    labels.append(label_fn(row))
  target = os.path.join(out_dir, path)
  return images.save_image(target, images.grid(tiles, labels, columns, scale))


def write_gif(path: str, frames: Sequence[np.ndarray], duration_ms: int = 100,
              scale: int = 1) -> str:
  """Writes an animated GIF that loops forever (atomically).

  Pillow merges consecutive identical frames (adding their durations), so the file can hold
  fewer frames than given.

  Args:
    path: destination .gif.
    frames: (H, W, 3) uint8 RGB arrays of one size.
    duration_ms: display time of each frame.
    scale: nearest-neighbour enlargement.

  Returns:
    ``path``.
  """
  if not frames:
    raise ValueError('write_gif needs at least one frame')
  pil = [Image.fromarray(np.ascontiguousarray(images.enlarge(np.asarray(f, np.uint8), scale)))
         for f in frames]
  with images.atomic_path(path, '.gif') as tmp:
    pil[0].save(tmp, format='GIF', save_all=True, append_images=pil[1:],
                duration=int(duration_ms), loop=0)
  return path
