"""Tiny stand-ins for the DeePSim generator and CaffeNet (same layer kinds, seconds on a CPU);
they live in :mod:`dgnam_jax.nets.tiny` so that docstring examples and benchmarks share them."""

from dgnam_jax.nets.tiny import CLASSIFIER, GENERATOR, random_params  # noqa: F401 (re-exported)
from dgnam_jax.nets.tiny import pipeline as tiny_pipeline  # noqa: F401 (re-exported)
