"""Seeded fuzzing of the Caffe readers: truncations, bit flips, deep nesting, absurd dims, bytes
that are not UTF-8, on the committed fixtures (tests/fixtures/caffe: netA, LeNet).

usage: python benchmarks/fuzz_caffe.py [--cases=N] [--seed=S] [--out=FILE.json]

Every mutated input must be read (and converted) or refused with one CaffeFormatError; any other
exception is a failure. Prints (and writes) counts per mutation kind, the failures, the slowest
case and the peak memory growth (ru_maxrss after a warm-up), which must stay within
max(64 MiB, 4x the input size). tests/test_fuzz.py runs it with a few dozen cases.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dgnam_jax.caffe import parse_prototxt, read_caffemodel, read_prototxt  # noqa: E402
from dgnam_jax.caffe.netdef import CaffeFormatError  # noqa: E402
from dgnam_jax.nets import convert  # noqa: E402

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'caffe')
PAIRS = (('netA.prototxt', 'netA.caffemodel'),
         ('bvlc_lenet_deploy.prototxt', 'pl8787_exp_caffe__lenet_iter_10000.caffemodel'))
KINDS = ('truncate_model', 'flip_model', 'truncate_proto', 'flip_proto', 'deep', 'dims',
         'not_utf8')


def _peak_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _flip(data: bytes, rng: random.Random, flips: int) -> bytes:
  out = bytearray(data)
  for _ in range(flips):
    i = rng.randrange(len(out))
    out[i] ^= 1 << rng.randrange(8)
  return bytes(out)


def _mutate(kind: str, proto: bytes, model: bytes, rng: random.Random) -> tuple[bytes, bytes]:
  if kind == 'truncate_model':
    return proto, model[:rng.randrange(len(model))]
  if kind == 'flip_model':
    return proto, _flip(model, rng, rng.choice((1, 4, 32)))
  if kind == 'truncate_proto':
    return proto[:rng.randrange(len(proto))], model
  if kind == 'flip_proto':
    return _flip(proto, rng, rng.choice((1, 4, 16))), model
  if kind == 'deep':
    depth = rng.choice((65, 400, 5000))
    return proto + b'\nlayer { ' + b'a { ' * depth + b'}' * (depth + 1), model
  if kind == 'dims':
    big = rng.choice((0, 2**31, 2100000, 200000, 10**12))
    text = re.sub(rb'dim: \d+', lambda m: b'dim: %d' % big if rng.random() < 0.5 else m.group(0),
                  proto)
    return text.replace(b'num_output: ', b'num_output: %d' % big, 1) if big else text, model
  return proto + b'\n# \x87\xff\xfe\n', model  # not_utf8


def run(cases: int, seed: int) -> dict:
  rng = random.Random(seed)
  tmp = tempfile.mkdtemp(prefix='fuzz_caffe_')
  inputs = [(open(os.path.join(FIXTURES, p), 'rb').read(),
             open(os.path.join(FIXTURES, m), 'rb').read()) for p, m in PAIRS]
  for proto, model in inputs:  # warm-up: imports, tracing, the allocator's first arenas
    convert.caffe_to_flax(parse_prototxt(proto.decode(), 'x'), read_caffemodel(_write(tmp, 'm',
                                                                                        model)))
  base = _peak_mib()
  counts = {k: {'read': 0, 'refused': 0} for k in KINDS}
  failures, slowest = [], (0.0, '')
  for case in range(cases):
    kind = KINDS[case % len(KINDS)]
    proto, model = _mutate(kind, *inputs[rng.randrange(len(inputs))], rng)
    t0 = time.monotonic()
    try:
      netdef = read_prototxt(_write(tmp, 'p.prototxt', proto))
      convert.caffe_to_flax(netdef, read_caffemodel(_write(tmp, 'm.caffemodel', model)))
      counts[kind]['read'] += 1
    except CaffeFormatError:
      counts[kind]['refused'] += 1
    except Exception as e:  # pylint: disable=broad-except (any other exception is the finding)
      failures.append({'case': case, 'kind': kind, 'error': f'{type(e).__name__}: {e}'[:300]})
    slowest = max(slowest, (time.monotonic() - t0, f'{case} ({kind})'))
  limit = max(64.0, 4 * max(len(p) + len(m) for p, m in inputs) / 2**20)
  growth = _peak_mib() - base
  return {'cases': cases, 'seed': seed, 'counts': counts, 'failures': failures,
          'slowest_s': round(slowest[0], 3), 'slowest_case': slowest[1],
          'peak_growth_mib': round(growth, 1), 'peak_limit_mib': round(limit, 1),
          'memory_ok': growth <= limit}


def _write(tmp: str, name: str, data: bytes) -> str:
  path = os.path.join(tmp, name)
  with open(path, 'wb') as f:
    f.write(data)
  return path


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--cases', type=int, default=2000)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', default=None)
  args = parser.parse_args()
  t0 = time.monotonic()
  record = run(args.cases, args.seed)
  record['wall_s'] = round(time.monotonic() - t0, 1)
  text = json.dumps(record, indent=1)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text + '\n')
  return 0 if not record['failures'] and record['memory_ok'] else 1


if __name__ == '__main__':
  sys.exit(main())
