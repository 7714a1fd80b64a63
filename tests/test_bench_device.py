"""benchmarks/bench_device.py runs end to end on a CPU and writes its ratios (never asserted:
performance is not a unit-test property; this only keeps the script from rotting)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_bench_device_runs_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "benchmarks/bench_device.py", "--device", "cpu", "--quick", "--threads", "1", "--concurrent", "1",
           "--train-images", "256", "--craft-images", "512", "--craft-steps", "2", "--json", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert "errors" not in data, data["errors"]
    for ratio in (data["training"]["trainer_over_bare"], data["crafting"]["pass_over_raw"], data["concurrent"]["1"]["over_k1"]):
        assert math.isfinite(ratio) and ratio > 0
