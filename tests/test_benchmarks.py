"""The benchmark scripts run end to end at toy size (no timing is asserted: figures live in their JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_train_overhead_benchmark_runs(tmp_path):
    out = tmp_path / "o.json"
    proc = _run([str(BENCH / "train_overhead.py"), "--steps", "3", "--rounds", "1", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["ratio_sblite_over_bare"] > 0 and result["steps_per_round"] == 3
    assert "sblite / bare GRPO step time" in proc.stdout


@pytest.mark.slow
def test_gpu_backends_benchmark_runs_at_toy_size(tmp_path):
    out = tmp_path / "g.json"
    proc = _run([str(BENCH / "gpu_backends.py"), "--toy", "--steps", "2", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["backend"] == "hf" and "failed" not in row, row
