"""Sweeps: --units parsing, run_sweep end to end, chunk invariance, bad requests, the
experiments.synthesize runner, and kill -9 + resume giving the files of an uninterrupted run.

Compiling the DGN-AM loop for the tiny nets takes ~9 s per objective on a 2-core CPU. The tests
therefore use two programs only (fc8 unit with GIF snapshots, fc8 blend; iters 2, batch 2): the
in-process sweep compiles them into a persistent compilation cache, which the runner subprocesses
then read.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
from jax.experimental.compilation_cache import compilation_cache
import numpy as np
from PIL import Image
import pytest

from dgnam_jax.sweeps import outputs
from dgnam_jax.sweeps import run as sweep
from dgnam_jax.sweeps import requests as units
from dgnam_jax.sweeps.requests import Request
from dgnam_jax.synthesis import methods

import sweep_helpers

ROOT, CODE, CLASSES = sweep_helpers.ROOT, sweep_helpers.CODE, sweep_helpers.CLASSES


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
  """(generator, classifier, generator without bounds) checkpoint directories."""
  return sweep_helpers.tiny_checkpoints(tmp_path_factory.mktemp('ckpts'))


def _config(ckpts, out, **kw):
  base = dict(generator=ckpts[0], classifier=ckpts[1], out=str(out), units='0,2,1+3',
              seeds=(0, 1), iters=2, batch_per_device=2, gif_units='0,2', gif_every=1)
  return sweep.SweepConfig(**{**base, **kw})


_files = sweep_helpers.tree_bytes


# --- --units ----------------------------------------------------------------------------------

def test_parse_units_all_syntaxes_keep_order():
  got = units.parse_units(' 17, 5-7,12@3x5 ,mean:4,643+945,mean:1-2,3@1x2+7,mean:8+mean:9, 0')
  assert got == [Request(17), Request(5), Request(6), Request(7), Request(12, (3, 5)),
                 Request(4, channel_mean=True), Request(643, blend_unit=945),
                 Request(1, channel_mean=True), Request(2, channel_mean=True),
                 Request(3, (1, 2), blend_unit=7),
                 Request(8, channel_mean=True, blend_unit=9), Request(0)]
  assert [r.spec() for r in got][4:7] == ['12@3x5', 'mean:4', '643+945']
  with_seeds = units.with_seeds(units.parse_units('9,3'), [1, 0])
  assert [(r.unit, r.seed) for r in with_seeds] == [(9, 1), (9, 0), (3, 1), (3, 0)]


@pytest.mark.parametrize('spec', ['1,0-3', '4+5,5+4', '2@1x1,2@1x1', 'mean:3,mean:2-4', '3+3',
                                  '5+2@1x1', 'mean:2@1x1', 'mean:1+2', 'x', '', '1,,2', '3-1',
                                  '-1', '1@2'])
def test_parse_units_rejects(spec):
  with pytest.raises(ValueError, match='--units'):
    units.parse_units(spec)


def test_short_class_name():
  assert units.short_class_name('n01440764 tench, Tinca tinca') == ('tench', 'n01440764')
  assert units.short_class_name('/a/alley 2') == ('alley', None)
  assert units.short_class_name('/s/swimming_pool/outdoor 170') == ('swimming_pool/outdoor', None)
  assert units.short_class_name('my class') == ('my class', None)


def test_presets_and_explicit_overrides():
  cfg = sweep.config_with_preset('googlenet', generator='g', classifier='c', out='o')
  assert (cfg.layer, cfg.lr, cfg.iters, cfg.l2, cfg.lr_end) == ('loss3/classifier', 2.0, 200,
                                                               0.99, 1e-10)
  assert cfg.units == '643,624,304,629,437'
  cfg = sweep.config_with_preset('googlenet', generator='g', classifier='c', out='o', lr=3.0,
                                 units='1')
  assert (cfg.lr, cfg.units) == (3.0, '1')
  assert sweep.config_with_preset('places205_conv5', generator='g', classifier='c',
                                  out='o').layer == 'conv5'
  with pytest.raises(ValueError, match='--units'):
    sweep.config_with_preset(None, generator='g', classifier='c', out='o')
  with pytest.raises(ValueError, match='preset'):
    sweep.config_with_preset('vgg', generator='g', classifier='c', out='o', units='1')
  # Only DGN-AM methods need a generator.
  with pytest.raises(ValueError, match='--generator'):
    sweep.config_with_preset(None, classifier='c', out='o', units='1', method='dgnam_adam')
  cfg = sweep.config_with_preset(None, classifier='c', out='o', units='1', method='pixel_tv')
  assert cfg.generator is None and cfg.method == 'pixel_tv'


# --- run_sweep ----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def jax_cache(tmp_path_factory):
  """A persistent compilation cache for this module (and its subprocesses), then none again."""
  path = str(tmp_path_factory.mktemp('jax_cache'))
  before = jax.config.jax_compilation_cache_dir
  compilation_cache.set_cache_dir(path)
  compilation_cache.reset_cache()  # re-read the setting at the next compile
  yield path
  compilation_cache.set_cache_dir(before)
  compilation_cache.reset_cache()


@pytest.fixture(scope='module')
def base_run(ckpts, jax_cache, tmp_path_factory):
  del jax_cache
  out = tmp_path_factory.mktemp('sweep') / 'out'
  events = []
  manifest = sweep.run_sweep(_config(ckpts, out), events.append, argv=['test'])
  return out, manifest, events


def test_sweep_end_to_end(base_run):
  out, manifest, events = base_run
  rows = manifest['rows']
  want = [(0, None, 0), (0, None, 1), (2, None, 0), (2, None, 1), (1, 3, 0), (1, 3, 1)]
  assert [(r['unit'], r['blend_unit'], r['seed']) for r in rows] == want  # request order
  assert events[-1].done == events[-1].total == 6
  with open(out / outputs.MANIFEST_JSON) as f:
    assert json.load(f)['rows'] == rows
  assert set(manifest) >= {'rows', 'settings', 'provenance', 'progress'}
  assert manifest['progress']['complete']
  assert manifest['settings']['units'] == ['0', '2', '1+3']
  for key, kind in [('name', str), ('layer', str), ('unit', int), ('objective', str),
                    ('minimize', bool), ('seed', int), ('iters', int), ('lr', float),
                    ('lr_end', float), ('l2', float), ('activation', float),
                    ('activation_init', float), ('image', str), ('code', str),
                    ('code_index', int), ('final_code', str), ('class_name', str),
                    ('wnid', str)]:
    assert all(isinstance(r[key], kind) for r in rows), key
  assert rows[0]['name'] == 'fc8_0000_02_0.99_8.0__0'
  assert rows[0]['position'] is None and rows[0]['gamma'] is None
  assert (rows[0]['class_name'], rows[0]['wnid']) == ('class0', 'n00000000')
  assert rows[4]['gamma'] == 0.1 and rows[4]['blend_class_name'] == 'class3'
  assert rows[4]['name'] == 'fc8_0001_02_0.99_8.0__0_plus0003_g0.1'
  for r in rows:
    assert np.isfinite(r['activation']) and np.isfinite(r['activation_init'])
    for key in ('image', 'code', 'final_code'):
      assert os.path.isfile(out / r[key])
    with Image.open(out / r['image']) as im:
      assert (im.format, im.size) == ('PNG', (14, 14))
  for k in range(len({r['code'] for r in rows})):
    code = np.load(out / f'codes/chunk_{k:05d}_code.npy', allow_pickle=False)
    final = np.load(out / f'codes/chunk_{k:05d}_final.npy', allow_pickle=False)
    n = sum(r['code'].endswith(f'{k:05d}_code.npy') for r in rows)
    assert code.shape == final.shape == (n, CODE) and code.dtype == np.float32
    assert code.min() >= 0 and final.min() >= 0  # clipped to [0, ub] after a step
  for name in ('index.html', 'grid.png', outputs.MANIFEST_CSV):
    assert os.path.isfile(out / name)
  assert not [f for _, _, fs in os.walk(out) for f in fs if f.startswith('.tmp-')]


def test_rerun_of_finished_sweep_keeps_files(base_run, ckpts):
  out, manifest, _ = base_run
  before = _files(out)
  events = []
  again = sweep.run_sweep(_config(ckpts, out), events.append)
  assert events[-1].skipped == 6
  assert again['rows'] == manifest['rows']
  assert _files(out) == before


def test_results_do_not_depend_on_chunk(base_run, ckpts, tmp_path):
  out, manifest, _ = base_run
  ref = {k: v for k, v in _files(out).items() if k.endswith('.png') and k != 'grid.png'}
  codes = lambda d, rows: np.stack([np.load(d / r['code'])[r['code_index']] for r in rows])
  for chunk in (1, 5):
    other = tmp_path / f'chunk{chunk}'
    rows = sweep.run_sweep(_config(ckpts, other, chunk=chunk))['rows']
    np.testing.assert_array_equal(codes(other, rows), codes(out, manifest['rows']))
    assert [r['activation'] for r in rows] == [r['activation'] for r in manifest['rows']]
    assert {k: v for k, v in _files(other).items() if k in ref} == ref


def _write(path, array):
  np.save(path, np.asarray(array), allow_pickle=False)
  return str(path)


@pytest.mark.parametrize('case', [
    'unit_range', 'blend_range', 'layer', 'position', 'fc_position', 'fc_mean', 'duplicate',
    'bounds_missing', 'bounds_length', 'no_bounds', 'init_nan', 'init_rows', 'init_shape',
    'gif_subset', 'softmax_mean'])
def test_bad_requests_fail_before_writing(ckpts, tmp_path, case):
  out = tmp_path / 'out'
  good = np.ones((6, CODE), np.float32)
  kw = {
      'unit_range': dict(units='0,10'), 'blend_range': dict(units='1+10'),
      'layer': dict(layer='fc9'), 'position': dict(layer='conv2', units='1@6x0'),
      'fc_position': dict(units='1@0x0'), 'fc_mean': dict(units='mean:1'),
      'duplicate': dict(units='1,0-2'),
      'bounds_missing': dict(bounds=str(tmp_path / 'nope.txt')),
      'bounds_length': dict(bounds=_write(tmp_path / 'b.npy', np.ones(CODE - 1))),
      'no_bounds': dict(generator=ckpts[2]),
      'init_nan': dict(init_codes=_write(tmp_path / 'c.npy', np.where(
          np.arange(CODE) == 3, np.nan, good))),
      'init_rows': dict(init_codes=_write(tmp_path / 'c.npy', good[:5])),
      'init_shape': dict(init_codes=_write(tmp_path / 'c.npy', good[:, :8])),
      'gif_subset': dict(gif_units='5'),
      'softmax_mean': dict(layer='conv2', units='mean:1', objective='softmax'),
  }[case]
  with pytest.raises(ValueError):
    sweep.run_sweep(_config(ckpts, out, **kw))
  assert not out.exists()


def test_bounds_none_and_text_file_accepted(ckpts, tmp_path):
  text = tmp_path / 'fc6.txt'
  text.write_text(' '.join(['3'] * CODE) + '\n')  # act_range/3x/fc6.txt format
  for bounds, source in [('none', 'none'), (str(text), 'file')]:
    plan = sweep.plan_sweep(_config(ckpts, tmp_path / 'out', bounds=bounds))
    assert plan.settings['bounds']['source'] == source
  assert np.isinf(plan.upper).sum() == 0 and plan.upper.max() == 3


def test_plan_conv_units_and_initial_codes(ckpts, tmp_path):
  out = tmp_path / 'out'
  plan_of = lambda **kw: sweep.plan_sweep(_config(ckpts, out, gif_units='', **kw))
  plan = plan_of(layer='conv2', units='1,mean:2,3@1x2,4@0x0+5', seeds=(0,))
  assert [r['position'] for r in plan.rows] == [[3, 3], None, [1, 2], [0, 0]]  # 6x6 map
  assert [r['name'][len('conv2_000'):] for r in plan.rows] == [
      '1_02_0.99_8.0__0', '2_02_0.99_8.0__0_mean', '3_02_0.99_8.0__0_y1x2',
      '4_02_0.99_8.0__0_y0x0_plus0005_g0.1']
  assert len(set(plan.objectives)) == 3 and 'class_name' not in plan.rows[0]
  plan = plan_of(units='1,2', init='original')
  np.testing.assert_array_equal(plan.codes0[::2], plan.codes0[:1].repeat(2, 0))  # per seed
  codes = np.arange(4 * CODE, dtype=np.float32).reshape(4, CODE)
  plan = plan_of(units='1,2', init_codes=_write(tmp_path / 'c.npy', codes))
  np.testing.assert_array_equal(plan.codes0, codes)
  Image.new('RGB', (20, 10), (200, 30, 90)).save(tmp_path / 'init.png')
  plan = plan_of(units='1,2', init='image', init_file=str(tmp_path / 'init.png'))
  assert plan.codes0.shape == (4, CODE) and (plan.codes0 == plan.codes0[0]).all()
  assert plan.codes0.min() >= 0 and plan.settings['init']['kind'] == 'image'  # post-ReLU fc6
  assert not out.exists()


def test_other_settings_in_same_out_is_an_error(base_run, ckpts):
  out, _, _ = base_run
  before = _files(out)
  with pytest.raises(ValueError, match='different settings .*lr'):
    sweep.run_sweep(_config(ckpts, out, lr=1.0))
  assert _files(out) == before


# --- the runner -----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def cli_env(jax_cache):
  # The in-process tests' settings, so the runner finds their programs in the cache.
  env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=jax_cache,
             JAX_DEFAULT_MATMUL_PRECISION=str(jax.config.jax_default_matmul_precision))
  env['PYTHONPATH'] = os.pathsep.join([ROOT, env.get('PYTHONPATH', '')])
  return env


def _cli(ckpts, out, *extra):
  return [sys.executable, '-m', 'experiments.synthesize', f'--generator={ckpts[0]}',
          f'--classifier={ckpts[1]}', f'--out={out}', '--iters=2', '--batch_per_device=2',
          '--gif_every=1', *extra]


# 24 requests, all on the cached unit + GIF program.
_CLI_SWEEP = ('--units=0-7', '--seeds=0,1,2', '--chunk=2', '--gif_units=0-7')


def test_cli_bad_request_exits_1(ckpts, cli_env, tmp_path):
  out = tmp_path / 'out'
  proc = subprocess.run(_cli(ckpts, out, '--units=3,99'), env=cli_env, cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1, proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith('synthesize: error: unit 99 is out')
  assert not out.exists()


@pytest.fixture(scope='module')
def cli_runs(base_run, ckpts, cli_env, tmp_path_factory):
  """A runner sweep killed (SIGKILL) after its first chunk and rerun with the same flags, and
  the same sweep uninterrupted, in-process (same compiled program: base_run cached it)."""
  del base_run
  root = tmp_path_factory.mktemp('cli')
  whole, killed = root / 'whole', root / 'killed'
  victim = subprocess.Popen(_cli(ckpts, killed, *_CLI_SWEEP), env=cli_env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 240
  while not outputs.chunk_rows(str(killed)):  # the first chunk is done
    assert victim.poll() is None and time.monotonic() < deadline, 'no chunk was written'
    time.sleep(0.001)
  os.kill(victim.pid, signal.SIGKILL)
  victim.wait()
  partial = dict(outputs.read_manifest(str(killed)),
                 rows=[r for rows in outputs.chunk_rows(str(killed)).values() for r in rows])
  resumed = subprocess.run(_cli(ckpts, killed, *_CLI_SWEEP), env=cli_env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
  sweep.run_sweep(_config(ckpts, whole, units='0-7', seeds=(0, 1, 2), chunk=2, gif_units='0-7'))
  return dict(whole=whole, killed=killed, partial=partial, resumed=resumed)


def test_cli_smoke(cli_runs, ckpts):
  out, proc = cli_runs['killed'], cli_runs['resumed']
  assert proc.returncode == 0, proc.stderr
  assert 'index.html' in proc.stdout and 'requests/s' in proc.stderr
  manifest = outputs.read_manifest(str(out))
  rows = manifest['rows']
  assert len(rows) == 24 and manifest['progress']['complete']
  assert [r['name'] for r in rows[2:4]] == ['fc8_0000_02_0.99_8.0__2', 'fc8_0001_02_0.99_8.0__0']
  with Image.open(out / rows[0]['gif']) as im:
    assert im.format == 'GIF' and im.size == (14, 14)
  assert manifest['provenance']['argv'][1:] == _cli(ckpts, out, *_CLI_SWEEP)[3:]


def test_kill_and_resume_gives_the_uninterrupted_files(cli_runs):
  partial, resumed = cli_runs['partial'], cli_runs['resumed']
  assert 0 < len(partial['rows']) < 24 and not partial['progress']['complete']
  assert resumed.returncode == 0, resumed.stderr
  assert f'{len(partial["rows"])} resumed' in resumed.stderr
  got, want = _files(cli_runs['killed']), _files(cli_runs['whole'])
  assert sorted(got) == sorted(want)
  assert [k for k in want if got[k] != want[k]] == []  # manifest.json: all but provenance
  assert len(outputs.read_manifest(str(cli_runs['killed']))['provenance']['earlier_runs']) == 1


# --- --method: the DGN-AM ablation and the pixel-space baselines ---------------------------------

# A step size that raises every target of the tiny nets within 6 iterations, per update rule.
_SMOKE_LR = {'normalized': 8.0, 'adam': 0.05}


@pytest.mark.parametrize('method', [m for m in methods.names() if m != 'dgnam'])
def test_methods_run_as_sweeps_and_raise_their_targets(ckpts, jax_cache, tmp_path, method):
  del jax_cache
  recipe = methods.get(method).recipe()
  pixel_method = not recipe.parameterization.uses_generator
  kw = dict(method=method, units='0-2', seeds=(0, 1), iters=6, gif_units='2',
            lr=_SMOKE_LR.get(recipe.update.name, 1.0) * (20.0 if not pixel_method else 1.0))
  if pixel_method:
    kw['generator'] = None
  manifest = sweep.run_sweep(_config(ckpts, tmp_path / 'a', **kw))
  rows = manifest['rows']
  assert manifest['settings']['method'] == method and len(rows) == 6
  assert all(r['activation'] > r['activation_init'] for r in rows), rows
  if pixel_method:
    assert 'generator' not in manifest['settings']['checkpoints']
  assert [r.get('gif') is not None for r in rows] == [False, False, False, False, True, True]
  assert os.path.getsize(tmp_path / 'a' / rows[-1]['gif']) > 0
  # Batch-invariant like DGN-AM: one request alone gives the same image.
  alone = sweep.run_sweep(_config(ckpts, tmp_path / 'b', **dict(kw, units='2', seeds=(1,))))
  a = np.asarray(Image.open(tmp_path / 'a' / rows[-1]['image']))
  b = np.asarray(Image.open(tmp_path / 'b' / alone['rows'][0]['image']))
  np.testing.assert_array_equal(a, b)


def test_pixel_methods_reject_code_only_flags(ckpts, tmp_path):
  for bad in (dict(init='original'), dict(bounds='none')):
    with pytest.raises(ValueError, match='generator codes only'):
      sweep.plan_sweep(_config(ckpts, tmp_path / 'x', method='pixel', **{'gif_units': '', **bad}))
  with pytest.raises(ValueError, match='--method must be one of'):
    sweep.plan_sweep(_config(ckpts, tmp_path / 'x', method='deepdream'))
  with pytest.raises(ValueError, match='needs --generator'):
    sweep.plan_sweep(_config(ckpts, tmp_path / 'x', generator=None))


class _Interrupt(Exception):
  """Raised from the progress callback: the run stops as a killed one would, mid-chunk."""


@pytest.mark.parametrize('method', methods.names())
def test_every_method_is_chunk_invariant_and_resumes_exactly(ckpts, jax_cache, tmp_path, method):
  """For each registered method: chunk 1 vs the default chunk, and a run interrupted in its
  second chunk then rerun, give the files of an uninterrupted run (bitwise)."""
  del jax_cache
  recipe = methods.get(method).recipe()
  kw = dict(method=method, units='0-2', seeds=(0, 1), iters=3, gif_units='1',
            lr=_SMOKE_LR.get(recipe.update.name, 1.0))
  if not recipe.parameterization.uses_generator:
    kw['generator'] = None
  whole = sweep.run_sweep(_config(ckpts, tmp_path / 'whole', chunk=2, **kw))
  want = _files(tmp_path / 'whole')
  single = sweep.run_sweep(_config(ckpts, tmp_path / 'single', chunk=1, **kw))
  assert [r['activation'] for r in single['rows']] == [r['activation'] for r in whole['rows']]
  pngs = {k: v for k, v in want.items() if k.endswith('.png') and k != 'grid.png'}
  assert {k: v for k, v in _files(tmp_path / 'single').items() if k in pngs} == pngs

  def stop_in_second_chunk(p):
    if p.chunk == 1:
      raise _Interrupt

  with pytest.raises(_Interrupt):
    sweep.run_sweep(_config(ckpts, tmp_path / 'cut', chunk=2, **kw), stop_in_second_chunk)
  assert sum(map(len, outputs.chunk_rows(str(tmp_path / 'cut')).values())) == 2
  sweep.run_sweep(_config(ckpts, tmp_path / 'cut', chunk=2, **kw))
  got = _files(tmp_path / 'cut')
  assert sorted(got) == sorted(want)
  assert [k for k in want if got[k] != want[k]] == []


def test_resume_with_another_batch_is_refused(ckpts, tmp_path):
  """XLA:CPU rounds a row differently in calls of another shape (BUILD_NOTES), so the batch is
  part of a sweep's settings: a rerun into the same --out with another batch is refused."""
  kw = dict(units='0-2', seeds=(0,), iters=2, gif_units='')
  for batch, other in ((1, 3), (3, 8), (8, 1)):
    out = tmp_path / f'b{batch}'
    first = sweep.run_sweep(_config(ckpts, out, batch_per_device=batch, **kw))
    assert first['settings']['batch_per_device'] == batch
    before = _files(out)
    with pytest.raises(ValueError, match='batch_per_device'):
      sweep.run_sweep(_config(ckpts, out, batch_per_device=other, **kw))
    assert _files(out) == before
    sweep.run_sweep(_config(ckpts, out, batch_per_device=batch, **kw))  # the same batch resumes
    assert _files(out) == before


@pytest.mark.parametrize('spec, want', [('0-4', (0, 1, 2, 3, 4)), ('3,0-1', (3, 0, 1)),
                                        (['2', '5-6'], (2, 5, 6)), ('7', (7,))])
def test_seed_lists_take_ranges(spec, want):
  assert units.parse_seeds(spec) == want


@pytest.mark.parametrize('spec', ['', 'a', '3-1', '1,1', '-2', '0-2,2'])
def test_bad_seed_lists_name_the_flag(spec):
  with pytest.raises(ValueError, match='--class_seeds'):
    units.parse_seeds(spec, '--class_seeds')


def test_errors_name_the_flag_or_file(ckpts, tmp_path):
  plan = lambda **kw: sweep.plan_sweep(_config(ckpts, tmp_path / 'out', **kw))
  with pytest.raises(ValueError, match='^--iters must be >= 1, not 0'):
    plan(iters=0)
  with pytest.raises(ValueError, match='^--lr must be finite, not nan'):
    plan(lr=float('nan'))
  pickled = tmp_path / 'codes.npy'
  np.save(pickled, np.array([{'a': 1}], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match=f'--init_codes {pickled}: not a numeric .npy'):
    plan(init_codes=str(pickled))
  bad_txt = tmp_path / 'fc6.txt'
  bad_txt.write_text('1 2 three')
  with pytest.raises(ValueError, match=f'bounds file {bad_txt}: not space-separated numbers'):
    plan(bounds=str(bad_txt))
  with pytest.raises(ValueError, match='caffenet: no such directory; the paper'):
    plan(classifier=str(tmp_path / 'checkpoints' / 'caffenet'))
  assert not (tmp_path / 'out').exists()


def test_a_non_utf8_prototxt_is_named(tmp_path):
  from dgnam_jax.caffe.netdef import CaffeFormatError  # pylint: disable=import-outside-toplevel
  from dgnam_jax.nets.from_caffe import convert_caffe  # pylint: disable=import-outside-toplevel
  proto = tmp_path / 'net.prototxt'
  proto.write_bytes(b'name: "x"\n\x87\xff')
  with pytest.raises(CaffeFormatError, match=f'{proto}: not a UTF-8 text prototxt'):
    convert_caffe(str(proto), str(tmp_path / 'm.caffemodel'), str(tmp_path / 'out'))


def test_ctrl_c_stops_cleanly_with_the_resume_hint(ckpts, cli_env, tmp_path):
  out = tmp_path / 'out'
  # Enough work (~1 min of chunks) that a loaded machine cannot finish before the signal lands.
  # Python's SIGINT handler put back before the runner starts: a shell that started this suite
  # in the background leaves SIGINT ignored, and Python then never raises KeyboardInterrupt (a
  # preexec_fn would fork this multithreaded process instead).
  cmd = _cli(ckpts, out, '--units=0-7', '--seeds=0-19', '--chunk=2', '--iters=300')
  assert cmd[1:3] == ['-m', 'experiments.synthesize']
  cmd[1:3] = ['-c', 'import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler)'
              '; runpy.run_module("experiments.synthesize", run_name="__main__", alter_sys=True)']
  proc = subprocess.Popen(cmd, env=cli_env, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 240
  while not outputs.chunk_rows(str(out)):  # the first chunk is saved
    assert proc.poll() is None and time.monotonic() < deadline, 'no chunk was written'
    time.sleep(0.01)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err
  assert err.strip().splitlines()[-1] == 'synthesize: stopped; rerun the same command to resume'
  assert 'Traceback' not in err
