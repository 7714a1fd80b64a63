"""Several processes at once (``pytest -m faults``): appends to one results CSV, and two cells
that need the same uncached noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from conftest import REPO, require_data

pytestmark = pytest.mark.faults

WRITER = textwrap.dedent("""
    import sys
    from uebench.results import append_row
    path, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for i in range(count):
        append_row(path, {"run_id": f"w{writer}-{i:03d}", "cell_key": f"{writer}:{i}", "final_test_acc": i / count,
                          "attack": "=HYPERLINK(\\"x\\")" if i == 0 else "none"})
""")


def test_four_processes_appending_100_rows_each_leave_400_whole_rows(tmp_path):
    path = tmp_path / "results.csv"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), "100"], cwd=REPO, stderr=subprocess.PIPE)
             for w in range(4)]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()
        proc.stderr.close()
    frame = pd.read_csv(path)
    assert len(frame) == 400 and frame["run_id"].is_unique
    assert sorted(frame["run_id"]) == sorted(f"w{w}-{i:03d}" for w in range(4) for i in range(100))
    for w in range(4):  # each writer's rows in the order it wrote them
        own = frame[frame["run_id"].str.startswith(f"w{w}-")]["run_id"].tolist()
        assert own == sorted(own)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_two_processes_needing_the_same_uncached_noise_craft_it_once(tmp_path):
    """Both start together; one crafts under the cache's file lock, the other waits for the lock
    and then reads what the first wrote."""
    require_data()
    cache, out = tmp_path / "cache", tmp_path / "out"
    env = {**os.environ, "UEBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "uebench.cli", "run", "--protocol", "smoke", "--attack", "errmin-pgd", "-o", "form=class",
               "--out", str(out), "--json"]
    procs = [subprocess.Popen([*command, "--defense", d], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for d in ("none", "cutout")]
    rows = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr.decode()[-3000:]
        rows.append(json.loads(stdout.decode().splitlines()[-1]))
    assert sorted(r["noise_cached"] for r in rows) == [False, True]  # crafted once, read once
    assert len({r["noise_key"] for r in rows}) == 1
    assert [p.name for p in cache.glob("*.pt")] == [f"{rows[0]['noise_key']}.pt"]
    assert len(pd.read_csv(out / "results.csv")) == 2
