"""Training utilities shared by the project's trained nets (classifier now, generator later).

* :class:`Workdir`: resumable Orbax checkpoints of a training state plus a JSON side item
  (history, wall time) in one step directory, so both always match after a kill.
* :func:`check_run_config`: a restarted run must use the flags it started with.
* :func:`plot_curves`: a training-curve PNG drawn with PIL (no matplotlib dependency).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image, ImageDraw, ImageFont

RUN_CONFIG_FILE = 'run_config.json'


class Workdir:
  """Orbax ``CheckpointManager`` over ``<path>/checkpoints`` with items 'state' and 'extra'.

  Saves are synchronous (a save that returned is complete) and atomic (Orbax writes a temporary
  directory and renames it), so a run killed at any moment resumes from the last finished save.
  """

  def __init__(self, path: str, max_to_keep: int = 2):
    self.path = os.path.abspath(path)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(os.path.join(self.path, 'checkpoints'), options=options,
                                         item_names=('state', 'extra'))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, extra: Mapping[str, Any]) -> None:
    """Saves ``state`` (a pytree of arrays) and ``extra`` (JSON) as step ``step``."""
    state = jax.tree.map(np.asarray, state)
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    extra=ocp.args.JsonSave(dict(extra))),
                      force=True)
    self.manager.wait_until_finished()

  def restore(self, target: Any) -> tuple[Any, dict[str, Any]] | None:
    """(state shaped like ``target``, extra) of the latest step, or None if nothing was saved."""
    step = self.manager.latest_step()
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    got = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
    return got['state'], dict(got['extra'])

  def close(self) -> None:
    self.manager.close()


def check_run_config(workdir: str, config: Mapping[str, Any],
                     ignore: Sequence[str] = ()) -> None:
  """Writes ``config`` to the workdir, or checks that a restarted run uses the same one.

  Args:
    workdir: the training workdir.
    config: JSON-serialisable settings that determine the run (architecture, data, schedule).
    ignore: keys that may change between restarts (e.g. a stop step or a log interval).

  Raises:
    ValueError: naming the settings that differ from the saved ones.
  """
  path = os.path.join(workdir, RUN_CONFIG_FILE)
  config = json.loads(json.dumps(dict(config)))  # normalise tuples etc. as JSON would
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    diff = sorted(k for k in set(saved) | set(config)
                  if k not in ignore and saved.get(k) != config.get(k))
    if diff:
      raise ValueError(f'{workdir} holds a run with different settings: ' + '; '.join(
          f'{k}: saved {saved.get(k)!r}, now {config.get(k)!r}' for k in diff) +
          '. Resume with the same flags or use a new --workdir.')
    return
  os.makedirs(workdir, exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(config, f, indent=1)
  os.replace(tmp, path)


_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def _panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str,
           series: Sequence[tuple[str, Sequence[float], Sequence[float]]], font) -> None:
  """One line chart: ``series`` of (label, x, y) in ``box`` = (left, top, right, bottom)."""
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
    if len(pts) > 1:
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


def device_description() -> str:
  """'cpu x1 (cpu); 2 host CPU cores': where a run trained (for the model card)."""
  d = jax.devices()[0]
  return f'{d.platform} x{jax.device_count()} ({d.device_kind}); {os.cpu_count()} host CPU cores'
