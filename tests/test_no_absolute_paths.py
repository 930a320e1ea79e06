"""No tracked text file names an absolute filesystem path (issue 18, item 6).

Provenance (model cards, reports, checkpoint metadata, docstrings, flag help) records paths
relative to the repository, or to the working directory for files outside it (the data packs in
``../shared/data``), so that nothing names one machine's folders. Shebang lines and URLs are
allowed; so are machine-independent device paths such as ``/dev/null``.
"""

import os
import re
import subprocess

import pytest

from experiments import _training_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Top-level folders that only occur in machine-specific absolute paths.
_ROOTS = ('work', 'home', 'root', 'tmp', 'Users', 'mnt', 'opt', 'var', 'usr', 'etc', 'srv',
          'media', 'Volumes', 'private', 'scratch', 'data', 'nfs', 'gpfs', 'lustre')
# A POSIX path starts a token: not after a word character, a dot, a tilde, another slash or a
# variable (`a/var/b`, `./tmp/x`, `$HOME/tmp`, `{out}/tmp` are relative), and goes on past the
# top-level folder (a bare `/scratch/` is a .gitignore pattern, not a path).
_POSIX = re.compile(r'(?<![\w.~/\\$%*)}\]-])/(?:' + '|'.join(_ROOTS) + r')/[\w.~$@%+-]'
                    r'[^\s`\'"<>()\[\]{},;|]*')
# A Windows path: drive letter, separator, a folder name, separator.
_WINDOWS = re.compile(r'(?<![\w\\/])[A-Za-z]:(?:\\{1,2}|/)[\w .$~-]+(?:\\{1,2}|/)'
                      r'[^\s`\'"<>()\[\]{},;|]*')
_URL = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://\S*')
_SKIP_DIRS = {'.venv', '.git', 'out', 'runs', '__pycache__', 'build', 'dist', 'scratch',
              'demo_out', '.pytest_cache'}
_SKIP_FILES = {'commit_success.txt'}  # Orbax's marker, git-ignored: it names the save folder


def absolute_paths(text: str) -> list[tuple[int, str]]:
  """(line number, match) of every absolute filesystem path in ``text``, URLs and a first-line
  shebang aside."""
  hits = []
  for number, line in enumerate(text.splitlines(), 1):
    if number == 1 and line.startswith('#!'):
      continue
    line = _URL.sub(' ', line)
    hits += [(number, m.group(0)) for m in _POSIX.finditer(line)]
    hits += [(number, m.group(0)) for m in _WINDOWS.finditer(line)]
  return hits


def _tracked_files() -> list[str]:
  """Repository-relative paths of the tracked files (all files but ignored folders without
  git)."""
  try:
    out = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, check=True)
    names = [n for n in out.stdout.decode('utf-8').split('\0') if n]
    if names:
      return names
  except (OSError, subprocess.CalledProcessError):
    pass
  names = []
  for folder, dirs, files in os.walk(ROOT):
    dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.endswith('.egg-info')]
    names += [os.path.relpath(os.path.join(folder, f), ROOT) for f in files
              if f not in _SKIP_FILES]
  return names


def _text(path: str) -> str | None:
  """The file's text, None for a binary (a NUL byte or not UTF-8) or missing file."""
  try:
    with open(path, 'rb') as f:
      raw = f.read()
  except OSError:
    return None
  if b'\0' in raw:
    return None
  try:
    return raw.decode('utf-8')
  except UnicodeDecodeError:
    return None


def _abs(*parts: str) -> str:
  # Built at run time so that this file holds no absolute path itself.
  return '/'.join(('',) + parts)


@pytest.mark.parametrize('text', [
    'python -m experiments.train_classifier --data=' + _abs('work', 'shared', 'x.npz'),
    'see `' + _abs('home', 'alice', 'runs', 'a') + '`',
    '"data": "' + _abs('tmp', 'cache', 'x') + '"',
    'first line\n  ' + _abs('Users', 'bob', 'x.png'),
    '#!/bin/sh\n#!' + _abs('usr', 'bin', 'env') + ' python',  # a shebang on line 1 only
    'path C:' + '\\Users\\bob\\x.npz',
    'file://host' + ' then ' + _abs('mnt', 'disk', 'x'),
])
def test_detects_absolute_paths(text):
  assert absolute_paths(text)


@pytest.mark.parametrize('text', [
    '#!' + _abs('usr', 'bin', 'env') + ' bash',
    '--data=../shared/data/cifar10_jpeg.npz --workdir=runs/cifar10_classifier/work',
    'checkpoints/cifar10/generator; runs/tmp/x; ./tmp/y; $HOME/tmp; {out}/tmp/x',
    'BN mean/var/factor, 3/4 of the images, 95.4 % / 96.4 %',
    'redirect to /dev/null, read /proc/meminfo',
    'https://example.org' + _abs('home', 'x') + ' and file://' + _abs('tmp', 'x'),
    '/scratch/\n/runs/\n*.egg-info/',
    "print('a:\\n')",
])
def test_allows_relative_paths_urls_and_shebangs(text):
  assert not absolute_paths(text)


def test_training_provenance_paths_are_relative(tmp_path, monkeypatch):
  inside = os.path.join(ROOT, 'checkpoints', 'cifar10', 'classifier')
  outside = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'x.npz')
  monkeypatch.chdir(ROOT)
  assert _training_log.portable_path(inside) == 'checkpoints/cifar10/classifier'
  assert _training_log.portable_path(outside) == '../shared/data/x.npz'
  assert _training_log.portable_path('runs/a') == 'runs/a'
  assert (_training_log.portable_command('train_classifier',
                                         [f'--data={outside}', '--epochs=2', '--out', inside]) ==
          'python -m experiments.train_classifier --data=../shared/data/x.npz --epochs=2 '
          '--out checkpoints/cifar10/classifier')
  monkeypatch.chdir(tmp_path)  # outside the repository: relative to the working directory
  assert _training_log.portable_path(str(tmp_path / 'a' / 'b.npz')) == 'a/b.npz'
  assert _training_log.portable_path(inside) == 'checkpoints/cifar10/classifier'


def test_no_absolute_paths_in_tracked_files():
  hits = []
  for name in _tracked_files():
    text = _text(os.path.join(ROOT, name))
    if text is not None:
      hits += [f'{name}:{number}: {path}' for number, path in absolute_paths(text)]
  assert not hits, 'absolute paths in tracked files:\n' + '\n'.join(hits)
