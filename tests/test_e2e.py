"""End-to-end cells on real CIFAR-10 with ``--protocol smoke`` (in-process CLI, ``--json``).

Each cell loads the dataset and trains cnn-tiny for 2 epochs on 500 images, so this file runs
five cells here (two more run in ``test_entry_point_plugin.py``).
"""

from __future__ import annotations

import csv
import json
import textwrap

import pandas as pd
import pytest
from test_plugins_dir import GOOD

from conftest import json_out, require_data
from uebench.cli import cli
from uebench.craft.cache import NoiseCache
from uebench.protocols import get_protocol
from uebench.results import COLUMNS

pytestmark = pytest.mark.slow

EPS = 8 / 255


@pytest.fixture(autouse=True)
def _data():
    require_data()


def _check_row_basics(row, attack, defense="none", seed=0):
    smoke = get_protocol("smoke")
    assert list(row) == list(COLUMNS)
    assert row["protocol"] == "smoke" and row["protocol_version"] == smoke.version
    assert row["dataset"] == "cifar10" and row["victim"] == "cnn-tiny"
    assert row["attack"] == attack and row["defense"] == defense and row["seed"] == seed
    assert row["epochs"] == smoke.epochs
    assert row["train_size"] == 10 * smoke.train_per_class and row["test_size"] == 10 * smoke.test_per_class
    assert 0 <= row["final_test_acc"] <= 1 and 0 <= row["oracle_best_test_acc"] <= 1 and 0 <= row["final_train_acc"] <= 1
    assert row["oracle_best_test_acc"] >= row["final_test_acc"]
    assert 1 <= row["oracle_best_epoch"] <= smoke.epochs and 1 <= row["selected_epoch"] <= smoke.epochs
    assert row["quantized"] is True
    assert row["device"].startswith(("cpu", "cuda")) and row["precision"] in ("fp32", "bf16", "fp16")
    assert row["run_id"] and row["timestamp"]


def test_errmin_cell_schema_and_noise_cache(invoke, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ("run", "--protocol", "smoke", "--json", "--attack", "errmin-pgd", "--eps", "8/255",
            "-o", "steps=2", "-o", "attack.max_iters=1", "--out", out, "--cache-dir", cache)
    first = json_out(invoke(*args))
    second = json_out(invoke(*args))

    for row in (first, second):
        _check_row_basics(row, "errmin-pgd")
        assert row["eps"] == pytest.approx(EPS, rel=1e-12) and row["poison_rate"] == 1.0
        opts = json.loads(row["attack_options"])
        assert opts["steps"] == 2 and opts["max_iters"] == 1  # given
        assert opts["form"] == "sample" and opts["stop_error"] == 0.01  # paper defaults
        assert opts["step_size"] == pytest.approx(EPS / 10)
        assert opts["source"] == "cnn-tiny" and opts["model_steps"] == get_protocol("smoke").craft("sample").model_steps
        assert json.loads(row["defense_options"]) == {"none": {}} and json.loads(row["victim_options"]) == {}
        assert row["craft_iterations"] == 1 and row["craft_stop_reason"] in ("max_iters", "stop_error")
        assert 0 <= row["craft_final_error"] <= 1

    # miss, then hit — the same key, and the cached noise reproduces the run
    assert first["noise_cached"] is False and second["noise_cached"] is True
    assert first["noise_key"] == second["noise_key"] and len(first["noise_key"]) == 20
    assert first["craft_seconds"] > 0 and second["craft_seconds"] >= 0
    assert first["run_id"] != second["run_id"]
    assert (second["final_test_acc"], second["final_train_acc"]) == (first["final_test_acc"], first["final_train_acc"])
    noise, why = NoiseCache(cache).get(first["noise_key"])
    assert why is None and noise.form == "sample" and tuple(noise.delta.shape) == (500, 3, 32, 32)
    assert noise.delta.abs().max().item() <= EPS + 1e-6

    # results.csv: exactly the schema's columns, in order; one row per cell
    with open(out / "results.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == list(COLUMNS)
    frame = pd.read_csv(out / "results.csv")
    assert frame["run_id"].tolist() == [first["run_id"], second["run_id"]]
    assert frame["noise_cached"].tolist() == [False, True]
    assert not list(out.glob("*.tmp"))
    curves = sorted((out / "curves").glob("*.csv"))
    assert [c.stem for c in curves] == sorted([first["run_id"], second["run_id"]])
    curve = pd.read_csv(curves[0])
    assert curve["epoch"].tolist() == list(range(1, get_protocol("smoke").epochs + 1))

    # a corrupted cache entry is discarded and crafted again (never a crash, never reused)
    cache_file = cache / f"{first['noise_key']}.pt"
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    third = json_out(invoke(*args))
    assert third["noise_cached"] is False and third["noise_key"] == first["noise_key"]
    assert NoiseCache(cache).get(first["noise_key"])[1] is None  # rewritten, valid again
    assert len(pd.read_csv(out / "results.csv")) == 3


def test_random_classwise_noise_cutmix_partial_poisoning(invoke, tmp_path):
    out = tmp_path / "out"
    row = json_out(invoke(
        "run", "--protocol", "smoke", "--json", "--attack", "random", "-o", "form=class",
        "--defense", "cutmix", "-o", "prob=0.5", "--poison-rate", "0.5", "--seed", "1", "--out", out,
    ))
    _check_row_basics(row, "random", defense="cutmix", seed=1)
    assert json.loads(row["attack_options"]) == {"form": "class"}
    assert json.loads(row["defense_options"]) == {"cutmix": {"alpha": 1.0, "prob": 0.5}}
    assert row["poison_rate"] == 0.5 and row["eps"] == pytest.approx(EPS)
    assert row["noise_key"] == "" and row["noise_cached"] is False  # random noise is not cached
    assert row["craft_stop_reason"] == "" and row["craft_iterations"] == ""
    assert pd.read_csv(out / "results.csv")["defense"].tolist() == ["cutmix"]


def test_plugins_dir_attack_runs(invoke, tmp_path):
    plugs = tmp_path / "plugs"
    plugs.mkdir()
    (plugs / "myfile.py").write_text(textwrap.dedent(GOOD))
    try:
        row = json_out(invoke(
            "--plugins-dir", plugs, "run", "--protocol", "smoke", "--json", "--attack", "stripes",
            "-o", "period=4", "--defense", "nothing", "--out", tmp_path / "out",
        ))
    finally:
        cli.commands.pop("hello-plugdir", None)
    _check_row_basics(row, "stripes", defense="nothing")
    assert json.loads(row["attack_options"]) == {"period": 4}


def test_poison_scope_by_class_and_the_clean_remainder(invoke, tmp_path):
    out = tmp_path / "out"
    common = ("run", "--protocol", "smoke", "--json", "--attack", "random", "-o", "form=class", "--out", out)
    bird = json_out(invoke(*common, "--poison-classes", "bird,3"))
    assert bird["poison_classes"] == "bird,cat" and bird["drop_poisoned"] is False and bird["train_size"] == 500
    rest = json_out(invoke(*common, "--poison-rate", "0.8", "--drop-poisoned"))
    assert rest["drop_poisoned"] is True and rest["train_size"] == 100  # the clean 20% alone
    assert rest["noise_key"] == "" and rest["craft_seconds"] == 0  # no noise needed for what is dropped
    frame = pd.read_csv(out / "results.csv")
    assert frame["poison_classes"].fillna("").tolist() == ["bird,cat", ""]


def test_unknown_poison_class_is_a_clear_error(invoke, tmp_path):
    from conftest import assert_clean_error

    result = invoke("run", "--protocol", "smoke", "--attack", "random", "--poison-classes", "brid", "--out", tmp_path / "out")
    message = assert_clean_error(result, 2)
    assert "unknown class 'brid'" in message and "Did you mean 'bird'" in message
    result = invoke("run", "--protocol", "smoke", "--attack", "random", "--drop-poisoned", "--out", tmp_path / "out")
    assert "leaves nothing to train on" in assert_clean_error(result, 2)
    assert not (tmp_path / "out").exists()
