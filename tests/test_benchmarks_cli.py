"""benchmarks/: every script answers --help, runs end to end on a CPU at tiny sizes and writes
positive, finite ratios (never asserted: performance is not a unit-test property; this only keeps
the scripts from rotting), and gpu_check.sh parses and summarises a results.csv without a GPU."""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPTS = ("bench_craft_official", "bench_train_pipeline", "bench_cell", "bench_concurrent")


def run_script(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, f"benchmarks/{name}.py", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def positive(*ratios: float) -> None:
    for ratio in ratios:
        assert math.isfinite(ratio) and ratio > 0, ratios


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # in-process: torch is imported already
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(name).main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "--json" in text and "--quick" in text


@pytest.mark.slow
def test_bench_craft_official_runs_on_cpu(tmp_path):
    out = tmp_path / "craft.json"
    ok(run_script("bench_craft_official", "--quick", "--threads", "1", "--craft-images", "64", "--raw-seconds", "0.2",
                  "--json", str(out)))
    c = json.loads(out.read_text())["crafting"]
    positive(c["iteration_speedup"], *c["pass_over_raw_paired"], *c["official_style_over_raw_paired"])


@pytest.mark.slow
def test_bench_train_pipeline_runs_on_cpu(tmp_path):
    out = tmp_path / "train.json"
    ok(run_script("bench_train_pipeline", "--quick", "--threads", "1", "--train-images", "256", "--json", str(out)))
    t = json.loads(out.read_text())["training"]
    positive(t["over_bare"], t["over_dataloader"])


@pytest.mark.slow
def test_bench_cell_runs_on_cpu(tmp_path):
    out = tmp_path / "cell.json"
    ok(run_script("bench_cell", "--device", "cpu", "--quick", "--threads", "1", "--train-images", "256",
                  "--craft-images", "512", "--craft-steps", "2", "--json", str(out)))
    data = json.loads(out.read_text())
    assert "errors" not in data, data["errors"]
    positive(data["training"]["trainer_over_bare"], data["crafting"]["pass_over_raw"])


@pytest.mark.slow
def test_bench_concurrent_runs_on_cpu(tmp_path):
    out = tmp_path / "concurrent.json"
    ok(run_script("bench_concurrent", "--device", "cpu", "--quick", "--threads", "1", "--concurrent", "1",
                  "--train-images", "256", "--json", str(out)))
    data = json.loads(out.read_text())
    assert "errors" not in data and "partial" not in data, data
    positive(data["concurrent"]["1"]["over_k1"], data["concurrent"]["1"]["total_img_per_s"])


def test_gpu_check_parses():
    result = subprocess.run(["bash", "-n", "benchmarks/gpu_check.sh"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_gpu_check_rejects_an_unknown_stage(tmp_path):
    env = {**os.environ, "GPU_CHECK_STATE": str(tmp_path), "OUT": str(tmp_path)}
    result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "nonsense"], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr


@pytest.mark.slow
def test_gpu_check_summary_reads_results_csv(tmp_path):
    """The paper summary prints each row's attack, defense, seed, accuracy and timings, copies
    results.csv to OUT, and lists what the sweep still has to do (or says its dry run failed)."""
    from uebench.results import COLUMNS

    state, out = tmp_path / "state", tmp_path / "out"
    (state / "paper").mkdir(parents=True)
    rows = [
        {"cell_key": "fake0", "attack": "none", "attack_options": "{}", "defense": "none", "seed": "0",
         "final_test_acc": "0.9512", "train_size": "50000", "epochs": "60", "train_seconds": "250", "craft_seconds": "0"},
        {"cell_key": "fake1", "attack": "errmin-pgd", "attack_options": json.dumps({"form": "sample"}), "defense": "none",
         "seed": "0", "final_test_acc": "0.1934", "train_size": "50000", "epochs": "60", "train_seconds": "262.8",
         "craft_seconds": "181.4", "noise_cached": "False"},
    ]
    with open(state / "paper" / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)
    env = {**os.environ, "GPU_CHECK_STATE": str(state), "OUT": str(out), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "summary"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = result.stdout
    assert "2 row(s) in" in text
    assert "none × none, seed 0: final_test_acc 0.9512, train_seconds 250 (12,000 img/s), craft_seconds 0" in text
    assert "errmin-pgd sample × none, seed 0: final_test_acc 0.1934" in text and "craft_seconds 181" in text
    assert "cell(s) not finished" in text or "dry run failed" in text
    assert (out / "paper" / "results.csv").read_text() == (state / "paper" / "results.csv").read_text()
