"""How many requests fit on one device: the compiled step's memory, per row and fixed.

XLA reports what a compiled program needs (arguments, outputs, temporaries, minus the donated
carry it writes in place). Compiling the step for two batch sizes splits that into a fixed part
(the weights, shared by every row) and a per-row part (codes, optimizer state, activations);
the largest batch is what the device's free memory holds at ``MARGIN``.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax.synthesis import loop
from dgnam_jax.synthesis.batching import rows_of

MARGIN = 0.85  # of the free memory: XLA's allocator, the finish program and fragmentation
# Rows per device at most: past ~64 rows the CPU's throughput stops growing (BUILD_NOTES, speed)
# while host memory would allow thousands; an accelerator's batch is bounded by memory first.
MAX_ROWS = {'cpu': 64}
DEFAULT_MAX_ROWS = 1024
_PROBES = (1, 4)  # batch sizes compiled to split fixed and per-row bytes


@dataclasses.dataclass(frozen=True)
class Sizing:
  """A batch chosen from memory, with the numbers behind it (bytes, one device)."""
  batch: int
  per_row: int
  fixed: int
  capacity: int
  capacity_source: str
  limit: int  # the largest batch memory allows (before the caps)

  def describe(self) -> dict:
    """JSON-ready, for a run's provenance."""
    return dataclasses.asdict(self)


def step_bytes(recipe: loop.Recipe, pipe, params: loop.NetParams, target_row, *, objective,
               iters: int, batch: int) -> int:
  """Bytes one compiled step of ``batch`` rows needs on a device (XLA's memory analysis)."""
  init, step, _ = loop.step_program(recipe, pipe, objective, iters)
  shape = tuple(recipe.parameterization.shape(pipe))
  hyper = loop.make_hyper(batch)
  carry = jax.eval_shape(init, jax.ShapeDtypeStruct((batch,) + shape, jnp.float32), hyper)
  targets = rows_of(target_row, np.zeros(batch, np.int64))
  keys = jax.ShapeDtypeStruct((batch, 2), jnp.uint32)
  box = jnp.zeros(shape, jnp.float32)
  bounds = loop.Bounds(box, box)
  mean = jnp.asarray(pipe.classifier_space.mean, jnp.float32)
  compiled = step.lower(params, carry, targets, hyper, keys, bounds, mean,
                        jnp.int32(0)).compile()
  m = compiled.memory_analysis()
  if m is None:
    raise ValueError(f'--batch_per_device=auto: the {jax.default_backend()} backend reports no '
                     'memory analysis; pass a number')
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def device_capacity() -> tuple[int, str]:
  """(free bytes on this process's first device, where the number comes from)."""
  device = jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit'] - stats.get('bytes_in_use', 0)), f'{device.device_kind} ' \
        'bytes_limit - bytes_in_use'
  # The CPU backend reports nothing: its devices share the host's memory.
  host = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  return int(host // jax.local_device_count()), 'host memory / local devices'


def step_memory(recipe: loop.Recipe, pipe, params: loop.NetParams, target_row, *, objective,
                iters: int) -> tuple[int, int]:
  """(bytes per row, fixed bytes) of the compiled step on one device, from two batch sizes."""
  small, large = (step_bytes(recipe, pipe, params, target_row, objective=objective, iters=iters,
                             batch=b) for b in _PROBES)
  per_row = max(1, (large - small) // (_PROBES[1] - _PROBES[0]))
  return per_row, max(0, small - _PROBES[0] * per_row)


def rows_within(capacity: float, per_row: int, fixed: int) -> int:
  """Rows that fit in ``capacity`` bytes at ``MARGIN`` (may be < 1)."""
  return int((MARGIN * capacity - fixed) // per_row)


def auto_batch(recipe: loop.Recipe, pipe, params: loop.NetParams, target_row, *, objective,
               iters: int, max_rows: int) -> Sizing:
  """The largest batch per device that fits (at most ``max_rows`` and the platform's cap).

  Raises ValueError when not even one row fits, naming the bytes involved.
  """
  per_row, fixed = step_memory(recipe, pipe, params, target_row, objective=objective,
                               iters=iters)
  capacity, source = device_capacity()
  limit = rows_within(capacity, per_row, fixed)
  if limit < 1:
    raise ValueError(f'--batch_per_device=auto: not one request fits: {fixed / 2**30:.2f} GiB '
                     f'fixed + {per_row / 2**30:.3f} GiB per request against '
                     f'{capacity / 2**30:.2f} GiB free ({source})')
  cap = MAX_ROWS.get(jax.default_backend(), DEFAULT_MAX_ROWS)
  batch = max(1, min(limit, cap, max_rows))
  return Sizing(batch, per_row, fixed, capacity, source, limit)


def is_out_of_memory(error: BaseException) -> bool:
  """Whether ``error`` is a device running out of memory (XLA's RESOURCE_EXHAUSTED)."""
  if isinstance(error, MemoryError):
    return True
  text = str(error)
  return isinstance(error, jax.errors.JaxRuntimeError) and (
      'RESOURCE_EXHAUSTED' in text or 'Out of memory' in text or 'out of memory' in text)
