r"""Writes ``MODEL_CARD.md`` of an embedded-default checkpoint folder from the checkpoints' metadata.

  python -m experiments.model_card --dir=checkpoints/cifar10 --title="CIFAR-10 embedded default"

Every number in the card comes from the ``training`` entries the trainers stored in each
checkpoint's ``dgnam.json`` (accuracy, PSNR, wall time, command, seed, device) and from the files
themselves (sizes, sha256). Expected subfolders: ``classifier/`` (visualized), ``generator/``,
optionally ``judge/`` and further judges ``judge_<name>/``; an optional ``settings_search.md``
(from ``experiments.search_settings``) is included as the record of how the synthesize preset was
chosen, and an optional ``card_notes.md`` (or ``--notes``) is appended verbatim.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

from dgnam_jax import files
from dgnam_jax.nets import checkpoint

# What the development workspace's JPEG packs hold, by file-name prefix.
_DATA_SOURCES = {'cifar10': 'CIFAR-10, Krizhevsky 2009',
                 'tinyimagenet200': 'Tiny ImageNet-200, Stanford CS231n, 200 ImageNet-1k classes '
                                    'at 64 px; ImageNet terms: non-commercial research'}

_DIR = flags.DEFINE_string('dir', None, 'Folder with classifier/, generator/ and judge/.')
_TITLE = flags.DEFINE_string('title', None, 'Card title.')
_NOTES = flags.DEFINE_string('notes', None, 'A Markdown file appended verbatim (observations); '
                             "default: the folder's card_notes.md if there is one.")


def _size_mb(path: str) -> float:
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
  return total / 1e6


def _hours(seconds: float) -> str:
  return f'{seconds / 60:.0f} min' if seconds < 5400 else f'{seconds / 3600:.1f} h'


def _classifier_section(title: str, path: str, meta: dict) -> list[str]:
  t = meta.get('training') or {}
  arch = meta.get('architecture') or {}
  lines = [f'## {title} (`{os.path.basename(path)}/`)', '',
           f'- Architecture: {arch.get("arch", "caffenet")}-style, {arch}; '
           f'{t.get("param_count", 0):,} parameters (BatchNorm folded into the convolutions).',
           f'- Input: {meta["input_size"][0]} px, {meta["channel_order"]}, 0-255 minus the '
           f'per-channel train mean {[round(v, 2) for v in meta["mean"]["per_channel"]]}.',
           f'- **Test top-1 accuracy: {100 * t.get("test_accuracy", float("nan")):.2f} %** on '
           f'{t.get("test_images")} held-out images (deploy net), cross-entropy '
           f'{t.get("test_loss", float("nan")):.4f}.',
           f'- Training: {t.get("epochs")} epochs ({t.get("steps")} steps) on '
           f'{t.get("train_images")} images, seed {t.get("seed")}, {_hours(t.get("wall_time_s", 0))}'
           f' wall on {t.get("device")}; settings {t.get("config")}.',
           f'- Command: `{t.get("command")}`', '']
  return lines


def _generator_section(path: str, meta: dict) -> list[str]:
  t = meta.get('training') or {}
  g = meta['generator']
  stats = checkpoint.load_array(path, 'bounds')
  upper = stats[0] + 3 * stats[1]
  return [f'## Generator (`{os.path.basename(path)}/`)', '',
          f'- DeePSim-style: fc6 code ({g["code_shape"][0]}-d, post-ReLU) -> '
          f'{meta["architecture"]}; {t.get("param_count", 0):,} parameters. Encoder: '
          f'`{g["encoder"]["checkpoint"]}` ({g["encoder"]["blob"]}).',
          f'- **Held-out reconstruction PSNR: {t.get("test_psnr_db", float("nan")):.2f} dB** '
          f'(G(E(x)) + mean clipped to 0-255 against x, MSE pooled over {t.get("test_images")} '
          'test images' + (f'; the mean of per-image PSNRs is {t["test_psnr_image_mean_db"]:.2f} dB'
                           if 'test_psnr_image_mean_db' in t else '') + '); '
          f'**relative fc6 re-encoding error {t.get("test_code_rel_err", float("nan")):.3f}** '
          '(mean over images of |E(G(E(x))) - E(x)| / |E(x)|).',
          f'- Losses (normalised; DeePSim recipe): {t.get("config")}.',
          f'- Training: {t.get("epochs")} epochs ({t.get("steps")} steps) on '
          f'{t.get("train_images")} images, seed {t.get("seed")}, '
          f'{_hours(t.get("wall_time_s", 0))} wall on {t.get("device")}.',
          f'- Command: `{t.get("command")}`',
          *([f'- A second training stage: it started from the G and D of the run in '
             f'`{t["init_from"]}` (first stage: see the notes below); the wall time counts both '
             'stages.'] if t.get('init_from') else []),
          f'- Code bounds (`bounds.npy`, kind `{g["bounds_kind"]}`, from {t.get("bounds_from")}): '
          f'{100 * float((stats[0] == 0).mean()):.1f} % of units never active; upper bound '
          f'mean + 3 std: mean {upper.mean():.3f}, max {upper.max():.3f}.', '']


def card(folder: str, title: str, notes: str | None = None) -> str:
  """The card's Markdown for ``folder``."""
  lines = [f'# {title}', '',
           'Trained by this project (no third-party weights); checkpoint format: '
           '[CHECKPOINTS.md](../../CHECKPOINTS.md). Written by `python -m experiments.model_card '
           f'--dir={folder}` from the metadata the trainers stored.', '']
  parts = [('classifier', 'Classifier (the visualized net)'), ('generator', None),
           ('judge', 'Judge (independent classifier; never visualized)')]
  # Further judges (judge_<name>/), e.g. one of the visualized net's own architecture.
  parts += [(d, f'Second judge `{d}` (never visualized)') for d in sorted(os.listdir(folder))
            if d.startswith('judge_') and os.path.isdir(os.path.join(folder, d))]
  rows = []
  for sub, sect in parts:
    path = os.path.join(folder, sub)
    if not os.path.isdir(path):
      continue
    meta = checkpoint.read_metadata(path)
    lines += (_generator_section(path, meta) if sub == 'generator'
              else _classifier_section(sect, path, meta))
    rows.append(f'| `{sub}/` | {_size_mb(path):.1f} MB | '
                f'`{files.sha256_file(os.path.join(path, "dgnam.json"))[:16]}` |')
  lines += ['## Files', '', '| checkpoint | size | dgnam.json sha256 (first 16) |', '|---|---|---|',
            *rows, '']
  data = next((checkpoint.read_metadata(os.path.join(folder, s))['training'].get('data')
               for s in ('classifier',) if os.path.isdir(os.path.join(folder, s))), None)
  if data:
    name = os.path.basename(data)
    source = next((v for k, v in _DATA_SOURCES.items() if name.startswith(k)), 'a JPEG pack')
    lines += [f'Data: `{name}` (see `../shared/data/README.md` in the development workspace: '
              f'{source}, as JPEG files).', '']
  search = os.path.join(folder, 'settings_search.md')
  if os.path.exists(search):
    with open(search) as f:
      lines += ['## How the `synthesize` preset was chosen', '', f.read().strip(), '']
  default_notes = os.path.join(folder, 'card_notes.md')
  notes = notes or (default_notes if os.path.exists(default_notes) else None)
  if notes:
    with open(notes) as f:
      lines += [f.read().strip(), '']
  return '\n'.join(lines)


def main(argv) -> int:
  del argv
  text = card(_DIR.value, _TITLE.value or os.path.basename(_DIR.value), _NOTES.value)
  files.atomic_write_text(os.path.join(_DIR.value, 'MODEL_CARD.md'), text)
  print(f'wrote {os.path.join(_DIR.value, "MODEL_CARD.md")}')
  return 0


if __name__ == '__main__':
  flags.mark_flags_as_required(['dir'])
  app.run(lambda argv: sys.exit(main(argv)))
