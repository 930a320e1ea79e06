"""Flags of the runners that read a generator against images: code_bounds, score_generator."""

from __future__ import annotations

from absl import flags

from dgnam_jax import data

ENCODER = flags.DEFINE_string('encoder', None, 'Encoder (classifier) checkpoint; default: the '
                              "one the generator's metadata names.")
DATA = flags.DEFINE_string('data', None, 'JPEG-pack .npz or image folder.')
SPLIT = flags.DEFINE_enum('split', 'test', ['train', 'test'], 'Which split (held-out: test).')
CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Decoded-image cache.')
IMAGE_SIZE = flags.DEFINE_integer('image_size', None, 'Resize images to this square size.')


def images() -> data.ImageSet:
  """The split the flags name."""
  return data.load_split(DATA.value, SPLIT.value, CACHE_DIR.value, IMAGE_SIZE.value)
