"""A sweep SIGKILLed at 10 seeded random moments loses nothing it had finished (``pytest -m faults``).

One uninterrupted run of a small ``smoke`` sweep (crafting included) is the reference and sets
the time scale T: when its last row was written.  Each trial starts the same sweep in a fresh
results folder and noise cache, kills it ``uniform(0.3, 1.0)·T`` seconds in (late startup,
crafting, training, writing — wherever that lands), and checks what the kill left: the CSV parses,
no row is duplicated or half-written, every noise file under a cache name is valid.  Then it reruns
the sweep and checks that the rerun did exactly the missing cells, that no temp file is left, and
that the results equal the reference's (same cells, same accuracies: CPU runs are deterministic).
``pytest -s`` prints what each kill hit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import REPO, require_data
from uebench.craft.cache import NoiseCache

pytestmark = [pytest.mark.faults, pytest.mark.slow]

MATRIX = """\
protocol = "smoke"
seeds = [0, 1]
defenses = ["none"]

[[attacks]]
name = "none"

[[attacks]]
name = "errmin-pgd"
options = {form = "class"}

[[cells]]
attack = "random"
options = {form = "sample"}
defenses = ["cutout"]
seeds = [0]
"""

TRIALS, SEED = 10, 20261128


def _sweep(matrix, out, cache, kill_after: float | None = None):
    """Run the sweep (``--json``); SIGKILL it after ``kill_after`` seconds.  Returns (rows it
    printed, whether it was killed, seconds until its results.csv last grew)."""
    env = {**os.environ, "UEBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "uebench.cli", "sweep", str(matrix), "--out", str(out), "--json"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_after is None:
        results, last_change, size = out / "results.csv", 0.0, -1
        while proc.poll() is None:  # note when the last row lands (stdout is read at the end: small)
            now = results.stat().st_size if results.exists() else -1
            if now != size:
                size, last_change = now, time.perf_counter() - start
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr.decode()[-3000:]
        return [json.loads(line) for line in stdout.decode().splitlines()], False, last_change
    try:
        proc.wait(timeout=kill_after)
        killed = False  # it finished first
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed = True
    proc.stdout.close()
    proc.stderr.close()
    return [], killed, time.perf_counter() - start


def _rows(out) -> pd.DataFrame:
    results = out / "results.csv"
    return pd.read_csv(results) if results.is_file() else pd.DataFrame(columns=["cell_key", "final_test_acc"])


def _temp_files(*folders):
    return [p for folder in folders if folder.exists() for p in folder.rglob(".*.tmp")]


def test_a_sweep_killed_at_ten_random_moments_resumes_to_the_uninterrupted_result(tmp_path):
    require_data()
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(MATRIX)
    reference_rows, _, seconds = _sweep(matrix, tmp_path / "whole", tmp_path / "whole-cache")
    reference = _rows(tmp_path / "whole").set_index("cell_key").sort_index()
    planned = set(reference.index)
    assert len(planned) == len(reference_rows) == 5

    rng = random.Random(SEED)
    report = []
    for trial in range(TRIALS):
        out, cache = tmp_path / f"out{trial}", tmp_path / f"cache{trial}"
        delay = rng.uniform(0.3, 1.0) * seconds
        _, killed, _ = _sweep(matrix, out, cache, kill_after=delay)

        # what the kill left: a whole CSV (or none), unique complete rows, only valid noise files
        partial = _rows(out)
        assert partial["cell_key"].is_unique and set(partial["cell_key"]) <= planned
        assert partial["final_test_acc"].notna().all()
        noise_files = sorted(cache.glob("*.pt"))
        for path in noise_files:
            noise, why = NoiseCache(cache).get(path.stem)
            assert noise is not None, f"trial {trial}: a kill left an invalid noise file {path.name}: {why}"
        orphans = _temp_files(out, cache)

        rerun_rows, _, _ = _sweep(matrix, out, cache)
        assert sorted(r["cell_key"] for r in rerun_rows) == sorted(planned - set(partial["cell_key"])), \
            "the rerun did other cells than the missing ones"
        done = _rows(out).set_index("cell_key").sort_index()
        assert done.index.is_unique and list(done.index) == list(reference.index)
        assert done["final_test_acc"].tolist() == reference["final_test_acc"].tolist()
        assert len(list((out / "curves").glob("*.csv"))) == len(planned)
        assert not _temp_files(out, cache), "temp files outlived the rerun"
        report.append((trial, f"{delay:.2f}s", "killed" if killed else "finished first", len(partial), len(noise_files),
                       len(orphans)))

    print(f"\nreference sweep: last row at {seconds:.1f}s, {len(planned)} cells")
    print("trial  kill at  outcome          rows then  noise files then  temp files then")
    for trial, delay, outcome, rows, noises, temps in report:
        print(f"{trial:5d}  {delay:>7}  {outcome:15}  {rows:9d}  {noises:16d}  {temps:15d}")
    assert sum(r[2] == "killed" for r in report) >= TRIALS // 2, "most kills should land before the sweep ends"
