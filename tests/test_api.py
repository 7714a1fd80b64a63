"""``uebench.api``, the surface plugin authors import: every name imports, is the object uebench
itself uses, and is what the example plugins in ``plugins/`` (and the plugin README's example)
import — they import nothing else from uebench.  ``CraftContext`` is keyword-only."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap

import pytest
import torch

from conftest import REPO, json_out
from uebench import api, hookspecs

# what the issue names as the surface; more may be there, none of these may go
REQUIRED = {"Attack", "CraftContext", "Noise", "Defense", "TrainState", "TrainControl", "Victim", "Dataset", "option",
            "hookimpl", "write_layout", "write_splits"}
HOMES = {  # where each name lives, so the api hands out the very objects uebench checks against
    "Attack": "uebench.attacks.base", "CraftContext": "uebench.attacks.base", "Noise": "uebench.noise",
    "to_unit_float": "uebench.noise", "Defense": "uebench.defenses.base", "Purifier": "uebench.defenses.purify",
    "TrainData": "uebench.train.data", "Detector": "uebench.detectors.base", "SuspectSet": "uebench.detectors.base",
    "Verdict": "uebench.detectors.base",
    "TrainState": "uebench.train.events", "TrainControl": "uebench.train.events", "Victim": "uebench.victims.base",
    "Dataset": "uebench.datasets.base", "ImageData": "uebench.datasets.base", "write_layout": "uebench.datasets.base",
    "write_splits": "uebench.datasets.base", "option": "uebench.options", "hookimpl": "uebench.hookspecs",
}
PLUGINS = REPO / "plugins"


def test_every_name_in_all_imports_and_is_uebenchs_own_object():
    assert REQUIRED <= set(api.__all__)
    assert len(set(api.__all__)) == len(api.__all__) == len(HOMES)
    for name in api.__all__:
        obj = getattr(importlib.import_module("uebench.api"), name)
        assert obj is getattr(importlib.import_module(HOMES[name]), name), name


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from uebench.api import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(api.__all__)


def test_the_api_docstring_says_it_is_the_stable_surface():
    assert "stable surface" in api.__doc__
    for name in api.__all__:  # the table names every export
        assert f"`{name}`" in api.__doc__, name


def _plugin_sources() -> dict[str, str]:
    """Every example plugin's Python source, and the Python examples of plugins/README.md."""
    sources = {str(p.relative_to(REPO)): p.read_text() for p in sorted(PLUGINS.rglob("*.py"))
               if not any(part.endswith(".egg-info") or part in ("build", "dist") for part in p.parts)}
    readme = (PLUGINS / "README.md").read_text()
    for k, block in enumerate(re.findall(r"```python\n(.*?)```", readme, re.S)):
        sources[f"plugins/README.md#python-{k}"] = block
    return sources


def _uebench_imports(source: str) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import of a ``uebench`` module in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name == "uebench" or a.name.startswith("uebench.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "uebench" or node.module.startswith("uebench."):
                found.append((node.module, [a.name for a in node.names]))
    return found


def test_example_plugins_import_from_uebench_only_through_the_api():
    sources = _plugin_sources()
    expected = {"plugins/onefile/gaussian_blur.py", "plugins/onefile/mlp.py", "plugins/onefile/shapes.py",
                "plugins/uebench-checkerboard/uebench_checkerboard/__init__.py",
                "plugins/uebench-ops/uebench_ops/__init__.py", "plugins/README.md#python-0"}
    assert expected <= set(sources)
    for where, source in sources.items():
        imports = _uebench_imports(source)
        if where in expected:
            assert imports, f"{where} imports nothing from uebench.api"
        for module, names in imports:
            assert module == "uebench.api", f"{where} imports {module}: plugins import from uebench.api only"
            assert "*" not in names and set(names) <= set(api.__all__), f"{where}: {names} not all in uebench.api.__all__"


def test_the_import_check_catches_an_internal_import():
    assert _uebench_imports("from uebench.noise import Noise\nimport uebench.hookspecs\nfrom . import x\n") == [
        ("uebench.noise", ["Noise"]), ("uebench.hookspecs", [])]


def test_hookspecs_name_only_what_the_api_exports():
    names = set(re.findall(r"uebench\.api\.(\w+)", inspect.getsource(hookspecs)))
    assert names and names <= set(api.__all__)


# --- CraftContext is keyword-only -------------------------------------------------------


def _fields() -> dict:
    from uebench.protocols import get_protocol

    return dict(x=torch.zeros(2, 3, 4, 4, dtype=torch.uint8), y=torch.tensor([0, 1]), num_classes=2, eps=8 / 255, seed=0,
                device=torch.device("cpu"), precision="fp32", channels_last=False, protocol=get_protocol("smoke"),
                build_model=lambda name: None, generator=torch.Generator())


def test_craft_context_is_keyword_only():
    assert all(f.kw_only for f in dataclasses.fields(api.CraftContext))
    ctx = api.CraftContext(**_fields())
    assert ctx.num_classes == 2 and ctx.reporter is not None and ctx.train_index is None
    with pytest.raises(TypeError):
        api.CraftContext(*_fields().values())


# --- the README's example is a working plugin -------------------------------------------


def test_the_readme_example_plugin_loads_and_its_command_runs(invoke, tmp_path):
    source = _plugin_sources()["plugins/README.md#python-0"]
    (tmp_path / "flat.py").write_text(textwrap.dedent(source))
    attacks = {r["name"]: r for r in json_out(invoke("--plugins-dir", tmp_path, "attacks", "list", "--json"))}
    assert attacks["flat"]["plugin"] == "flat"
    assert [o["name"] for o in attacks["flat"]["options"]] == ["sign"]
    result = invoke("--plugins-dir", tmp_path, "flat-info")
    assert result.exit_code == 0 and "constant" in result.stdout
    from conftest import make_ctx
    from uebench.plugins import get_host

    noise = get_host((str(tmp_path),)).attacks.get("flat").cls().craft(make_ctx(num_classes=3))
    assert noise.form == "class" and tuple(noise.delta.shape) == (3, 3, 32, 32)
