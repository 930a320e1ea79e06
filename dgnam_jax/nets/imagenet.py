"""ImageNet-1k classes: wnids and short names in the standard index order, and class splits.

The list (``data/imagenet1k_classes.tsv``, derived from Debian's darknet package; its header
names the source, version and sha256) is what imported ImageNet nets' logits are indexed by.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from importlib import resources

CLASS_LIST = 'data/imagenet1k_classes.tsv'


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
  """(wnid, short name) of the 1000 ImageNet-1k classes in index order (sorted wnids)."""
  text = resources.files('dgnam_jax.nets').joinpath(CLASS_LIST).read_text(encoding='utf-8')
  rows = [line.split('\t') for line in text.splitlines() if line and not line.startswith('#')]
  if [int(r[0]) for r in rows] != list(range(1000)):
    raise ValueError(f'dgnam_jax/nets/{CLASS_LIST} is corrupt: indices are not 0..999')
  return tuple((w, n) for _, w, n in rows)


def wnid_index() -> dict[str, int]:
  """wnid -> ImageNet-1k index."""
  return {w: i for i, (w, _) in enumerate(imagenet_classes())}


def encoder_wnids(generator_dir: str) -> list[str]:
  """wnids of the classes a project-trained generator's encoder classifier was trained on
  (its ``../classifier`` checkpoint: Tiny ImageNet's 200), from the class names' first words."""
  from dgnam_jax.nets import checkpoint  # noqa: PLC0415 (keeps this module light to import)
  meta = checkpoint.read_metadata(os.path.join(generator_dir, '..', 'classifier'))
  return [n.split()[0] for n in meta.get('class_names') or []]


def split_units(seen_wnids: Sequence[str], n_seen: int, n_unseen: int
                ) -> tuple[list[int], list[int]]:
  """ImageNet-1k indices: ``n_seen`` classes among ``seen_wnids`` (e.g. those a generator was
  trained on) and ``n_unseen`` among the others, each an even stride through its sorted list,
  so both spread over the label range."""
  index = wnid_index()
  unknown = sorted(set(seen_wnids) - set(index))
  if unknown:
    raise ValueError(f'not ImageNet-1k wnids: {unknown[:5]}')
  seen = sorted(index[w] for w in seen_wnids)
  unseen = sorted(set(range(len(index))) - set(seen))
  if n_seen > len(seen) or n_unseen > len(unseen):
    raise ValueError(f'at most {len(seen)} seen and {len(unseen)} unseen classes')

  def pick(xs, n):
    return xs[::max(1, len(xs) // n)][:n] if n else []
  return pick(seen, n_seen), pick(unseen, n_unseen)
