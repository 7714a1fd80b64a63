"""One-off plugin files (``--plugins-dir`` / ``UEBENCH_PLUGINS_DIR``) and plugin failures."""

from __future__ import annotations

import textwrap

import pytest

from conftest import json_out
from uebench.cli import cli
from uebench.plugins import BUILTIN_PLUGINS, get_host

GOOD = '''
"""A one-off plugin file: an attack, a defense and a command."""
from dataclasses import dataclass

import click
import torch

from uebench.attacks.base import Attack
from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.noise import Noise
from uebench.options import option


class Stripes(Attack):
    """Sample-wise ±ε stripes (test plugin)."""

    name = "stripes"
    cacheable = False

    @dataclass
    class Options:
        period: int = option(2, help="stripe period in pixels")

    def craft(self, ctx):
        n, c, h, w = ctx.x.shape
        rows = (torch.arange(h) // self.options.period % 2 * 2 - 1).float() * ctx.eps
        delta = rows.view(1, 1, h, 1).expand(n, c, h, w).clone()
        return Noise(delta.to(ctx.device), "sample", ctx.eps, {"attack": self.name})


class Nothing(Defense):
    """Does nothing (test plugin)."""

    name = "nothing"


@hookimpl
def register_attacks(register):
    register(Stripes)


@hookimpl
def register_defenses(register):
    register(Nothing)


@hookimpl
def register_commands(cli):
    @cli.command(name="hello-plugdir")
    def hello():
        """Say hello (test plugin)."""
        click.echo("hello from a plugin file")
'''


@pytest.fixture
def plugdir(tmp_path):
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "myfile.py").write_text(textwrap.dedent(GOOD))
    (folder / "_helper.py").write_text("raise RuntimeError('files starting with _ are not plugins')\n")
    (folder / "notes.txt").write_text("not python")
    yield folder
    cli.commands.pop("hello-plugdir", None)  # the CLI group is shared by every test


def _by_name(rows):
    return {r["name"]: r for r in rows}


def test_plugins_dir_file_registers_everything(invoke, plugdir):
    infos = _by_name(json_out(invoke("--plugins-dir", plugdir, "plugins", "--json")))
    info = infos["myfile"]
    assert info["source"] == "plugins-dir"
    assert info["error"] is None
    assert info["path"] == str(plugdir / "myfile.py")
    assert info["provides"] == {"attack": ["stripes"], "defense": ["nothing"], "command": ["hello-plugdir"]}
    assert "_helper" not in infos and "notes" not in infos
    attacks = _by_name(json_out(invoke("--plugins-dir", plugdir, "attacks", "list", "--json")))
    assert attacks["stripes"]["plugin"] == "myfile"
    assert attacks["stripes"]["options"][0]["name"] == "period"
    assert "errmin-pgd" in attacks  # built-ins still there


def test_plugins_dir_command(invoke, plugdir):
    result = invoke("--plugins-dir", plugdir, "hello-plugdir")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "hello from a plugin file"


def test_plugins_dir_from_environment(invoke, plugdir, monkeypatch):
    assert "stripes" not in get_host().attacks
    monkeypatch.setenv("UEBENCH_PLUGINS_DIR", str(plugdir))
    names = [r["name"] for r in json_out(invoke("attacks", "list", "--json"))]
    assert "stripes" in names


def test_plugins_dir_is_a_separate_host(plugdir):
    assert "stripes" in get_host((str(plugdir),)).attacks
    assert "stripes" not in get_host().attacks


@pytest.mark.faults
@pytest.mark.parametrize(
    "source, fragment",
    [
        ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ("import no_such_module_xyz\n", "ModuleNotFoundError"),
        (
            "from uebench.hookspecs import hookimpl\n"
            "from uebench.attacks.base import Attack\n"
            "class Bad(Attack):\n    name = 'Bad_Name'\n"
            "@hookimpl\ndef register_attacks(register):\n    register(Bad)\n",
            "kebab-case",
        ),
        (
            "from uebench.hookspecs import hookimpl\n"
            "@hookimpl\ndef register_attacks(register, extra):\n    pass\n",
            "extra",
        ),
        (
            "from uebench.hookspecs import hookimpl\n"
            "@hookimpl\ndef register_attack(register):\n    pass\n",
            "'register_attack'",
        ),
    ],
    ids=["raises", "missing-import", "bad-name", "bad-signature", "misspelt-hook"],
)
def test_failing_plugin_file_is_reported_and_builtins_keep_working(invoke, tmp_path, source, fragment):
    (tmp_path / "broken.py").write_text(source)
    infos = _by_name(json_out(invoke("--plugins-dir", tmp_path, "plugins", "--json")))
    assert infos["broken"]["source"] == "plugins-dir"
    assert infos["broken"]["error"] and fragment in infos["broken"]["error"]
    for module in BUILTIN_PLUGINS:
        assert infos[module]["error"] is None
    attacks = _by_name(json_out(invoke("--plugins-dir", tmp_path, "attacks", "list", "--json")))
    assert {"none", "random", "errmin-pgd"} <= set(attacks)
    assert attacks["none"]["plugin"] == "uebench.attacks.baselines"


CLASH = """
from uebench.attacks.base import Attack
from uebench.hookspecs import hookimpl


class Clash(Attack):
    '''Claims the built-in name none.'''

    name = "none"


@hookimpl
def register_attacks(register):
    register(Clash)
"""


@pytest.mark.faults
def test_name_clash_is_reported_and_the_builtin_wins(invoke, tmp_path):
    """A plugin file claiming the built-in name ``none``: built-ins register first, so the
    plugin file's registration is the one that fails (its error names both plugins) and the
    built-in attack stays."""
    (tmp_path / "clashing.py").write_text(CLASH)
    infos = _by_name(json_out(invoke("--plugins-dir", tmp_path, "plugins", "--json")))
    failed = {name: info["error"] for name, info in infos.items() if info["error"]}
    assert list(failed) == ["clashing"]  # the error is on the plugin file, not on the built-in
    error = failed["clashing"]
    assert "clashes" in error and "'none'" in error and "uebench.attacks.baselines" in error
    assert infos["clashing"]["provides"] == {}
    baselines = infos["uebench.attacks.baselines"]
    assert baselines["error"] is None and "none" in baselines["provides"]["attack"]
    attacks = _by_name(json_out(invoke("--plugins-dir", tmp_path, "attacks", "list", "--json")))
    assert {"none", "random", "errmin-pgd"} <= set(attacks)
    assert attacks["none"]["plugin"] == "uebench.attacks.baselines"
    assert attacks["random"]["plugin"] == "uebench.attacks.baselines"
    assert "Claims the built-in name" not in attacks["none"]["summary"]
    entry = get_host((str(tmp_path),)).attacks.get("none")
    assert entry.cls.__module__ == "uebench.attacks.baselines"


MISSPELT = """
from uebench.hookspecs import hookimpl


@hookimpl
def register_attack(register):  # misspelt: the hook is register_attacks
    pass
"""


@pytest.mark.faults
def test_misspelt_hook_is_reported_against_its_plugin_only(invoke, plugdir):
    """A misspelt hook name fails only its own plugin: listings still work (exit 0), a good
    plugin file beside it still loads, and the error names the misspelt hook."""
    (plugdir / "typo.py").write_text(MISSPELT)
    result = invoke("--plugins-dir", plugdir, "attacks", "list", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    attacks = _by_name(json_out(result))
    assert {"none", "random", "errmin-pgd", "stripes"} <= set(attacks)
    infos = _by_name(json_out(invoke("--plugins-dir", plugdir, "plugins", "--json")))
    assert infos["typo"]["source"] == "plugins-dir"
    assert infos["typo"]["error"] and "'register_attack'" in infos["typo"]["error"]
    assert infos["typo"]["provides"] == {}
    assert infos["myfile"]["error"] is None
    assert infos["myfile"]["provides"] == {"attack": ["stripes"], "defense": ["nothing"], "command": ["hello-plugdir"]}
    for module in BUILTIN_PLUGINS:
        assert infos[module]["error"] is None
    human = invoke("--plugins-dir", plugdir, "plugins")
    assert human.exit_code == 0 and "typo" in human.stdout and "Traceback" not in human.output


def test_shipped_example_plugin_file_loads(invoke):
    """``plugins/onefile`` (the README's --plugins-dir example) registers a working defense."""
    import torch

    from conftest import REPO

    folder = REPO / "plugins" / "onefile"
    rows = _by_name(json_out(invoke("--plugins-dir", folder, "defenses", "list", "--json")))
    assert rows["gaussian-blur"]["plugin"] == "gaussian_blur"
    cls = get_host((str(folder),)).defenses.get("gaussian-blur").cls
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    target = torch.eye(4)
    defense = cls()
    xa, ta = defense.augment(x, target, torch.Generator())
    assert xa.shape == x.shape and torch.equal(ta, target)
    assert xa.std() < x.std()  # smoothing lowers the spread of uniform noise
    assert torch.equal(defense.eval_images(x), xa)  # test images are blurred the same way
