"""The house (issue 17): a prepared cell is one frozen value, its noise is named once by a
request that is complete before any data is loaded, workers check they run the cell the driver
planned, and composed attacks find their components among the run's plugins."""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, assert_clean_error, require_data
from uebench.cell import CellSpec, RunSettings, prepare, source_victim
from uebench.cellkey import cell_key
from uebench.failures import CellFailure
from uebench.record import planned_row


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if anything loads a dataset's images."""
    from uebench.datasets.base import Dataset

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"dataset {self.name!r} was loaded")

    monkeypatch.setattr(Dataset, "load", refuse)


def test_a_prepared_cell_is_frozen_and_names_its_noise_before_any_data_is_loaded(no_loading):
    require_data()
    cell = prepare(CellSpec(attack="errmin-pgd", protocol="cpu", attack_options={"form": "class"}), RunSettings(device="cpu"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cell.seed = 3  # type: ignore[misc]
    request = cell.noise
    assert request.train_size == 500 * 10  # the cpu protocol's per-class count × CIFAR-10's classes
    assert request.resolved is cell.resolved and request.options["form"] == "class"
    assert request.provenance == cell.provenance and request.key == request.at(train_size=5000).key
    assert request.at(seed=1).key != request.key and request.at(train_size=4999).key != request.key


def test_dropping_the_poisoned_samples_needs_no_noise():
    require_data()
    spec = CellSpec(attack="errmin-pgd", protocol="smoke", poison_rate=0.5, drop_poisoned=True)
    assert prepare(spec, RunSettings(device="cpu")).noise is None


def test_the_sweep_dry_run_names_every_noise_without_loading_the_data(invoke, tmp_path, no_loading):
    require_data()
    matrix = tmp_path / "m.toml"
    matrix.write_text('protocol = "cpu"\nseeds = [0, 1]\n[[attacks]]\nname = "errmin-pgd"\noptions = {form = "sample"}\n')
    result = invoke("sweep", matrix, "--out", tmp_path / "out", "--dry-run", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    import json

    cells = json.loads(result.output)
    expected = [prepare(CellSpec(attack="errmin-pgd", protocol="cpu", seed=s, attack_options={"form": "sample"}),
                        RunSettings(device="cpu", out=tmp_path / "out")).noise.key for s in (0, 1)]
    assert [c["noise"] for c in cells] == expected and len(set(expected)) == 2


def test_one_module_computes_noise_keys():
    """``noise_key(fields)`` (the hash) is called by the noise request alone; the clean-source-model
    cache hashes its own, different fields.  Everything else asks ``NoiseRequest.key``."""
    callers = set()
    for path in (REPO / "uebench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "noise_key":
                callers.add(path.relative_to(REPO).as_posix())
    assert callers == {"uebench/craft/request.py", "uebench/craft/source_models.py"}


def test_a_worker_refuses_a_cell_it_prepares_differently_from_the_driver():
    """A worker that sees other data, another torch or other plugins would run another cell
    under the planned key: it fails, naming both keys."""
    from uebench.sweep.plan import prepared_again

    require_data()
    spec, settings = CellSpec(attack="random", protocol="smoke"), RunSettings(device="cpu")
    key = cell_key(planned_row(prepare(spec, settings)))
    assert cell_key(planned_row(prepared_again(spec, settings, key))) == key
    with pytest.raises(CellFailure, match="the driver planned 0000"):
        prepared_again(spec, settings, "0000" + key[4:])
    errmin = CellSpec(attack="errmin-pgd", protocol="smoke")
    with pytest.raises(CellFailure, match="the crafting task made ffff"):
        prepared_again(errmin, settings, cell_key(planned_row(prepare(errmin, settings))), "ffff")


def test_a_source_model_victim_gets_its_declared_default_options():
    from uebench.plugins import get_host

    victim = source_victim(get_host(), "timm:resnet18")
    assert victim.options is not None and victim.options == type(victim).Options()


CLASSWISE_PLUGIN = '''
from dataclasses import dataclass

import torch

from uebench.attacks.base import Attack
from uebench.hookspecs import hookimpl
from uebench.noise import Noise
from uebench.options import option


class Stripes(Attack):
    """Class k: a horizontal stripe of +eps in row k (a cheap class-wise noise)."""

    name = "stripes"

    @dataclass
    class Options:
        form: str = option("class", help="only class-wise")

    def craft(self, ctx):
        delta = torch.zeros(ctx.num_classes, *ctx.x.shape[1:])
        for k in range(ctx.num_classes):
            delta[k, :, k] = ctx.eps
        return Noise(delta.to(ctx.device), "class", ctx.eps, {"attack": self.name, "seed": ctx.seed})


@hookimpl
def register_attacks(register):
    register(Stripes)
'''


def test_a_mixture_finds_its_component_among_the_plugins_dir_plugins(tmp_path):
    """``mix-or -o attack=stripes`` with ``stripes`` from ``--plugins-dir``: the component is looked
    up in the run's host and crafted through the cache at seeds 2s and 2s + 1."""
    from uebench.runner import cell_noise, load_cell

    require_data()
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "stripes.py").write_text(textwrap.dedent(CLASSWISE_PLUGIN))
    settings = RunSettings(device="cpu", plugins_dirs=(str(folder),), cache_dir=tmp_path / "cache", out=tmp_path / "out")
    cell = prepare(CellSpec(attack="mix-or", protocol="smoke", attack_options={"attack": "stripes"}), settings)
    noise = cell_noise(cell, load_cell(cell)).noise
    assert noise.meta["component"] == "stripes" and noise.meta["component_seeds"] == [0, 1]
    assert len(list(Path(tmp_path / "cache").glob("*.pt"))) == 2  # both components, cached


def test_an_unknown_mixture_component_is_bad_input_before_any_data_is_loaded(invoke, tmp_path, no_loading):
    result = invoke("run", "--protocol", "smoke", "--attack", "mix-add", "-o", "attack=errmin-pdg",
                    "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert "errmin-pdg" in assert_clean_error(result, 2)
