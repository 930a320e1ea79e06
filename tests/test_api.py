"""The public API: the docstring example runs, keyword-only arguments, typed bounds and enums."""

import doctest

import numpy as np
import pytest

import dgnam_jax
from dgnam_jax.nets import tiny
from dgnam_jax.synthesis import api


def test_docstring_examples_run():
  result = doctest.testmod(api, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted >= 5 and result.failed == 0


def test_import_exposes_nets_pipeline_methods_and_sweeps():
  for name in ('load_pair', 'load_checkpoint', 'Pipeline', 'optimize_codes', 'synthesize',
               'methods', 'run_sweep', 'config_with_preset', 'SweepConfig', 'Bounds',
               'NetParams', 'Loop', 'Devices'):
    assert hasattr(dgnam_jax, name), name
  assert 'dgnam' in dgnam_jax.methods.names()


def test_settings_are_keyword_only_and_sentinels_are_typed():
  pipe, gp, cp = tiny.pipeline()
  codes0 = np.zeros((1, 16), np.float32)
  args = (pipe, dgnam_jax.NetParams(gp, cp), codes0, dgnam_jax.make_targets([1]))
  with pytest.raises(TypeError):
    # pylint: disable-next=too-many-function-args
    dgnam_jax.optimize_codes(*args, dgnam_jax.Objective('fc8'))
  with pytest.raises(TypeError, match='loop must be a Loop'):
    dgnam_jax.optimize_codes(*args, objective=dgnam_jax.Objective('fc8'), loop='scan', iters=1)
  with pytest.raises(TypeError, match='mesh must be'):
    dgnam_jax.optimize_codes(*args, objective=dgnam_jax.Objective('fc8'), mesh='auto', iters=1)
