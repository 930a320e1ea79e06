"""Seeded fuzzing of the Caffe readers (benchmarks/fuzz_caffe.py, a short run): truncations, bit
flips, deep nesting, absurd dims, non-UTF-8. No traceback, no hang, bounded memory."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mutated_caffe_files_are_read_or_refused_cleanly(tmp_path):
  out = tmp_path / 'fuzz.json'
  proc = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'fuzz_caffe.py'),
                         '--cases=210', '--seed=7', f'--out={out}'], capture_output=True,
                        text=True, timeout=120)
  assert out.exists(), proc.stderr[-2000:]
  record = json.loads(out.read_text())
  assert record['failures'] == [], record['failures']
  assert record['memory_ok'], (record['peak_growth_mib'], record['peak_limit_mib'])
  assert proc.returncode == 0, proc.stderr[-2000:]
  refused = sum(c['refused'] for c in record['counts'].values())
  assert refused >= 150 and all(sum(c.values()) == 30 for c in record['counts'].values())
