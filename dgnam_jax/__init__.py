"""dgnam_jax: DGN-AM (Nguyen et al., NIPS 2016) as a JAX/Flax library.

The package follows the pipeline (dependencies point one way):

  caffe/        formats: prototxt, caffemodel, mean files
  nets/         Flax modules (Caffe-exact), checkpoints, loading, the generator -> classifier
                Pipeline
  synthesis/    parameterizations x optax transformations x objectives, one loop, the methods
                registry
  sweeps/       many (unit, seed) requests: plan, run (resumable), outputs (manifest, gallery, GIF)
  evaluation/   metrics, judges, per-run reports
  training/     the project's own classifiers and generators

Public API:
  load_pair(generator_dir, classifier_dir) -> (pipe, gen params, clf params, metas)   load nets
  load_checkpoint(path) -> (module, params, metadata)
  optimize_codes(pipe, NetParams(g, c), codes0, targets, *, objective, ...)           DGN-AM
  synthesize(method, pipe, params, init, targets, *, objective, ...)                 any method
  methods: names(), get(name), register(Method(...)), initial_state(...)
  run_sweep(SweepConfig(...)) / config_with_preset(name, ...)                        a sweep
  Objective, Target, make_targets, Hyper, make_hyper, Bounds, NetParams, SynthesisResult
  Pipeline, ImageSpace, seeded_codes, original_codes
  CaffeGraph, CaffeNet, DeePSimGenerator, NetOutputs, NETS, net_info, caffe
"""

from dgnam_jax import caffe
from dgnam_jax.nets import NETS, CaffeGraph, CaffeNet, DeePSimGenerator, NetOutputs, net_info
from dgnam_jax.nets.checkpoint import load_checkpoint
from dgnam_jax.nets.loading import load_pair
from dgnam_jax.nets.pipeline import ImageSpace, Pipeline
from dgnam_jax.synthesis import methods
from dgnam_jax.synthesis.api import optimize_codes, synthesize
from dgnam_jax.synthesis.codes import original_codes, seeded_codes
from dgnam_jax.synthesis.loop import (Bounds, Devices, Hyper, Loop, NetParams, SynthesisResult,
                                      make_hyper)
from dgnam_jax.synthesis.objectives import Objective, Target, make_targets
from dgnam_jax.sweeps.plan import SweepConfig
from dgnam_jax.sweeps.run import config_with_preset, run_sweep

__version__ = '0.1.0'

__all__ = ['Bounds', 'CaffeGraph', 'CaffeNet', 'DeePSimGenerator', 'Devices', 'Hyper',
           'ImageSpace', 'Loop', 'NETS', 'NetOutputs', 'NetParams', 'Objective', 'Pipeline',
           'SweepConfig', 'SynthesisResult', 'Target', 'caffe', 'config_with_preset',
           'load_checkpoint', 'load_pair', 'make_hyper', 'make_targets', 'methods', 'net_info',
           'optimize_codes', 'original_codes', 'run_sweep', 'seeded_codes', 'synthesize']
