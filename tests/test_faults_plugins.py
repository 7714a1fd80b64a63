"""Plugin isolation (``pytest -m faults``): a broken plugin is reported as failed and never stops
the others from listing or running, and a cell it breaks never stops a sweep's other cells."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fault_plugins import write_plugins

from conftest import assert_clean_error, json_out, require_data

pytestmark = pytest.mark.faults


def test_plugins_lists_the_broken_file_as_failed_with_its_error_and_the_rest_as_ok(invoke, tmp_path):
    folder = write_plugins(tmp_path / "plugins")
    listed = {p["name"]: p for p in json_out(invoke("--plugins-dir", folder, "plugins", "--json"))}
    broken = next(p for name, p in listed.items() if "broken" in name)
    assert "zzz_missing_dependency" in broken["error"]
    faulty = next(p for name, p in listed.items() if "faulty" in name)
    assert not faulty["error"]
    assert all(not p["error"] for name, p in listed.items() if "broken" not in name)
    human = invoke("--plugins-dir", folder, "plugins", env={"COLUMNS": "250"})  # wide enough not to wrap the error
    assert human.exit_code == 0 and "failed" in human.stdout and "zzz_missing_dependency" in human.stdout
    attacks = {a["name"] for a in json_out(invoke("--plugins-dir", folder, "attacks", "list", "--json"))}
    assert {"raises-attack", "nan-noise", "errmin-pgd", "random"} <= attacks  # the good file's and the built-ins


@pytest.mark.slow
def test_a_cell_broken_by_a_plugin_fails_alone_and_the_rerun_retries_only_it(invoke, tmp_path):
    require_data()
    folder = write_plugins(tmp_path / "plugins")
    matrix = tmp_path / "matrix.toml"
    matrix.write_text('protocol = "smoke"\nseeds = [0]\ndefenses = ["none", "nan-loss"]\n'
                      '[[attacks]]\nname = "raises-attack"\n[[attacks]]\nname = "random"\n')
    out = tmp_path / "out"
    args = ("--plugins-dir", folder, "sweep", matrix, "--out", out, "--cache-dir", tmp_path / "cache", "--json")
    result = invoke(*args)
    message = assert_clean_error(result, 1)
    assert "3 cell(s) failed and have no row" in message
    assert "raises-attack×none s0: attack 'raises-attack' (crafting) raised RuntimeError" in message
    assert "random×nan-loss s0: training loss became nan" in message
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["attack"], r["defense"]) for r in rows] == [("random", "none")]  # the good cell ran, after the failures
    assert len(pd.read_csv(out / "results.csv")) == 1
    plan = json_out(invoke("--plugins-dir", folder, "sweep", matrix, "--out", out, "--dry-run", "--json"))
    assert sorted((c["attack"], c["defense"]) for c in plan if not c["done"]) == [
        ("raises-attack", "nan-loss"), ("raises-attack", "none"), ("random", "nan-loss")]


@pytest.mark.slow
def test_on_ray_a_failed_craft_fails_its_cells_without_crafting_again_and_the_rest_run(invoke, tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra is part of .ci/run's install; a bare `pip install -e .` lacks it")
    require_data()
    folder = write_plugins(tmp_path / "plugins", broken=False)
    matrix = tmp_path / "matrix.toml"
    matrix.write_text('protocol = "smoke"\nseeds = [0]\ndefenses = ["none", "cutout"]\n'
                      '[[attacks]]\nname = "raises-attack"\n[[attacks]]\nname = "none"\n')
    out = tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        result = invoke("--plugins-dir", folder, "sweep", matrix, "--out", out, "--cache-dir", tmp_path / "cache",
                        "--executor", "ray", "--json")
    finally:
        ray.shutdown()
    message = assert_clean_error(result, 1)
    assert "2 cell(s) failed" in message and message.count("attack 'raises-attack' (crafting) raised RuntimeError") == 2
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["defense"] for r in rows) == ["cutout", "none"] and {r["attack"] for r in rows} == {"none"}
