"""Everything that decides a result is in its keys, and only that (issue 16): the dataset's
content, the bytes of a file an attack reads, the numerics (threads, torch, precision); and a
leaderboard cell never averages two configurations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from uebench.board_compare import compare_with_board
from uebench.cell import CellSpec, RunSettings, prepare
from uebench.cellkey import cell_key, config_key, setting_key
from uebench.datasets.base import write_layout
from uebench.datasets.cifar10 import Cifar10
from uebench.record import planned_row
from uebench.results import append_row
from uebench.runner import load_cell
from uebench.stats import cell_stats, compare, labelled


def _cifar(root, seed=0, n=100):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = np.arange(n) % 10
    write_layout(root / "cifar10", x, y, x[:50], y[:50])
    return x, y


def _keys(**spec) -> tuple[dict, object]:
    settings = {k: spec.pop(k) for k in ("out", "data_dir", "threads", "cache_dir") if k in spec}
    cell = prepare(CellSpec(protocol="smoke", **spec), RunSettings(device="cpu", **settings))
    return planned_row(cell), cell


# --- the data -------------------------------------------------------------------------------

def test_another_copy_of_a_dataset_is_another_cell_and_the_same_pixels_the_same(tmp_path):
    x, y = _cifar(tmp_path / "a", seed=0)
    _cifar(tmp_path / "b", seed=1)  # other pixels, the same name
    write_layout(tmp_path / "c" / "cifar10", x, y, x[:50], y[:50])  # the same pixels elsewhere
    a, cell_a = _keys(attack="random", data_dir=str(tmp_path / "a"))
    b, _ = _keys(attack="random", data_dir=str(tmp_path / "b"))
    c, _ = _keys(attack="random", data_dir=str(tmp_path / "c"))
    assert a["data_digest"] != b["data_digest"] and cell_key(a) != cell_key(b)
    assert a["data_digest"] == c["data_digest"] and cell_key(a) == cell_key(c)
    def noise(cell, digest):
        return cell.noise.at(provenance=dict(cell.provenance, data_digest=digest)).key
    assert noise(cell_a, a["data_digest"]) != noise(cell_a, b["data_digest"])  # no cached noise shared between copies


def test_the_digest_is_kept_and_computed_again_when_a_file_changes(tmp_path, monkeypatch):
    import uebench.datasets.digest as digest

    _cifar(tmp_path)
    dataset = Cifar10()
    first = dataset.digest(tmp_path)
    calls = []
    real = digest.content_digest
    monkeypatch.setattr(digest, "content_digest", lambda *a: calls.append(1) or real(*a))
    assert dataset.digest(tmp_path) == first and not calls  # read from the kept record
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    write_layout(tmp_path / "cifar10", x, np.arange(50) % 10, x, np.arange(50) % 10)
    assert dataset.digest(tmp_path) != first and calls


# --- the numerics ---------------------------------------------------------------------------

def test_cpu_cells_compute_on_the_protocols_pinned_threads_and_the_count_is_in_the_keys():
    default, cell = _keys(attack="none")
    assert cell.numerics.threads == cell.protocol.cpu_threads == 1 and default["threads"] == 1
    two, _ = _keys(attack="none", threads=2)
    assert cell_key(two) != cell_key(default) and config_key(two) != config_key(default)
    assert setting_key(two) == setting_key(default)  # the same settings, other numerics
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_cell(cell)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_torch_release_and_precision_are_identity():
    row, _ = _keys(attack="none")
    assert row["torch_version"] == torch.__version__.split("+")[0]
    assert cell_key(dict(row, torch_version="2.99.0")) != cell_key(row)
    assert cell_key(dict(row, precision="bf16")) != cell_key(row)
    assert config_key(dict(row, seed=5)) == config_key(row) and cell_key(dict(row, seed=5)) != cell_key(row)


# --- files an attack reads ------------------------------------------------------------------

def test_a_from_file_cell_is_keyed_by_the_files_content_not_its_path(tmp_path):
    data = tmp_path / "data"
    _cifar(data)
    cell_of = {}
    for name, value in (("one", 0.01), ("same", 0.01), ("other", 0.02)):
        path = tmp_path / f"{name}.npy"
        np.save(path, np.full((10, 3, 32, 32), value, dtype=np.float32))
        cell_of[name], _ = _keys(attack="from-file", attack_options={"path": str(path)}, data_dir=str(data))
    assert cell_key(cell_of["one"]) == cell_key(cell_of["same"])
    assert cell_key(cell_of["one"]) != cell_key(cell_of["other"])
    assert json.loads(cell_of["one"]["attack_options"])["path"].startswith("sha256:")
    # overwritten in place: another cell
    np.save(tmp_path / "one.npy", np.zeros((10, 3, 32, 32), dtype=np.float32))
    again, _ = _keys(attack="from-file", attack_options={"path": str(tmp_path / "one.npy")}, data_dir=str(data))
    assert cell_key(again) != cell_key(cell_of["one"])


# --- the leaderboard ------------------------------------------------------------------------

BASE = {
    "run_id": "r", "timestamp": "", "uebench_version": "0.1.0", "git_sha": "", "protocol": "cpu", "protocol_version": 3,
    "dataset": "cifar10", "attack": "random", "attack_options": '{"form":"sample"}', "eps": 8 / 255, "norm": "linf",
    "poison_rate": 1.0, "poison_classes": "", "drop_poisoned": False, "quantized": True, "defense": "none",
    "defense_options": '{"none":{}}', "victim": "cnn-small", "victim_options": "{}", "final_test_acc": 0.5,
    "oracle_best_test_acc": 0.5, "device": "cpu:1threads", "precision": "fp32", "data_digest": "0" * 16,
    "torch_version": "2.14.1", "threads": 1,
}

VARIANTS = [
    ("eps", 16 / 255, "eps=16/255"),
    ("quantized", False, "float noise"),
    ("victim_options", '{"width":2}', 'victim {"width":2}'),
    ("norm", "l0:1", "norm=l0:1"),
    ("data_digest", "f" * 16, "data ffffffff"),
    ("threads", 2, "threads=2"),
    ("torch_version", "2.15.0", "torch 2.15.0"),
]


@pytest.mark.parametrize("field,value,shown", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_rows_differing_in_one_identity_field_are_separate_cells(field, value, shown):
    rows = []
    for seed, acc in ((0, 0.10), (1, 0.12)):
        rows.append(dict(BASE, seed=seed, run_id=f"a{seed}", final_test_acc=acc))
        rows.append(dict(BASE, seed=seed, run_id=f"b{seed}", final_test_acc=acc + 0.5, **{field: value}))
    frame = labelled(pd.DataFrame(rows))
    stats = cell_stats(frame)
    assert len(stats) == 2 and set(stats["n"]) == {2}, stats
    assert any(shown in label for label in stats.index.get_level_values("attack_label")), stats.index.tolist()


def test_a_difference_no_listed_field_names_still_splits_the_cell():
    rows = [dict(BASE, seed=0, final_test_acc=0.1), dict(BASE, seed=1, final_test_acc=0.9, uebench_version="0.2.0")]
    stats = cell_stats(labelled(pd.DataFrame(rows)))
    assert len(stats) == 2 and set(stats["n"]) == {1}


def test_the_interval_and_the_comparison_say_whether_a_difference_exceeds_the_seed_spread():
    close = compare(pd.Series([20.0, 24.0, 18.0]), pd.Series([21.0, 23.0, 19.0]))
    far = compare(pd.Series([20.0, 21.0, 19.0, 20.5, 19.5]), pd.Series([40.0, 41.0, 39.0, 40.5, 39.5]))
    assert not close["exceeds_spread"] and close["ci_low"] < 0 < close["ci_high"]
    assert far["exceeds_spread"] and far["difference"] == pytest.approx(-20.0)


# --- a run next to the board ----------------------------------------------------------------

def test_a_run_is_compared_with_the_committed_rows_of_its_configuration(tmp_path):
    board = tmp_path / "results.csv"
    for seed, acc in ((0, 0.1146), (1, 0.2283), (2, 0.1872)):
        row = dict(BASE, seed=seed, run_id=f"r{seed}", final_test_acc=acc)
        row["cell_key"], row["config_key"] = cell_key(row), config_key(row)
        append_row(board, row)
    same = dict(BASE, seed=0, final_test_acc=0.1146)
    lines = compare_with_board(same, board).lines(same)
    assert "n=3, seeds 0-2" in lines[0] and "reproduced bit for bit" in lines[1]
    other = dict(BASE, seed=0, final_test_acc=0.2934, threads=2, device="cpu:2threads")
    lines = compare_with_board(other, board).lines(other)
    assert "threads 1 → 2" in lines[0] and "committed seed 0: 11.46%" in lines[1]
    assert "outside the committed seeds' range, 6.51 points above it" in lines[2]
    assert compare_with_board(dict(BASE, seed=0, attack="errmin-pgd"), board) is None


def test_leaderboard_compare_says_whether_two_cells_differ_beyond_the_seed_spread(invoke, tmp_path):
    board = tmp_path / "cpu" / "results.csv"
    for seed in range(3):
        for defense, acc in (("none", 0.20 + 0.01 * seed), ("mixup", 0.21 + 0.01 * seed), ("jpeg", 0.60 + 0.01 * seed)):
            row = dict(BASE, seed=seed, run_id=f"{defense}{seed}", defense=defense, defense_options=json.dumps({defense: {}}),
                       final_test_acc=acc)
            row["cell_key"], row["config_key"] = cell_key(row), config_key(row)
            append_row(board, row)
    close = invoke("leaderboard", "compare", "cifar10", "random form=sample / mixup", "random form=sample / none",
                   "--root", tmp_path)
    assert close.exit_code == 0, close.output
    assert "difference +1.00 points" in close.output and "does not exceed the seed spread" in close.output
    far = invoke("leaderboard", "compare", "cifar10", "random form=sample / jpeg", "random form=sample / none",
                 "--root", tmp_path)
    assert "difference +40.00 points" in far.output and ": exceeds the seed spread" in far.output
    missing = invoke("leaderboard", "compare", "cifar10", "random form=sample / cutout", "random form=sample / none",
                     "--root", tmp_path)
    assert missing.exit_code == 2 and "no cell 'random form=sample / cutout'" in missing.output
