"""Sweeps: matrix files, the cell key, dry runs, worker processes, Ray (kills: test_faults_kill.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import REPO, assert_clean_error, json_out, require_data
from uebench.cellkey import cell_key, identity
from uebench.sweep.matrix import MatrixError, read_matrix

MATRIX = """\
protocol = "smoke"
seeds = [0, 1]
defenses = ["none", ["jpeg", "cutmix"]]

[[attacks]]
name = "none"

[[attacks]]
name = "random"
options = {form = "class"}

[[cells]]
attack = "random"
defenses = [{use = ["early-stop"], options = {early-stop = {clean_val = true}}}]
seeds = [0]
"""


def _write(tmp_path, text=MATRIX):
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


# --- matrix files ----------------------------------------------------------------------------


def test_matrix_crosses_lists_and_adds_extra_cells(tmp_path):
    protocol, cells = read_matrix(_write(tmp_path))
    assert protocol == "smoke" and len(cells) == 2 * 2 * 2 + 1
    assert {c.defenses for c in cells} == {("none",), ("jpeg", "cutmix"), ("early-stop",)}
    extra = cells[-1]
    assert extra.attack == "random" and extra.seed == 0 and extra.defense_options == {"early-stop": {"clean_val": True}}
    assert {c.attack_options.get("form") for c in cells if c.attack == "random"} == {"class", None}


@pytest.mark.parametrize(("text", "message"), [
    (MATRIX.replace("seeds = [0, 1]", "seed = [0, 1]"), r"matrix.toml:2: unknown key 'seed' in the matrix"),
    (MATRIX.replace('name = "none"', 'nam = "none"'), r"matrix.toml:6: unknown key 'nam' in an \[\[attacks\]\] table"),
    ("", "the matrix is empty"),
    ('protocol = "smoke"\n', "names no cells"),
    ("protocol = [", "not valid TOML"),
    (MATRIX.replace("seeds = [0, 1]", "seeds = [-1]"), "seeds are integers >= 0"),
])
def test_bad_matrix_files_say_what_and_where(tmp_path, text, message):
    with pytest.raises(MatrixError, match=message):
        read_matrix(_write(tmp_path, text))


def test_bad_matrix_on_the_command_line_exits_2_before_any_work(invoke, tmp_path):
    path = _write(tmp_path, MATRIX.replace('name = "random"', 'name = "randon"'))
    out = assert_clean_error(invoke("sweep", path, "--out", tmp_path / "out"), 2)
    assert "unknown attack 'randon'" in out and "Did you mean 'random'" in out and "cell 5" in out
    assert not (tmp_path / "out").exists()


# --- the cell key ------------------------------------------------------------------------------


def test_cell_key_canonical_form():
    row = {"uebench_version": "0.1.0", "protocol": "cpu", "protocol_version": 3, "dataset": "cifar10", "attack": "errmin-pgd",
           "attack_options": '{"form":"class","patch":null}', "eps": 8 / 255, "defense": "none", "defense_options": '{"none":{}}',
           "victim": "cnn-small", "victim_options": "{}", "seed": 0}
    # a row from before the scope columns, as pandas reads it back (strings, NaN)
    as_read = {**{k: str(v) for k, v in row.items()}, "poison_classes": float("nan"), "quantized": "True"}
    assert cell_key(row) == cell_key(as_read)
    assert identity(row)["attack_options"] == {"form": "class"}  # None: does not apply
    assert cell_key(row) != cell_key({**row, "seed": 1}) != cell_key({**row, "defense": "cutmix"})
    assert cell_key(row) != cell_key({**row, "quantized": False})


# --- running -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_dry_run_then_run_then_nothing_left(invoke, tmp_path):
    require_data()
    path, out = _write(tmp_path), tmp_path / "out"
    plan = json_out(invoke("sweep", path, "--out", out, "--dry-run", "--json"))
    assert len(plan) == 9 and not any(c["done"] for c in plan)
    rows = [json.loads(line) for line in invoke("sweep", path, "--out", out, "--json").stdout.splitlines()]
    assert sorted(r["cell_key"] for r in rows) == sorted(c["cell_key"] for c in plan)
    again = json_out(invoke("sweep", path, "--out", out, "--dry-run", "--json"))
    assert all(c["done"] for c in again)
    assert invoke("sweep", path, "--out", out, "--json").stdout == ""  # nothing left to do
    assert len(pd.read_csv(out / "results.csv")) == 9


@pytest.mark.slow
def test_jobs_run_cells_in_worker_processes(invoke, tmp_path):
    require_data()
    text = 'protocol = "smoke"\nseeds = [0, 1]\n[[attacks]]\nname = "none"\n'
    out = tmp_path / "out"
    rows = [json.loads(line)
            for line in invoke("sweep", _write(tmp_path, text), "--out", out, "--jobs", "2", "--json").stdout.splitlines()]
    assert sorted(r["seed"] for r in rows) == [0, 1]
    assert len(pd.read_csv(out / "results.csv")) == 2 and len(list((out / "curves").glob("*.csv"))) == 2


@pytest.mark.slow
def test_the_ray_executor_crafts_first_then_trains_and_the_driver_writes(invoke, tmp_path):
    """Against a real local Ray (ray.init(num_cpus=2)), not a mock."""
    ray = pytest.importorskip("ray", reason="the ray extra is part of .ci/run's install; a bare `pip install -e .` lacks it")
    require_data()
    text = ('protocol = "smoke"\nseeds = [0]\ndefenses = ["none", "cutout"]\n'
            '[[attacks]]\nname = "errmin-pgd"\noptions = {form = "class", max_iters = 1}\n')
    out, cache = tmp_path / "out", tmp_path / "cache"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        result = invoke("sweep", _write(tmp_path, text), "--out", out, "--cache-dir", cache, "--executor", "ray", "--json")
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert sorted(r["defense"] for r in rows) == ["cutout", "none"], result.output
        # one crafting task made the noise; both training tasks found it cached
        assert [r["noise_cached"] for r in rows] == [True, True] and len({r["noise_key"] for r in rows}) == 1
        assert len(list(cache.glob("*.pt"))) == 1
        assert len(pd.read_csv(out / "results.csv")) == 2
        again = invoke("sweep", _write(tmp_path, text), "--out", out, "--cache-dir", cache, "--executor", "ray", "--json")
        assert again.exit_code == 0 and again.stdout == ""  # resumed: nothing left
    finally:
        ray.shutdown()


@pytest.mark.parametrize(("jobs", "requested", "gpus", "expected"), [
    (4, "auto", 4, ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]),  # one worker per GPU
    (4, "auto", 2, ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]),  # two per GPU
    (3, "cuda", 1, ["cuda:0"] * 3),
    (2, "auto", 0, [None, None]),  # CPU only: the cells' own device
    (2, "cuda:1", 4, [None, None]),  # a GPU named by the user is respected
    (2, "cpu", 4, [None, None]),
])
def test_local_workers_spread_over_the_gpus(jobs, requested, gpus, expected):
    from uebench.sweep.local import worker_devices

    assert worker_devices(jobs, requested, gpus) == expected


def test_a_worker_takes_its_device_from_the_queue_and_runs_its_cells_there(monkeypatch):
    import queue

    from uebench.cell import CellSpec, RunSettings
    from uebench.numerics import numerics_for
    from uebench.sweep import local

    devices = queue.Queue()
    devices.put("cuda:1")
    local._init_worker(devices)
    seen = []
    monkeypatch.setattr(local, "run_cell", lambda cell, reporter: seen.append(cell.settings.device))
    prepared = lambda spec, settings, key, noise=None: type(  # noqa: E731
        "Cell", (), {"spec": spec, "settings": settings, "numerics": numerics_for(torch.device("cpu"), "fp32", 1)})()
    monkeypatch.setattr("uebench.sweep.plan.prepared_again", prepared)
    local._work(CellSpec(attack="none"), RunSettings(device="auto"), "key", 1)
    local._init_worker(devices)  # a replacement worker finds the queue empty: the cell's own device
    local._work(CellSpec(attack="none"), RunSettings(device="auto"), "key", 1)
    assert seen == ["cuda:1", "auto"]


def test_parallel_workers_start_each_distinct_noise_before_a_second_cell_of_one(tmp_path):
    """With jobs > 1, cells 1 and 2 of one noise would occupy both workers, one waiting on the
    cache lock; ``crafting_first`` starts each noise's first cell first, the rest in matrix order."""
    from uebench.sweep.plan import crafting_first, plan_sweep

    matrix = tmp_path / "m.toml"
    matrix.write_text(
        'protocol = "smoke"\nseeds = [0]\ndefenses = ["none", "cutout"]\n'
        '[[attacks]]\nname = "errmin-pgd"\noptions = {form = "class"}\n'
        '[[attacks]]\nname = "none"\n'
        '[[attacks]]\nname = "errmin-pgd"\noptions = {form = "sample"}\n'
    )
    plan = plan_sweep(matrix, tmp_path / "out", device="cpu")
    order = [(cell.resolved.form if cell.attack.name != "none" else "clean", cell.defense_name)
             for _, cell in crafting_first(plan.todo)]
    assert order == [("class", "none"), ("sample", "none"),
                     ("class", "cutout"), ("clean", "none"), ("clean", "cutout"), ("sample", "cutout")]
    assert sorted(crafting_first(plan.todo)) == sorted(plan.todo)


@pytest.mark.parametrize("matrix", sorted((REPO / "leaderboards").glob("*/matrix.toml")), ids=lambda p: p.parent.name)
def test_every_committed_matrix_plans(matrix, tmp_path):
    """The committed matrix files stay valid as names and options change."""
    from uebench.sweep.plan import plan_sweep

    plan = plan_sweep(matrix, tmp_path / "out", device="cpu")
    assert plan.cells
