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


def test_gpu_script_tiny_runs_the_chosen_parts(tmp_path):
    """``run_gpu.sh`` with TINY=1: the chosen parts run (the loss-curve part: former and new
    chunking give the same fp32 curve), the others are skipped, the results land in $OUT."""
    import json
    import os

    env = {**os.environ, "TINY": "1", "PARTS": "curve-1.3b embed-1.3b", "OUT": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "run_gpu.sh")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== curve-1.3b: exit 0" in proc.stdout and "== embed-1.3b: exit 0" in proc.stdout
    assert "train-8b" not in proc.stdout
    curve = json.loads((tmp_path / "curve-1.3b.json").read_text())["curve"]
    assert len(curve["losses"]["new"]) == 20 and curve["new_max_rel"] < 1e-5


def test_packing_benchmark_tiny_mode_gives_the_padded_vectors_and_losses(tmp_path):
    """bench_packing.py --tiny on CPU: every packed path embeds to the padded path's vectors and
    trains to its losses (the timings are printed, not asserted)."""
    import json

    out = tmp_path / "packing.json"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_packing.py"), "--tiny", "--n", "96",
                           "--repeats", "1", "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for runs in result["embed"]["runs"].values():
        assert set(runs) == {"padded", "varlen", "mask"}
        assert min(r["min_cosine"] for r in runs.values()) >= 0.9999
    train = result["train"]["runs"]
    assert set(train) == {"padded", "varlen", "mask"}
    for path in ("varlen", "mask"):
        assert train[path]["losses"] == pytest.approx(train["padded"]["losses"], rel=1e-4)
    assert "| training step | varlen |" in proc.stdout
