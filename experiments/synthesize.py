r"""DGN-AM sweep: synthesise preferred images for many units (resumable).

  python -m experiments.synthesize --generator=ckpt/deepsim_fc6 --classifier=ckpt/caffenet \
      --preset=caffenet --units=0-9,17 --seeds=0,1 --out=out/caffenet_fc8

Writes ``<name>.png`` per (unit, seed), ``codes/chunk_*.npy``, ``manifest.json``/``.csv``,
``index.html`` and ``grid.png`` under --out (layout: ``dgnam_jax/sweeps/run.py``). Killed and rerun
with the same flags, it resumes where it stopped; other flags with the same --out are an error.
Presets (configs/*.py) carry the authors' act_max.py settings; explicit flags win.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import _sweep_flags
from dgnam_jax import cli
from dgnam_jax.sweeps import configs, processes
from dgnam_jax.sweeps import run as sweep
from dgnam_jax.synthesis import methods as methods_lib
from dgnam_jax.sweeps.requests import UNITS_HELP, parse_seeds

_D = sweep.config_defaults()

flags.DEFINE_string('generator', None, 'Generator checkpoint directory (default: the preset\'s).')
flags.DEFINE_string('classifier', None, 'Classifier checkpoint directory (default: the '
                    'preset\'s).')
flags.DEFINE_string('out', None, 'Output directory (a sweep with the same flags is resumed).',
    allow_override=True)
# Built-in methods only: the help is made at import, before $DGNAM_JAX_METHODS modules load.
flags.DEFINE_string('method', _D['method'], 'A registered method (dgnam_jax.synthesis.methods): '
                    + ', '.join(f'{m.name}: {m.summary}' for m in methods_lib.BUILTIN)
                    + ', or one registered by a module named in $DGNAM_JAX_METHODS. --lr is in '
                    'the method\'s own units (pixels per step, Adam\'s step size).')
flags.DEFINE_string('method_args', _D['method_args'], 'The method\'s static options, e.g. '
                    '"tv=0.1,jitter=2" (fields of its options, e.g. '
                    'dgnam_jax.synthesis.methods.PixelOptions).')
flags.DEFINE_string('preset', None, 'Short for --config=configs/NAME.py: '
                    + ', '.join(configs.names()) + '. The paper\'s nets carry the original\'s '
                    'settings; cifar10 and tinyimagenet200 also name the committed checkpoints.')
config_flags.DEFINE_config_file('config', None, 'A config file (configs/*.py: get_config() '
                                'returns SweepConfig fields; --config.lr=4 overrides one). '
                                'Explicit flags override both.', lock_config=False)
flags.DEFINE_string('layer', _D['layer'], 'Classifier layer of the units (Caffe name).')
flags.DEFINE_string('units', None, UNITS_HELP)
flags.DEFINE_list('seeds', ['0'], 'Seeds per unit: integers or ranges a-b (requests: units in '
                  'order, seeds inner).')
flags.DEFINE_integer('iters', _D['iters'], 'Iterations per request.')
flags.DEFINE_float('lr', _D['lr'], 'Start learning rate.')
flags.DEFINE_float('lr_end', _D['lr_end'], 'End learning rate (linear decay; < 0: constant).')
flags.DEFINE_float('l2', _D['l2'], 'Code decay factor per step (the original\'s L2).')
flags.DEFINE_string('bounds', None, 'Code upper bounds: act_range/*.txt or .npy (Caffe order); '
                    '"none" disables clipping; default: the generator checkpoint\'s.')
flags.DEFINE_float('bounds_k', _D['bounds_k'], 'Std multiplier for checkpoint bounds.')
flags.DEFINE_enum('objective', _D['objective'], ['logit', 'softmax'],
                  'Raw layer output (the original) or its softmax.')
flags.DEFINE_boolean('minimize', False, 'Minimise the activation instead.')
flags.DEFINE_boolean('post_relu', False, 'Use Caffe\'s blob after in-place ReLU instead of the '
                     'raw layer output.')
flags.DEFINE_float('gamma', _D['gamma'], 'Blend penalty: a1 + a2 - gamma (a1 - a2)^2.')
flags.DEFINE_enum('init', _D['init'], ['seeded', 'original', 'image'],
                  'Initial code: N(0,1) from (seed, unit); act_max.py\'s np.random start; or '
                  'the code of --init_file.')
flags.DEFINE_string('init_file', None, 'Image for --init=image.')
flags.DEFINE_string('init_codes', None, '.npy of initial codes, one row per request, Caffe '
                    'order.')
flags.DEFINE_string('encoder', None, 'Encoder checkpoint for --init=image (default: the '
                    'classifier).')
flags.DEFINE_integer('chunk', _D['chunk'], 'Requests per resumable chunk (0: ~64, whole '
                     'batches).')
flags.DEFINE_string('batch_per_device', str(_D['batch_per_device']), 'Requests per device per '
                    'compiled call, or auto: the most that fit (from the compiled step\'s memory; '
                    'a resume keeps the recorded batch).')
flags.DEFINE_boolean('slot_keyed', _D['slot_keyed'], 'Keep each (unit, seed) in its own batch '
                     'slot, so its image is the same alone or in any sweep (up to 2-3x the '
                     'batches for strided or random unit lists); default: dense packing, the '
                     'fewest batches, bits depending on the request\'s place in the list.')
flags.DEFINE_string('coordinator', None, 'Multi-process run: HOST:PORT of process 0 (with '
                    '--num_processes and --process_id; every process gets the same flags).')
flags.DEFINE_integer('num_processes', None, 'Multi-process run: the number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-process run: this process, 0 .. N-1.')
flags.DEFINE_enum('distributed', 'none', ['none', 'auto'], 'auto: join the processes of a SLURM '
                  'allocation, TPU pod slice or MPI job as JAX detects them.')
flags.DEFINE_integer('heartbeat_s', processes.HEARTBEAT_S, 'Multi-process run: seconds after '
                     'which a dead process ends the others.', lower_bound=1)
flags.DEFINE_enum('dtype', _D['dtype'], ['float32', 'bfloat16'], 'Compute dtype.')
flags.DEFINE_string('gif_units', '', 'Subset of --units to save trajectory GIFs for.')
flags.DEFINE_integer('gif_every', _D['gif_every'], 'Iterations between GIF frames.')
flags.DEFINE_integer('gallery_scale', _D['gallery_scale'], 'Image enlargement in index.html and '
                     'grid.png.')

FLAGS = flags.FLAGS
_ALWAYS = ('out',)
_OPTIONAL = tuple(name for name in _D if name not in _ALWAYS) + ('generator', 'classifier')


def _config() -> sweep.SweepConfig:
  """Flags -> config: a preset's values, overridden by the flags given on the command line."""
  given = {name: FLAGS[name].value for name in _OPTIONAL + ('units',) if FLAGS[name].present}
  if 'seeds' in given:
    given['seeds'] = parse_seeds(given['seeds'])
  if 'batch_per_device' in given:
    given['batch_per_device'] = _batch(given['batch_per_device'])
  if FLAGS.preset and FLAGS.config is not None:
    raise ValueError('--preset is short for --config=configs/NAME.py: pass one of them')
  base = FLAGS.preset
  if FLAGS.config is not None:
    base = configs.with_overrides(config_flags.get_config_filename(FLAGS['config']),
                                  FLAGS.config.to_dict())
  return sweep.config_with_preset(base, **{n: FLAGS[n].value for n in _ALWAYS}, **given)



def _batch(text: str) -> int | str:
  if text == 'auto':
    return text
  try:
    return int(text)
  except ValueError:
    raise ValueError(f'--batch_per_device must be a number or auto, not {text!r}') from None


def _join() -> processes.Processes:
  """Joins jax.distributed when the flags ask for several processes (before any JAX work)."""
  procs = processes.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id,
                               auto=FLAGS.distributed == 'auto', heartbeat_s=FLAGS.heartbeat_s)
  if procs.count > 1:
    cli.say('synthesize', f'process {procs.index} of {procs.count}: if one process dies, the '
            f'others stop within ~{FLAGS.heartbeat_s} s; rerun the same commands to finish')
  return procs


def _progress(procs: processes.Processes) -> Callable[[sweep.Progress], None]:
  """Requests computed and saved, rate and time left (this run's work only)."""
  prog = 'synthesize' if procs.count == 1 else f'synthesize[{procs.index}]'
  line = cli.Progress(prog, 'requests')

  def log(p: sweep.Progress) -> None:
    line(p.done, p.total, p.skipped, prefix=f'chunk {p.chunk + 1}/{p.chunks}: ', saved=p.saved)

  return log


def main(argv) -> int:
  _sweep_flags.apply()  # before any JAX work
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')

  def sweep_and_report() -> str:
    procs = _join()
    manifest = sweep.run_sweep(_config(), _progress(procs), argv=sys.argv)
    return (f'{len(manifest["rows"])} images in {FLAGS.out}: index.html (gallery), grid.png, '
            'manifest.json')

  return cli.run('synthesize', sweep_and_report)


if __name__ == '__main__':
  flags.mark_flags_as_required(list(_ALWAYS))
  app.run(lambda argv: sys.exit(main(argv)))
