"""A schema-less parser for protobuf text format (``.prototxt``) and the generic Message tree.

Both this parser and the binary decoder (:mod:`wire`) produce :class:`Message` trees, so one
normaliser serves every encoding. Text values are ``str`` (quoted strings), ``int``, ``float``,
``bool``, :class:`Ident` (a bare identifier: an enum value name) or a nested :class:`Message`.
The parser knows no schema: which names are allowed is checked later against :mod:`schema`.
"""

from __future__ import annotations

import bisect
import math
import re
from typing import Any

from dgnam_jax.caffe.netdef import CaffeFormatError


class Ident(str):
  """A bare identifier in text format, e.g. the enum value ``MAX`` in ``pool: MAX``."""

  def __repr__(self) -> str:
    return f'Ident({str.__repr__(self)})'


class Message:
  """A decoded message: field name -> list of values, in the order they appeared.

  Attributes:
    fields: name -> values (one per occurrence; a packed repeated field adds several).
    line: the 1-based line where the message starts in a text file (0 for binary input).
    lines: name -> line of the field's first occurrence (text input only).
  """
  __slots__ = ('fields', 'line', 'lines')

  def __init__(self, line: int = 0):
    self.fields: dict[str, list[Any]] = {}
    self.line = line
    self.lines: dict[str, int] = {}

  def add(self, name: str, value: Any, line: int = 0) -> None:
    """Appends one value of field ``name``."""
    values = self.fields.get(name)
    if values is None:
      self.fields[name] = [value]
      if line:
        self.lines[name] = line
    else:
      values.append(value)

  def get(self, name: str, default: Any = None) -> Any:
    """The last value of ``name`` (proto2 semantics for an optional field), or ``default``."""
    values = self.fields.get(name)
    return values[-1] if values else default

  def getall(self, name: str) -> list[Any]:
    """Every value of ``name`` (empty when absent)."""
    return self.fields.get(name, [])

  def __contains__(self, name: object) -> bool:
    return name in self.fields

  def __repr__(self) -> str:
    return f'Message({self.fields!r})'


# One alternative per token kind; the first that matches at the current position wins.
_TOKEN = re.compile(r'''
    (?P<space>[ \t\r\n\f\v]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\[^\n])*"|'(?:[^'\\\n]|\\[^\n])*')
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>:;,\[\]\-+])
''', re.VERBOSE)

_SIMPLE_ESCAPES = {'n': b'\n', 't': b'\t', 'r': b'\r', 'a': b'\a', 'b': b'\b', 'f': b'\f',
                   'v': b'\v', '\\': b'\\', "'": b"'", '"': b'"', '?': b'?'}
_ESCAPE = re.compile(r'\\(?:([0-7]{1,3})|[xX]([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})'
                     r'|U([0-9a-fA-F]{8})|(.))', re.DOTALL)
_BOOLS = {'true': True, 'True': True, 't': True, 'false': False, 'False': False, 'f': False}
_FLOAT_WORDS = {'inf': math.inf, 'infinity': math.inf, 'nan': math.nan}


# Deepest message nesting accepted: Caffe's nets nest 4 levels (layer > param > shape > dim);
# the limit keeps a hostile file from exhausting Python's recursion (a clean error instead).
MAX_DEPTH = 64


class _Parser:
  """Recursive-descent parser over a token list."""

  def __init__(self, text: str, filename: str):
    self.depth = 0
    self.filename = filename
    self.text = text
    self.line_starts = [0] + [m.end() for m in re.finditer('\n', text)]
    self.tokens = self._tokenize()
    self.i = 0

  # ---- positions and errors ----------------------------------------------------------------

  def _line_col(self, pos: int) -> tuple[int, int]:
    line = bisect.bisect_right(self.line_starts, pos)
    return line, pos - self.line_starts[line - 1] + 1

  def error(self, pos: int, what: str) -> CaffeFormatError:
    line, col = self._line_col(pos)
    return CaffeFormatError(f'{self.filename}:{line}:{col}: {what}')

  # ---- tokens ------------------------------------------------------------------------------

  def _tokenize(self) -> list[tuple[str, str, int]]:
    text, pos, out = self.text, 0, []
    while pos < len(text):
      m = _TOKEN.match(text, pos)
      if m is None:
        ch = text[pos]
        if ch in '"\'':
          raise self.error(pos, 'unterminated string')
        raise self.error(pos, f'unexpected character {ch!r}')
      kind = m.lastgroup
      if kind == 'number' and m.end() < len(text) and (text[m.end()].isalnum() or
                                                       text[m.end()] in '_.'):
        raise self.error(pos, f'invalid number {text[pos:m.end() + 1]!r}')
      if kind != 'space':
        out.append((kind, m.group(), pos))
      pos = m.end()
    out.append(('eof', '', len(text)))
    return out

  def peek(self) -> tuple[str, str, int]:
    return self.tokens[self.i]

  def take(self) -> tuple[str, str, int]:
    tok = self.tokens[self.i]
    if tok[0] != 'eof':
      self.i += 1
    return tok

  def accept(self, punct: str) -> bool:
    kind, value, _ = self.tokens[self.i]
    if kind == 'punct' and value == punct:
      self.i += 1
      return True
    return False

  def expect(self, punct: str, context: str) -> None:
    if not self.accept(punct):
      kind, value, pos = self.peek()
      got = 'end of file' if kind == 'eof' else repr(value)
      raise self.error(pos, f'expected {punct!r} {context}, got {got}')

  # ---- grammar -----------------------------------------------------------------------------

  def parse_body(self, msg: Message, closer: str | None) -> Message:
    """Fields until ``closer`` (or end of file for the top level)."""
    while True:
      kind, value, pos = self.peek()
      if kind == 'eof':
        if closer is not None:
          raise self.error(pos, f'unexpected end of file: missing {closer!r}')
        return msg
      if kind == 'punct' and value == closer:
        self.take()
        return msg
      if kind != 'ident':
        raise self.error(pos, f'expected a field name, got {value!r}')
      self.take()
      self.parse_field(msg, value, pos)
      if not self.accept(';'):
        self.accept(',')

  def parse_field(self, msg: Message, name: str, name_pos: int) -> None:
    line = self._line_col(name_pos)[0]
    colon = self.accept(':')
    kind, value, pos = self.peek()
    if kind == 'punct' and value in '{<':
      msg.add(name, self.parse_message(), line)
    elif kind == 'punct' and value == '[':
      self.take()
      if not self.accept(']'):
        while True:
          msg.add(name, self.parse_value(colon), line)
          if self.accept(']'):
            break
          self.expect(',', 'between list values')
    elif not colon:
      raise self.error(pos, f"expected ':' or '{{' after field name {name!r}")
    else:
      msg.add(name, self.parse_value(True), line)

  def parse_message(self) -> Message:
    _, opener, pos = self.take()
    if self.depth >= MAX_DEPTH:
      raise self.error(pos, f'messages nested deeper than {MAX_DEPTH} levels')
    self.depth += 1
    try:
      return self.parse_body(Message(self._line_col(pos)[0]), '}' if opener == '{' else '>')
    finally:
      self.depth -= 1

  def parse_value(self, scalar_ok: bool) -> Any:
    kind, value, pos = self.peek()
    if kind == 'punct' and value in '{<':
      return self.parse_message()
    if not scalar_ok:
      raise self.error(pos, f"expected ':' before scalar value {value!r}")
    if kind == 'string':
      parts = []
      while self.peek()[0] == 'string':  # adjacent literals concatenate, as in C
        _, literal, literal_pos = self.take()
        parts.append(self._unescape(literal, literal_pos))
      return ''.join(parts)
    sign = None
    if kind == 'punct' and value in '-+':
      self.take()
      sign = -1 if value == '-' else 1
      kind, value, pos = self.peek()
    if kind == 'number':
      self.take()
      return (sign or 1) * _number(value)
    if kind == 'ident':
      self.take()
      word = _FLOAT_WORDS.get(value.lower())
      if word is not None:
        return (sign or 1) * word
      if sign is not None:
        raise self.error(pos, f'expected a number after the sign, got {value!r}')
      return _BOOLS.get(value, Ident(value))
    got = 'end of file' if kind == 'eof' else repr(value)
    raise self.error(pos, f'expected a value, got {got}')

  def _unescape(self, literal: str, pos: int) -> str:
    body = literal[1:-1]
    if '\\' not in body:
      return body
    out = bytearray()
    last = 0
    for m in _ESCAPE.finditer(body):
      out += body[last:m.start()].encode('utf-8')
      octal, hex2, u4, u8, other = m.groups()
      if octal:
        out.append(int(octal, 8) & 0xFF)
      elif hex2:
        out.append(int(hex2, 16))
      elif u4 or u8:
        out += chr(int(u4 or u8, 16)).encode('utf-8', 'surrogatepass')
      elif other in _SIMPLE_ESCAPES:
        out += _SIMPLE_ESCAPES[other]
      else:
        raise self.error(pos + 1 + m.start(), f'invalid escape sequence \\{other}')
      last = m.end()
    out += body[last:].encode('utf-8')
    try:
      return out.decode('utf-8')
    except UnicodeDecodeError as e:
      raise self.error(pos, 'string is not valid UTF-8 after unescaping') from e


def _number(text: str) -> int | float:
  if text[:2] in ('0x', '0X'):
    return int(text, 16)
  if text[-1] in 'fF':
    return float(text[:-1])
  if any(c in text for c in '.eE'):
    return float(text)
  if len(text) > 1 and text[0] == '0' and text.isdigit() and set(text) <= set('01234567'):
    return int(text, 8)  # protobuf's text format reads a leading 0 as octal
  return int(text)


def parse(text: str, filename: str = '<string>') -> Message:
  """Parses protobuf text format into a :class:`Message` tree.

  Args:
    text: the prototxt contents.
    filename: used in error messages.

  Returns:
    The top-level message (line 1).

  Raises:
    CaffeFormatError: on a syntax error, as ``"<file>:<line>:<col>: <what>"``.
  """
  if text.startswith('\ufeff'):
    text = text[1:]
  parser = _Parser(text, filename)
  return parser.parse_body(Message(1), None)
