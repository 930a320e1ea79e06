r"""Writes a Markdown report (tables + PNG figures) from ``experiments.evaluate``'s metrics.json.

  python -m experiments.report --metrics=out/eval/cifar10/metrics.json \
      --out=reports/cifar10.md --title="CIFAR-10 embedded default"

Tables: judge top-1/top-5 under both display conventions (all images and distinct images), KID
(with its std) and FID in the judge's features, relative activation M1 medians (raw and photo,
output and hidden units, with the expected-max-of-N-real-images baseline), seed diversity and
memorization. Figures (copied next to the report under ``<name>_figures/``): each run's top-real
and memorization sheets and a bar chart of the headline numbers. Every run of the metrics file is
one row, so baselines evaluated into the same file appear side by side.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from PIL import Image, ImageDraw, ImageFont

from dgnam_jax import files
from dgnam_jax.nets import checkpoint

_METRICS = flags.DEFINE_string('metrics', None, 'metrics.json of experiments.evaluate.')
_OUT = flags.DEFINE_string('out', None, 'The Markdown file to write.', allow_override=True)
_TITLE = flags.DEFINE_string('title', 'DGN-AM evaluation', 'Report title.')
_EXTRA = flags.DEFINE_list('extra_md', [], 'Markdown files appended verbatim (commands, notes).')


def _missing(v) -> bool:
  """None, or NaN (e.g. seed diversity of a one-seed run)."""
  return v is None or (isinstance(v, float) and v != v)


def _f(v, digits: int = 2) -> str:
  if _missing(v):
    return 'n/a'
  if isinstance(v, float):
    return f'{v:.{digits}f}' if abs(v) < 1e4 else f'{v:.3g}'
  return str(v)


def _pct(v) -> str:
  return 'n/a' if _missing(v) else f'{100 * v:.1f} %'


def bar_chart(path: str, title: str, groups: list[str], series: dict[str, list[float]]) -> str:
  """A grouped bar chart PNG (one group per run, one bar per series), values in [0, ~1.2]."""
  font = ImageFont.load_default()
  colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
  w, h, left, bottom = 120 + 110 * len(groups), 320, 40, 60
  img = Image.new('RGB', (w, h), 'white')
  d = ImageDraw.Draw(img)
  d.text((left, 6), title, fill='black', font=font)
  top = max([1.0] + [v for vs in series.values() for v in vs if v is not None])
  scale = (h - bottom - 30) / top
  d.line((left, h - bottom, w - 10, h - bottom), fill='black')
  for frac in (0.5, 1.0):
    y = h - bottom - frac * scale
    d.line((left, y, w - 10, y), fill=(220, 220, 220))
    d.text((4, y - 6), f'{frac:.1f}', fill='black', font=font)
  bw = 80 / max(len(series), 1)
  for g, name in enumerate(groups):
    x0 = left + 10 + 110 * g
    for k, (label, vals) in enumerate(series.items()):
      v = vals[g]
      if v is None or v <= 0:  # nothing to draw (an M1 below 0: the unit was driven down)
        continue
      x = x0 + k * bw
      d.rectangle((x, h - bottom - v * scale, x + bw - 2, h - bottom), fill=colours[k % 4])
    d.text((x0, h - bottom + 6), name[:16], fill='black', font=font)
  for k, label in enumerate(series):
    d.rectangle((w - 160, 24 + 14 * k, w - 150, 34 + 14 * k), fill=colours[k % 4])
    d.text((w - 145, 23 + 14 * k), label, fill='black', font=font)
  img.save(path)
  return path


def _judge_reference(judge_path: str, who: str = 'the judge', measured: dict | None = None
                     ) -> str:
  """How often a judge recognizes real held-out images: the scale its scores live on."""
  if measured:
    return (f'For scale: {who} classifies {_pct(measured["top1"])} (top-1) and '
            f'{_pct(measured["top5"])} (top-5) of {measured["images"]} real held-out images '
            f'correctly ({measured["classes"]}; measured by this evaluation).')
  try:
    t = checkpoint.read_metadata(judge_path).get('training') or {}
  except (OSError, ValueError):  # CheckpointError is a ValueError
    t = {}
  if 'test_accuracy' not in t:
    return f'The accuracy of {who} on real images is not recorded in its checkpoint.'
  return (f'For scale: {who} classifies {_pct(t["test_accuracy"])} of '
          f'{t.get("test_images")} real held-out images correctly (top-1; its training metadata).')


def _recognizability(scores: dict[str, dict]) -> list[str]:
  """The judge table: run name -> judge_scores of that run."""
  lines = ['| run | images | top-1 stretch | top-1 photo | top-5 stretch | top-5 photo | '
           'distinct images (photo) | top-1 photo, distinct only |', '|' + '---|' * 8]
  for name, j in scores.items():
    lines.append(f'| {name} | {j["images"]} | {_pct(j["top1_original"])} | '
                 f'{_pct(j["top1_photo"])} | {_pct(j["top5_original"])} | '
                 f'{_pct(j["top5_photo"])} | {j["distinct_photo"]["images"]} | '
                 f'{_pct(j["distinct_photo"]["top1"])} |')
  return lines


def _checker(c) -> str:
  if not c:
    return 'n/a'
  return f'{c["photo"]["energy"]:.2f} ({c["photo"]["ratio_to_real"]:.2f}x)'


def _winner(scores: dict[str, dict]) -> str:
  """Which run the judge recognizes most, counting each run under its worse display convention."""
  def worse(j, k):
    return min(j[f'{k}_original'], j[f'{k}_photo'])
  best5 = max(scores, key=lambda n: (worse(scores[n], 'top5'), worse(scores[n], 'top1')))
  best1 = max(scores, key=lambda n: (worse(scores[n], 'top1'), worse(scores[n], 'top5')))
  line = (f'**Winner under this judge** (each run counted under its worse display convention): '
          f'top-5 `{best5}` ({_pct(worse(scores[best5], "top5"))})')
  if best1 != best5:
    return line + f'; top-1 `{best1}` ({_pct(worse(scores[best1], "top1"))}).'
  return line + f', also top-1 ({_pct(worse(scores[best1], "top1"))}).'


def render(metrics: dict, out_md: str, title: str, extra: list[str]) -> str:
  """The report's Markdown; figures are written next to ``out_md``."""
  fig_dir = os.path.splitext(out_md)[0] + '_figures'
  os.makedirs(fig_dir, exist_ok=True)
  src = os.path.dirname(os.path.abspath(_METRICS.value)) if _METRICS.value else '.'
  runs = metrics['runs']
  lines = [f'# {title}', '', f'Produced by `{metrics["command"]}` ({metrics["wall_s"]:.0f} s) and '
           f'`python -m experiments.report --metrics=... --out={files.relative_path(out_md)}`.',
           '',
           f'- Generator: `{metrics["generator"]}`; classifier: `{metrics["classifier"]}`; judge '
           f'(never visualized): `{metrics["judge"]}`; data: `{metrics["data"]}`.', '']
  cls_runs = {k: v for k, v in runs.items() if 'judge' in v}
  if cls_runs:
    lines += ['## Recognizability by the judge (class units)', '',
              _judge_reference(metrics['judge'], measured=metrics.get('judge_on_real')), '',
              *_recognizability({k: r['judge'] for k, r in cls_runs.items()}),
              '', '"stretch" is the saved image (the original\'s clip to ±120 and min-max '
              'stretch); "photo" is generator output + mean clipped to 0-255. Distinct: seeds of '
              'a class whose images differ by a mean absolute difference < 20/255 count once.', '',
              _winner({k: r['judge'] for k, r in cls_runs.items()}), '']
    for jname, jpath in (metrics.get('extra_judges') or {}).items():
      lines += [f'### The same images by the further judge `{jname}`', '',
                _judge_reference(jpath, f'`{jname}`') + f' Checkpoint: `{jpath}`.', '',
                *_recognizability({k: r['extra_judges'][jname] for k, r in cls_runs.items()
                                   if jname in (r.get('extra_judges') or {})}), '']
    lines += ['## Realism, diversity, memorization (class units)', '',
              '| run | KID photo (± std) | FID photo | KID stretch | seed pairs distinct (photo) '
              '| mean pairwise judge-feature distance | memorization ratio median (min): '
              'pixels; fc6 | checkerboard energy photo (x real) |', '|' + '---|' * 8]
    for name, r in cls_runs.items():
      kp, ko = r['kid_fid']['photo'], r['kid_fid']['original']
      m = r['memorization']
      lines.append(f'| {name} | {_f(kp["kid"], 4)} ± {_f(kp["kid_std"], 4)} | {_f(kp["fid"], 1)}'
                   f' | {_f(ko["kid"], 4)} | {_pct(r["judge"]["diversity_photo"]["mean"])} | '
                   f'{_f(r["diversity_judge_features_photo"]["mean"])} | '
                   f'{_f(m["pixel_ratio"]["median"])} ({_f(m["min_ratio"])}); '
                   f'{_f(m.get("fc6_ratio", {}).get("median"))} ({_f(m.get("fc6_min_ratio"))}) | '
                   f'{_checker(r.get("checkerboard"))} |')
    k = next(iter(cls_runs.values()))['kid_fid']['photo']
    sizes = sorted({r['kid_fid']['photo']['n_synthetic'] for r in cls_runs.values()})
    n_syn = (str(sizes[0]) if len(sizes) == 1 else
             f'{"/".join(map(str, sizes))} (each run\'s images column above)')
    lines += ['', f'KID: {k["subsets"]} subsets of {k["subset_size"]} images, '
              f'{n_syn} synthetic vs {k["n_real"]} held-out real images of the same '
              f'classes, in the judge\'s {metrics.get("judge_features", "pool5")} features. '
              'Memorization ratio: distance to the '
              'nearest training image of the class (pixels) over the median nearest-neighbour '
              'distance between training images of the class (≈ 0: a copy; ≥ 1: novel). n/a: '
              'a one-seed run has no seed pairs. Checkerboard energy: the mean power spectrum '
              'of the luma at the frequencies where a generator that upsamples a 4 x 4 map to '
              'the image size leaves periodic artifacts (multiples of 4 cycles per image on '
              'both axes, DC excluded), each over its 8 neighbours, averaged '
              '(`metrics.checkerboard_energy`; about 1 for smooth spectra), and its ratio to the '
              'same real images\' (the acceptance: ≤ 1.5).', '']
  lines += ['## Relative activation M1 (medians)', '',
            '| run | units | raw output | uint8 photo | expected max of N random real images |'
            ' share > 1 (raw) |', '|' + '---|' * 6]
  for name, r in runs.items():
    for kind in ('output', 'hidden'):
      m = r.get(f'm1_{kind}')
      if not m:
        continue
      base_key = next(k for k in m if k.startswith('expected_max_of_'))
      lines.append(f'| {name} | {kind} ({m["raw"]["n"]}) | {_f(m["raw"]["median"])} | '
                   f'{_f(m["photo"]["median"])} | {_f(m[base_key]["median"])} '
                   f'(N = {base_key.split("_")[3]}) | {_pct(m["raw"]["share_above_1"])} |')
  lines += ['', 'M1 = activation on the synthetic image / the unit\'s maximum over all train + '
            'test images (logits for output units, post-ReLU blobs for hidden units).', '']
  names = list(runs)
  chart = bar_chart(os.path.join(fig_dir, 'headline.png'), 'judge top-1 (photo), M1 median '
                    '(photo, output units), seed pairs distinct', names, {
                        'judge top-1': [runs[n].get('judge', {}).get('top1_photo') for n in names],
                        'M1 photo': [runs[n].get('m1_output', {}).get('photo', {}).get('median')
                                     for n in names],
                        'distinct pairs': [runs[n].get('judge', {}).get('diversity_photo', {})
                                           .get('mean') for n in names]})
  lines += ['## Figures', '', f'![headline]({os.path.relpath(chart, os.path.dirname(out_md))})', '']
  grid_png = os.path.join(src, 'methods_grid.png')
  if os.path.exists(grid_png) and len(cls_runs) > 1:
    dst = _copy_figure(grid_png, os.path.join(fig_dir, 'methods_grid.png'))
    lines += ['**Methods side by side (as Fig. S17): one line per class and seed, one column per '
              'method, each image as that method displays it**', '',
              f'![methods]({os.path.relpath(dst, os.path.dirname(out_md))})', '']
  for name in names:
    for kind, caption in (('top_real', 'synthetic image, then the 5 real images that drive the '
                                       'unit most'),
                          ('memorization', 'synthetic photo next to its nearest training image')):
      png = os.path.join(src, f'{name}_{kind}.png')
      if os.path.exists(png):
        dst = _copy_figure(png, os.path.join(fig_dir, os.path.basename(png)))
        lines += [f'**{name}: {caption}**', '',
                  f'![{name} {kind}]({os.path.relpath(dst, os.path.dirname(out_md))})', '']
  for path in extra:
    with open(path) as f:
      lines += [f.read().strip(), '']
  return '\n'.join(lines)


def _copy_figure(src: str, dst: str) -> str:
  """The sheet as a 256-colour PNG: about a third of the bytes of a committed RGB photo sheet."""
  with Image.open(src) as im:
    im.convert('RGB').quantize(256).save(dst, optimize=True)
  return dst


def main(argv) -> int:
  del argv
  with open(_METRICS.value) as f:
    metrics = json.load(f)
  out = os.path.abspath(_OUT.value)
  files.atomic_write_text(out, render(metrics, out, _TITLE.value, _EXTRA.value))
  print(f'wrote {out}')
  return 0


if __name__ == '__main__':
  flags.mark_flags_as_required(['metrics', 'out'])
  app.run(lambda argv: sys.exit(main(argv)))
