"""Flags of the runners that run sweeps: synthesize, search_settings, evaluate_preset, the demos
and imagenet_efficientnet."""

from __future__ import annotations

from absl import flags

from dgnam_jax import cli

CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', 0, 'XLA:CPU devices the sweep shards its rows over (0: one per core; 1: one '
    'device). Ignored where XLA_FLAGS already sets them, or on a GPU/TPU.', lower_bound=0)


def apply() -> None:
  """Call first in main(), before any JAX work."""
  cli.split_cpu(CPU_DEVICES.value)
