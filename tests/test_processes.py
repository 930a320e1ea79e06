"""Scale-out: one sweep over 1, 2 and 3 processes (jax.distributed on 127.0.0.1), a killed
process, dense packing, and batch sizing from memory (out of memory injected).

The multi-process runs are `experiments.synthesize` subprocesses on the tiny nets; they share a
persistent compilation cache that the in-process reference run fills first.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
from jax.experimental.compilation_cache import compilation_cache
import numpy as np
import pytest

from dgnam_jax.sweeps import outputs, processes
from dgnam_jax.sweeps import run as sweep
from dgnam_jax.synthesis import batching, loop, sizing

import sweep_helpers

ROOT = sweep_helpers.ROOT
UNITS, SEEDS = '0-9', (0, 1, 2)  # 30 requests, 15 chunks of 2
MANY_SEEDS = '0-59'  # 600 requests: long enough to kill a process mid-run


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
  return sweep_helpers.tiny_checkpoints(tmp_path_factory.mktemp('ckpts'))


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('jax_cache'))
  before = jax.config.jax_compilation_cache_dir
  compilation_cache.set_cache_dir(path)
  compilation_cache.reset_cache()
  yield path
  compilation_cache.set_cache_dir(before)
  compilation_cache.reset_cache()


def _config(ckpts, out, **kw):
  base = dict(generator=ckpts[0], classifier=ckpts[1], out=str(out), units=UNITS, seeds=SEEDS,
              iters=2, batch_per_device=2, chunk=2)
  return sweep.SweepConfig(**{**base, **kw})


@pytest.fixture(scope='module')
def reference(ckpts, cache, tmp_path_factory):
  """The one-process sweep, in this process (it also fills the compilation cache)."""
  del cache
  out = tmp_path_factory.mktemp('one') / 'out'
  sweep.run_sweep(_config(ckpts, out))
  return sweep_helpers.tree_bytes(out)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start(ckpts, cache, out, count, seeds=','.join(map(str, SEEDS)), heartbeat=3, split=False):
  """``count`` runner processes of one sweep (``split``: each on one XLA:CPU device per core,
  the runners' default, which conftest turns off for the other tests)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=cache,
             JAX_DEFAULT_MATMUL_PRECISION=str(jax.config.jax_default_matmul_precision),
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
  if split:
    env['XLA_FLAGS'] = ' '.join(f for f in env.get('XLA_FLAGS', '').split()
                                if 'xla_force_host_platform_device_count' not in f)
  port = _free_port()
  cmd = [sys.executable, '-m', 'experiments.synthesize', f'--generator={ckpts[0]}',
         f'--classifier={ckpts[1]}', f'--out={out}', f'--units={UNITS}', f'--seeds={seeds}',
         '--iters=2', '--batch_per_device=2', '--chunk=2', f'--coordinator=127.0.0.1:{port}',
         f'--num_processes={count}', f'--heartbeat_s={heartbeat}']
  return [subprocess.Popen(cmd + [f'--process_id={i}'], env=env, cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
          for i in range(count)]


def _finish(procs, timeout=180):
  results = [p.communicate(timeout=timeout) for p in procs]
  for p, (_, err) in zip(procs, results):
    assert p.returncode == 0, err
  return results


@pytest.mark.parametrize('count', [2, 3])
def test_processes_write_the_one_process_files(ckpts, cache, reference, tmp_path, count):
  """Two processes with the runners' default CPU split (one device per core each), three with
  one device each: the files of the one-process, one-device run."""
  out = tmp_path / 'out'
  results = _finish(_start(ckpts, cache, out, count, split=count == 2))
  assert sweep_helpers.tree_bytes(out) == reference
  execution = outputs.read_manifest(str(out))['provenance']['execution']
  assert execution['processes'] == count
  assert execution['local_devices'] == (len(os.sched_getaffinity(0)) if count == 2 else 1)
  assert f'process 1 of {count}' in results[1][1]


def test_a_killed_process_stops_the_others_and_a_rerun_completes(ckpts, cache, tmp_path):
  out = tmp_path / 'out'
  victim, other = _start(ckpts, cache, out, 2, seeds=MANY_SEEDS)[::-1]
  deadline = time.monotonic() + 120
  while len(outputs.chunk_rows(str(out))) < 4:
    assert victim.poll() is None and time.monotonic() < deadline, victim.stderr.read()
    time.sleep(0.01)
  os.kill(victim.pid, signal.SIGKILL)
  killed_at = time.monotonic()
  _, err = other.communicate(timeout=60)
  assert other.returncode != 0
  assert time.monotonic() - killed_at < 30  # heartbeat 3 s; not a hang
  assert 'JAX distributed service' in err or 'Gloo' in err, err
  partial = sum(map(len, outputs.chunk_rows(str(out)).values()))
  assert 0 < partial < 600
  resumed = _finish(_start(ckpts, cache, out, 3, seeds=MANY_SEEDS))
  assert any(f'{partial} resumed' in err for _, err in resumed)
  whole = tmp_path / 'whole'
  sweep.run_sweep(_config(ckpts, whole, seeds=tuple(range(60))))
  assert sweep_helpers.tree_bytes(out) == sweep_helpers.tree_bytes(whole)


def test_process_shares_and_bad_arguments():
  assert processes.Processes(1, 3).share(range(8)) == [1, 4, 7]
  parts = [processes.Processes(i, 3).share([5, 2, 9, 4]) for i in range(3)]
  assert sorted(x for p in parts for x in p) == [2, 4, 5, 9]
  with pytest.raises(ValueError, match='together'):
    processes.initialize('127.0.0.1:1234', 2)
  with pytest.raises(ValueError, match='HOST:PORT'):
    processes.initialize('localhost', 2, 0)
  with pytest.raises(ValueError, match='process_id=2'):
    processes.initialize('127.0.0.1:1234', 2, 2)
  with pytest.raises(ValueError, match='auto'):
    processes.initialize('127.0.0.1:1234', 2, 0, auto=True)
  assert processes.initialize('127.0.0.1:1234', 1, 0) == processes.Processes(0, 1)
  if not any(k.startswith(('SLURM_', 'OMPI_', 'TPU_')) for k in os.environ):
    with pytest.raises(ValueError, match='found no cluster'):
      processes.initialize(auto=True)


def _batches(keys, batch, devices=1):
  return len(batching.pack_slots(np.asarray(keys), batch, devices))


@pytest.mark.parametrize('stride', [1, 5, 10, 21, 64])
def test_dense_packing_takes_the_fewest_batches(stride):
  units = np.arange(20) * stride
  dense = _batches(np.arange(len(units)), 8)
  keyed = _batches(batching.slot_keys_of(units, np.zeros_like(units)), 8)
  assert dense == 3 and keyed >= dense
  assert (keyed == dense) == (stride in (1, 5, 21))  # strides sharing no factor with 8


def _code(out, unit):
  row = next(r for r in outputs.read_manifest(str(out))['rows'] if r['unit'] == unit)
  return np.load(os.path.join(out, row['code']))[row['code_index']]


def test_dense_sweeps_are_chunk_invariant_and_need_fewer_calls(ckpts, cache, tmp_path):
  del cache
  calls = {}
  for name, kw in {'keyed': dict(slot_keyed=True, chunk=4), 'dense': dict(chunk=4),
                   'dense_chunk2': dict(chunk=2)}.items():
    seen = []
    sweep.run_sweep(_config(ckpts, tmp_path / name, units='0,2,4,6', seeds=(0,), **kw),
                    seen.append)
    calls[name] = len(seen)
  dense, again = (sweep_helpers.tree_bytes(tmp_path / n) for n in ('dense', 'dense_chunk2'))
  assert {k: v for k, v in dense.items() if 'chunk' not in k and 'manifest' not in k} == {
      k: v for k, v in again.items() if 'chunk' not in k and 'manifest' not in k}
  doc = outputs.read_manifest(str(tmp_path / 'dense'))
  assert doc['settings']['packing'] == 'dense'
  # Units 0, 2, 4, 6 all sit in slot 0 of a 2-row batch when keyed: 4 calls; dense: 2 (plus
  # one report per saved chunk).
  assert calls['keyed'] > calls['dense']
  # Slot-keyed: unit 6 alone gives the bits it had among the four.
  sweep.run_sweep(_config(ckpts, tmp_path / 'alone', units='6', seeds=(0,), slot_keyed=True))
  assert _code(tmp_path / 'alone', 6).tobytes() == _code(tmp_path / 'keyed', 6).tobytes()
  with pytest.raises(ValueError, match='packing'):
    sweep.run_sweep(_config(ckpts, tmp_path / 'dense', units='0,2,4,6', seeds=(0,), chunk=4,
                            slot_keyed=True))


def test_auto_batch_comes_from_the_step_memory(ckpts, cache, tmp_path, monkeypatch):
  del cache
  plan = sweep.plan_sweep(_config(ckpts, tmp_path / 'a', batch_per_device='auto'))
  sizing_desc = plan.provenance['execution']['batch_sizing']
  assert plan.config.batch_per_device == sizing_desc['batch'] == 30  # all requests, 1 device
  assert sizing_desc['per_row'] > 0 and sizing_desc['fixed'] > 0
  monkeypatch.setattr(sizing, 'device_capacity',
                      lambda: (int((sizing_desc['fixed'] + 3.5 * sizing_desc['per_row'])
                                   / sizing.MARGIN), 'test'))
  plan = sweep.plan_sweep(_config(ckpts, tmp_path / 'b', batch_per_device='auto'))
  assert plan.config.batch_per_device == 3


def test_out_of_memory_halves_the_batch_once_before_the_first_chunk(ckpts, cache, tmp_path,
                                                                    monkeypatch, caplog):
  del cache
  real = loop.run

  def small_device(*args, batch_per_device, **kw):
    if batch_per_device > 2:
      raise jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory allocating 1 GiB')
    return real(*args, batch_per_device=batch_per_device, **kw)

  monkeypatch.setattr(loop, 'run', small_device)
  out = tmp_path / 'oom'
  doc = sweep.run_sweep(_config(ckpts, out, batch_per_device=8, chunk=0))
  assert doc['settings']['batch_per_device'] == 2 and len(doc['rows']) == 30
  assert [r.message for r in caplog.records].count(
      'out of memory at --batch_per_device=8 before the first chunk; retrying with 4') == 1
  want = tmp_path / 'want'
  monkeypatch.setattr(loop, 'run', real)
  sweep.run_sweep(_config(ckpts, want, batch_per_device=2, chunk=0))
  assert sweep_helpers.tree_bytes(out) == sweep_helpers.tree_bytes(want)


def test_out_of_memory_after_a_chunk_names_the_batch_to_rerun_with(ckpts, cache, tmp_path,
                                                                  monkeypatch):
  del cache
  real, calls = loop.run, []

  def fails_later(*args, **kw):
    calls.append(1)
    if len(calls) > 1:
      raise jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory')
    return real(*args, **kw)

  monkeypatch.setattr(loop, 'run', fails_later)
  with pytest.raises(ValueError, match=r'batch_per_device=2 in chunk 1 .*--batch_per_device=1'):
    sweep.run_sweep(_config(ckpts, tmp_path / 'late'))
  assert len(outputs.chunk_rows(str(tmp_path / 'late'))) == 1
