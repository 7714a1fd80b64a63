"""A third-party plugin installed with pip and found through the ``uebench`` entry-point group.

The throw-away distribution ``uebenchmyplugdist`` declares
``[project.entry-points.uebench] myplug = "myplug"``; its module registers the attack
``const-noise`` (class-wise constant ±ε noise).  It is pip-installed into the running
interpreter for this module's tests and uninstalled afterwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import build_wheel, can_build_from_source, json_out, require_data
from uebench.craft.cache import NoiseCache
from uebench.plugins import BUILTIN_PLUGINS
from uebench.results import COLUMNS

pytestmark = pytest.mark.slow

DIST, VERSION, EP_NAME, MODULE = "uebenchmyplugdist", "0.0.1", "myplug", "myplug"
ENTRY_POINTS = f"[uebench]\n{EP_NAME} = {MODULE}\n"

PYPROJECT = f"""
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{DIST}"
version = "{VERSION}"
description = "throw-away uebench plugin for the test suite"

[project.entry-points.uebench]
{EP_NAME} = "{MODULE}"

[tool.setuptools]
py-modules = ["{MODULE}"]
"""

PLUGIN = '''
"""Test plugin: class-wise constant noise (+ε for even classes, -ε for odd ones, times ``sign``)."""
import os
from dataclasses import dataclass

import torch

import uebench.hookspecs
from uebench.attacks.base import Attack
from uebench.noise import Noise
from uebench.options import option

if os.environ.get("MYPLUG_FAIL_IMPORT"):
    raise RuntimeError("myplug was told to fail at import")


class ConstNoise(Attack):
    """Class-wise constant noise: every pixel of class k moves by ±ε (test plugin)."""

    name = "const-noise"

    @dataclass
    class Options:
        sign: float = option(1.0, help="+1 or -1: flips every class's direction")

    def craft(self, ctx):
        k = ctx.num_classes
        signs = (1.0 - 2.0 * (torch.arange(k) % 2).float()) * self.options.sign
        delta = (signs * ctx.eps).view(k, 1, 1, 1).expand(k, *ctx.x.shape[1:]).contiguous()
        return Noise(delta.to(ctx.device), "class", ctx.eps, {"attack": self.name})


@uebench.hookspecs.hookimpl
def register_attacks(register):
    register(ConstNoise)
'''


def _pip(*args):
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-cache-dir"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _build_wheel(src: Path, out: Path) -> Path:
    """Assemble the same distribution as a wheel by hand (no build backend needed)."""
    return build_wheel(out, DIST, VERSION, {f"{MODULE}.py": (src / f"{MODULE}.py").read_text()}, ENTRY_POINTS)


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    src = tmp_path_factory.mktemp("myplug-src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / f"{MODULE}.py").write_text(textwrap.dedent(PLUGIN))
    _pip("uninstall", "-y", DIST)  # a leftover of an interrupted run, if any
    target = src if can_build_from_source() else _build_wheel(src, tmp_path_factory.mktemp("wheel"))
    result = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(target))
    assert result.returncode == 0, result.stdout + result.stderr
    importlib.invalidate_caches()
    try:
        yield src
    finally:
        result = _pip("uninstall", "-y", DIST)
        sys.modules.pop(MODULE, None)
        importlib.invalidate_caches()
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(autouse=True)
def _fresh_module(installed_plugin, monkeypatch):
    """Each test imports the plugin anew (its import may be told to fail)."""
    monkeypatch.delenv("UEBENCH_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("MYPLUG_FAIL_IMPORT", raising=False)
    sys.modules.pop(MODULE, None)
    yield
    sys.modules.pop(MODULE, None)


def _infos(invoke):
    return {r["name"]: r for r in json_out(invoke("plugins", "--json"))}


def _attack_names(invoke):
    return [r["name"] for r in json_out(invoke("attacks", "list", "--json"))]


def test_entry_point_plugin_is_listed(invoke):
    info = _infos(invoke)[EP_NAME]
    assert info["source"] == "entry-point"
    assert info["error"] is None
    assert info["module"] == MODULE and info["version"] == VERSION
    assert info["provides"] == {"attack": ["const-noise"]}
    assert info["path"].endswith(f"{MODULE}.py")
    rows = {r["name"]: r for r in json_out(invoke("attacks", "list", "--json"))}
    assert rows["const-noise"]["plugin"] == EP_NAME
    assert rows["const-noise"]["summary"].startswith("Class-wise constant noise")
    assert [o["name"] for o in rows["const-noise"]["options"]] == ["sign"]


def test_load_plugins_empty_disables_third_party(invoke, monkeypatch):
    monkeypatch.setenv("UEBENCH_LOAD_PLUGINS", "")
    infos = _infos(invoke)
    assert EP_NAME not in infos
    assert set(BUILTIN_PLUGINS) <= set(infos)  # built-ins always load
    assert "const-noise" not in _attack_names(invoke)
    result = invoke("run", "--protocol", "smoke", "--json", "--attack", "const-noise")
    assert result.exit_code == 2 and "unknown attack 'const-noise'" in result.output


@pytest.mark.parametrize("value, loaded", [(EP_NAME, True), (DIST, True), (" other , myplug ", True), ("other", False)])
def test_load_plugins_selects_by_entry_point_or_distribution(invoke, monkeypatch, value, loaded):
    monkeypatch.setenv("UEBENCH_LOAD_PLUGINS", value)
    assert (EP_NAME in _infos(invoke)) is loaded
    assert ("const-noise" in _attack_names(invoke)) is loaded


@pytest.mark.faults
def test_plugin_failing_at_import_is_reported_and_builtins_still_run(invoke, monkeypatch, tmp_path):
    require_data()
    monkeypatch.setenv("MYPLUG_FAIL_IMPORT", "1")
    infos = _infos(invoke)
    assert infos[EP_NAME]["source"] == "entry-point"
    assert "RuntimeError: myplug was told to fail at import" in infos[EP_NAME]["error"]
    assert infos[EP_NAME]["provides"] == {}
    for module in BUILTIN_PLUGINS:
        assert infos[module]["error"] is None
    names = _attack_names(invoke)
    assert "const-noise" not in names and {"none", "random", "errmin-pgd"} <= set(names)
    # a built-in cell still runs end to end, with a warning about the broken plugin
    result = invoke("run", "--protocol", "smoke", "--json", "--attack", "none", "--out", tmp_path / "out")
    row = json_out(result)
    assert row["attack"] == "none" and row["noise_key"] == "" and row["craft_stop_reason"] == ""
    assert "plugin 'myplug' (entry-point) failed to load" in result.stderr


def test_run_cell_with_entry_point_attack(invoke, tmp_path):
    require_data()
    result = invoke(
        "run", "--protocol", "smoke", "--json", "--attack", "const-noise", "-o", "attack.sign=-1",
        "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache",
    )
    row = json_out(result)
    assert list(row) == list(COLUMNS)
    assert row["attack"] == "const-noise"
    assert json.loads(row["attack_options"]) == {"sign": -1.0}
    assert row["noise_cached"] is False and row["noise_key"]
    assert pd.read_csv(tmp_path / "out" / "results.csv")["attack"].tolist() == ["const-noise"]
    # the noise the plugin crafted went through the cache: class-wise, constant, sign flipped
    noise, why = NoiseCache(tmp_path / "cache").get(row["noise_key"])
    assert why is None and noise.form == "class" and noise.delta.shape == (10, 3, 32, 32)
    eps = row["eps"]
    per_class = noise.delta.flatten(1)
    assert torch.allclose(per_class[0::2], torch.full_like(per_class[0::2], -eps))
    assert torch.allclose(per_class[1::2], torch.full_like(per_class[1::2], eps))
