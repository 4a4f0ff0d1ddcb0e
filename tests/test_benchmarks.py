"""The GPU benchmarks' --tiny modes run on CPU (CI runs them; their timings are not asserted)."""

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_train_benchmark_tiny_mode_prints_every_path():
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_train_gpu.py"), "--tiny"],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for column in ("s/step", "tokens/s", "TFLOP/s", "GiB"):
        assert column in out, column
    for path in ("gc-count", "gc-tokens", "no-gc", "plain"):
        assert path in out, path
