"""Presets are config files (``configs/NAME.py``, ml_collections, as big_vision's), read as data.

A config file defines ``get_config()`` returning a ``ConfigDict`` of :class:`SweepConfig` fields.
Relative paths in it (``generator``, ``classifier``, ``encoder``, ``bounds``, ``init_file``,
``init_codes``) are relative to the config file's own folder: the shipped presets say
``../checkpoints/cifar10/generator``. ``--preset=NAME`` is the short form of
``--config=configs/NAME.py``: ``configs/`` of the working directory, else that of the source
checkout this package runs from (the repository root beside ``dgnam_jax/``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

CONFIG_DIR = 'configs'
PATH_KEYS = ('generator', 'classifier', 'encoder', 'bounds', 'init_file', 'init_codes')
_NOT_PATHS = ('none', '')


def _search_dirs() -> list[str]:
  dirs = [CONFIG_DIR]
  spec = importlib.util.find_spec('dgnam_jax')
  if spec and spec.origin:  # a source checkout: <repo>/dgnam_jax/__init__.py, <repo>/pyproject.toml
    repo = os.path.dirname(os.path.dirname(spec.origin))
    if os.path.isfile(os.path.join(repo, 'pyproject.toml')):  # not site-packages
      dirs.append(os.path.join(repo, CONFIG_DIR))
  return dirs


def names() -> list[str]:
  """The presets found (config files not starting with '_'), sorted."""
  out = set()
  for d in _search_dirs():
    if os.path.isdir(d):
      out.update(f[:-3] for f in os.listdir(d) if f.endswith('.py') and not f.startswith('_'))
  return sorted(out)


def find(preset: str) -> str:
  """The config file of a preset name, or ``preset`` itself when it is a path to a .py file."""
  if preset.endswith('.py'):
    if not os.path.isfile(preset):
      raise ValueError(f'config file {preset} does not exist')
    return preset
  for d in _search_dirs():
    path = os.path.join(d, preset + '.py')
    if os.path.isfile(path):
      return path
  raise ValueError(f'unknown preset {preset!r}; valid: {", ".join(names())} (or a config file)')


def resolve(values: Mapping[str, Any], config_path: str) -> dict:
  """Plain values with relative paths made relative to ``config_path``'s folder."""
  base = os.path.dirname(config_path)
  out = dict(values)
  for key in PATH_KEYS:
    value = out.get(key)
    if (isinstance(value, str) and value not in _NOT_PATHS and not os.path.isabs(value)
        and not value.startswith('registry:')):  # a registry net, not a file
      out[key] = os.path.normpath(os.path.join(base, value))
  return out


def read(path: str, resolve_paths: bool = True) -> dict:
  """The values of one config file (its ``get_config()``), paths resolved unless told not to."""
  spec = importlib.util.spec_from_file_location(
      'dgnam_config_' + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    config = module.get_config()
  except Exception as e:  # a user's file: name it
    raise ValueError(f'config file {path}: {type(e).__name__}: {e}') from None
  values = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
  return resolve(values, path) if resolve_paths else values


def with_overrides(path: str, values: Mapping[str, Any]) -> dict:
  """``values`` (a config file's, after command-line overrides such as ``--config.generator=``)
  resolved: the file's own paths relative to the file, overridden ones as given (relative to the
  working directory, like every other flag)."""
  own = read(path, resolve_paths=False)
  resolved = resolve(own, path)
  return {k: resolved[k] if k in own and v == own[k] else v for k, v in values.items()}


def load(preset: str) -> dict:
  """The resolved values of a preset name or config file path."""
  return read(find(preset))
