"""The example victim and dataset plugin files in ``plugins/onefile`` (beside the defense there and
the attack packages), each loaded with ``--plugins-dir`` and run at the smallest scale: the
victim built and run forward, the dataset written with ``uebench.api``'s writers and loaded."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import REPO, json_out
from uebench.api import ImageData, write_splits
from uebench.options import OptionError, build_options
from uebench.plugins import get_host

FOLDER = REPO / "plugins" / "onefile"


def _host():
    return get_host((str(FOLDER),))


def _listed(invoke, kind: str) -> dict:
    return {r["name"]: r for r in json_out(invoke("--plugins-dir", FOLDER, f"{kind}s", "list", "--json"))}


# --- victim: mlp ---------------------------------------------------------------------------


def test_the_victim_example_is_listed_with_its_plugin_and_options(invoke):
    row = _listed(invoke, "victim")["mlp"]
    assert row["plugin"] == "mlp"
    assert [(o["name"], o["default"]) for o in row["options"]] == [("depth", 2), ("width", 512)]
    infos = {i.name: i for i in _host().infos}
    assert infos["mlp"].error is None and infos["mlp"].provides == {"victim": ["mlp"]}


@pytest.mark.parametrize("values, linear_layers", [({}, 3), ({"depth": "0"}, 1), ({"depth": "1", "width": "16"}, 2)])
def test_the_victim_example_builds_and_runs_forward(values, linear_layers):
    cls = _host().victims.get("mlp").cls
    torch.manual_seed(0)
    model = cls(build_options(cls.Options, values, "victim 'mlp'")).build(10, (3, 32, 32))
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == linear_layers
    x = torch.rand(4, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.sum().backward()  # trainable end to end
    assert all(p.grad is not None for p in model.parameters())


def test_the_victim_example_builds_without_options_as_a_source_model():
    model = _host().victims.get("mlp").cls(None).build(4, (1, 16, 16))
    assert model.eval()(torch.rand(2, 1, 16, 16)).shape == (2, 4)


def test_the_victim_example_rejects_a_bad_option():
    cls = _host().victims.get("mlp").cls
    with pytest.raises(OptionError, match="depth must be >= 0"):
        build_options(cls.Options, {"depth": "-1"}, "victim 'mlp'")


# --- dataset: shapes -----------------------------------------------------------------------


def test_the_dataset_example_is_listed_with_its_plugin(invoke):
    row = _listed(invoke, "dataset")["shapes"]
    assert row["plugin"] == "shapes" and "Synthetic shapes" in row["summary"]


def test_the_dataset_example_writes_its_layout_and_loads_it(tmp_path):
    cls = _host().datasets.get("shapes").cls
    data = cls().load(tmp_path)  # "downloads": draws the images and writes them with write_layout
    assert (tmp_path / "shapes" / "test.npz").is_file() and list((tmp_path / "shapes").glob("train-*.npz"))
    assert isinstance(data, ImageData) and data.classes == ["square", "disk", "cross", "ring"]
    assert data.x_train.shape == (400, 3, 32, 32) and data.x_test.shape == (100, 3, 32, 32)
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64
    assert torch.bincount(data.y_train).tolist() == [100] * 4 and torch.bincount(data.y_test).tolist() == [25] * 4
    again = cls().load(tmp_path.parent / "elsewhere")  # another machine: the same bytes
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    assert cls().train_count(tmp_path) == 400
    assert cls().digest(tmp_path) == cls().digest(tmp_path.parent / "elsewhere")


def test_the_dataset_example_loads_a_layout_written_by_write_splits(tmp_path):
    """A torchvision-style split (``.data`` N×H×W×C uint8, ``.targets``) written with the api's
    ``write_splits`` is what the dataset then loads, image for image (no drawing)."""
    rng = np.random.default_rng(0)

    def split(n):
        return SimpleNamespace(data=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), targets=list(range(4)) * (n // 4))

    train, test = split(8), split(4)
    write_splits(tmp_path / "shapes", train, test)
    data = _host().datasets.get("shapes").cls().load(tmp_path, download=False)
    assert torch.equal(data.x_train, torch.from_numpy(train.data).permute(0, 3, 1, 2))
    assert data.y_train.tolist() == train.targets and data.y_test.tolist() == test.targets


@pytest.mark.slow
def test_the_victim_and_dataset_examples_run_a_smoke_cell(invoke, tmp_path):
    (tmp_path / "data").mkdir()  # the dataset is drawn into it
    result = invoke("--plugins-dir", FOLDER, "run", "--protocol", "smoke", "--dataset", "shapes", "--victim", "mlp",
                    "-o", "depth=0", "--attack", "random", "--data-dir", tmp_path / "data", "--out", tmp_path / "out",
                    "--cache-dir", tmp_path / "cache", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert (row["dataset"], row["victim"], row["attack"]) == ("shapes", "mlp", "random")
    assert json.loads(row["victim_options"]) == {"depth": 0, "width": 512}
    assert row["train_size"] == 200 and 0.0 <= row["final_test_acc"] <= 1.0
