"""Bookkeeping shared by the hand-written nets: blobs, layer outputs and an early stop."""

from __future__ import annotations

import jax

from dgnam_jax.nets.graph import NetOutputs


class StopForward(Exception):
  """Raised (at trace time) when the requested ``end`` layer has run."""


class Recorder:
  """Collects what Caffe would hold after each layer, like ``CaffeGraph`` does.

  ``add(layer, blob, value)`` stores ``value`` as the output of ``layer`` and as the current value
  of ``blob`` (an in-place layer passes its bottom's blob name), and stops after ``end``.
  """

  def __init__(self, end: str | None):
    self.end = end
    self.blobs: dict[str, jax.Array] = {}
    self.layers: dict[str, jax.Array] = {}

  def add(self, layer: str, blob: str, value: jax.Array) -> jax.Array:
    self.blobs[blob] = value
    self.layers[layer] = value
    if layer == self.end:
      raise StopForward
    return value

  def outputs(self) -> NetOutputs:
    if self.end is not None and self.end not in self.layers:
      raise KeyError(f'no layer named {self.end!r}')
    return NetOutputs(self.blobs, self.layers)
