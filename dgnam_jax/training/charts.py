"""Training-curve PNGs drawn with PIL (no matplotlib dependency)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def _panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str,
           series: Sequence[tuple[str, Sequence[float], Sequence[float]]], font,
           lines: bool = True) -> None:
  """One chart of ``series`` of (label, x, y) in ``box`` = (left, top, right, bottom): lines
  through the points, or the points alone."""
  left, top, right, bottom = box
  pl, pt, pr, pb = left + 44, top + 22, right - 8, bottom - 22  # plot area inside the axes
  xs = [v for _, x, _ in series for v in x]
  ys = [v for _, _, y in series for v in y if np.isfinite(v)]
  draw.text((left + 44, top + 4), title, fill='black', font=font)
  draw.rectangle((pl, pt, pr, pb), outline='black')
  if not xs or not ys:
    return
  x0, x1 = min(0.0, min(xs)), max(max(xs), 1e-9)
  y0, y1 = min(ys), max(ys)
  if y1 - y0 < 1e-9:
    y0, y1 = y0 - 0.5, y1 + 0.5
  y0, y1 = y0 - 0.05 * (y1 - y0), y1 + 0.05 * (y1 - y0)

  def pos(x, y):
    return (pl + (x - x0) / (x1 - x0) * (pr - pl), pb - (y - y0) / (y1 - y0) * (pb - pt))

  for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
    yv = y0 + frac * (y1 - y0)
    _, py = pos(x0, yv)
    draw.line((pl, py, pr, py), fill=(225, 225, 225))
    draw.text((left + 2, py - 6), f'{yv:.3g}', fill='black', font=font)
    xv = x0 + frac * (x1 - x0)
    px, _ = pos(xv, y0)
    draw.text((px - 8, pb + 4), f'{xv:.3g}', fill='black', font=font)
  for k, (label, x, y) in enumerate(series):
    colour = _COLOURS[k % len(_COLOURS)]
    pts = [pos(a, b) for a, b in zip(x, y) if np.isfinite(b)]
    if lines and len(pts) > 1:
      draw.line(pts, fill=colour, width=2)
    for px, py in pts:
      draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
    draw.text((pr - 110, pt + 4 + 12 * k), label, fill=colour, font=font)


CLASSIFIER_PANELS = (('loss', ('train_loss', 'test_loss')),
                     ('top-1 accuracy', ('train_acc', 'test_acc')))


def plot_curves(history: Sequence[Mapping[str, float]], path: str, title: str = '',
                panels: Sequence[tuple[str, Sequence[str]]] = CLASSIFIER_PANELS) -> None:
  """Draws history entries against epoch into a PNG at ``path``, one chart per panel.

  Args:
    history: one record per evaluation with 'epoch' and the keys the panels name (missing keys
      are skipped).
    path: the PNG to write (atomically replaced).
    title: a line drawn above the charts.
    panels: (chart title, keys drawn in it) per chart, side by side.
  """
  font = ImageFont.load_default()
  img = Image.new('RGB', (450 * len(panels), 380), 'white')
  draw = ImageDraw.Draw(img)
  draw.text((10, 4), title, fill='black', font=font)
  ep = [h['epoch'] for h in history]

  def series(keys):
    return [(k, [e for e, h in zip(ep, history) if h.get(k) is not None],
             [h[k] for h in history if h.get(k) is not None]) for k in keys]

  for i, (name, keys) in enumerate(panels):
    _panel(draw, (450 * i, 20, 450 * (i + 1), 380), name, series(keys), font)
  tmp = path + '.tmp.png'
  img.save(tmp)
  os.replace(tmp, path)


def plot_scatter(path: str, series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                 title: str = '', x_label: str = '', y_label: str = '') -> None:
  """A scatter plot of ``series`` of (label, x, y) into a PNG at ``path`` (atomically)."""
  font = ImageFont.load_default()
  img = Image.new('RGB', (520, 440), 'white')
  draw = ImageDraw.Draw(img)
  draw.text((10, 4), title, fill='black', font=font)
  _panel(draw, (0, 20, 520, 420), y_label, series, font, lines=False)
  draw.text((60, 424), x_label, fill='black', font=font)
  tmp = path + '.tmp.png'
  img.save(tmp)
  os.replace(tmp, path)
