"""Hooks are called through pluggy (``tryfirst``/``trylast`` order the calls, wrappers wrap the
others), every registration is still credited to its plugin, and a plugin is registered all
together or not at all: a name clash, a bad class or a raising hook leaves none of it."""

from __future__ import annotations

import sys
import textwrap

import pytest

from conftest import json_out
from uebench.api import Attack
from uebench.plugins import get_host
from uebench.registry import Registry

HEADER = """
import calllog
from uebench.api import Attack, Defense, hookimpl


def attack(name):
    return type(name.replace("-", "_"), (Attack,), {"name": name, "__doc__": "test attack " + name})


def defense(name):
    return type(name.replace("-", "_"), (Defense,), {"name": name, "__doc__": "test defense " + name})
"""

ORDERED = {
    "a_plain.py": """
@hookimpl
def register_attacks(register):
    calllog.CALLS.append("plain")
    register(attack("from-plain"))
""",
    "b_first.py": """
@hookimpl(tryfirst=True)
def register_attacks(register):
    calllog.CALLS.append("first")
    register(attack("from-first"))
""",
    "c_last.py": """
@hookimpl(trylast=True)
def register_attacks(register):
    calllog.CALLS.append("last")
    register(attack("from-last"))
""",
    "d_wrapper.py": """
@hookimpl(wrapper=True)
def register_attacks(register):
    calllog.CALLS.append("wrapper-before")
    register(attack("wrapper-before"))
    result = yield
    calllog.CALLS.append("wrapper-after")
    register(attack("wrapper-after"))
    return result
""",
    "e_old_wrapper.py": """
@hookimpl(hookwrapper=True)
def register_attacks(register):
    calllog.CALLS.append("old-wrapper-before")
    outcome = yield
    outcome.get_result()
    calllog.CALLS.append("old-wrapper-after")
    register(attack("old-wrapper-after"))
""",
    "f_raises.py": """
@hookimpl
def register_attacks(register):
    calllog.CALLS.append("raises")
    register(attack("half-done"))
    raise RuntimeError("boom in register_attacks")


@hookimpl
def register_defenses(register):
    register(defense("raiser-defense"))
""",
}


@pytest.fixture
def calllog(tmp_path, monkeypatch):
    """A module the plugin files append their calls to, in call order."""
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "calllog.py").write_text("CALLS = []\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "calllog", raising=False)
    yield
    sys.modules.pop("calllog", None)


def _folder(path, files: dict[str, str]):
    path.mkdir()
    for name, body in files.items():
        (path / name).write_text(textwrap.dedent(HEADER) + textwrap.dedent(body))
    return path


def _infos(host):
    return {i.name: i for i in host.infos}


def test_hooks_run_in_pluggys_order_with_wrappers_around(tmp_path, calllog):
    host = get_host((str(_folder(tmp_path / "plugs", ORDERED)),))
    calls = sys.modules["calllog"].CALLS
    assert sorted(calls) == sorted(["plain", "first", "last", "wrapper-before", "wrapper-after", "old-wrapper-before",
                                    "old-wrapper-after", "raises"])
    plain = [c for c in calls if "wrapper" not in c]
    assert plain.index("first") == 0 and plain.index("last") == len(plain) - 1  # tryfirst, trylast
    for wrapper in ("wrapper", "old-wrapper"):
        assert calls.index(f"{wrapper}-before") < min(calls.index(c) for c in plain)
        assert calls.index(f"{wrapper}-after") > max(calls.index(c) for c in plain)
    assert calls.index("old-wrapper-before") < calls.index("wrapper-before")  # registered later: the outer wrapper
    assert host.pm.hook.register_attacks.get_hookimpls()  # called through pluggy's hook caller


def test_every_registration_is_credited_to_its_plugin_wrappers_included(tmp_path, calllog):
    host = get_host((str(_folder(tmp_path / "plugs", ORDERED)),))
    expected = {"from-plain": "a_plain", "from-first": "b_first", "from-last": "c_last", "wrapper-before": "d_wrapper",
                "wrapper-after": "d_wrapper", "old-wrapper-after": "e_old_wrapper"}
    for name, plugin in expected.items():
        assert host.attacks.get(name).plugin == plugin
    infos = _infos(host)
    assert infos["d_wrapper"].provides == {"attack": ["wrapper-before", "wrapper-after"]}
    assert host.attacks.get("none").plugin == "uebench.attacks.baselines"  # built-ins too


def test_a_raising_hook_fails_its_plugin_alone_and_leaves_none_of_it(tmp_path, calllog):
    host = get_host((str(_folder(tmp_path / "plugs", ORDERED)),))
    info = _infos(host)["f_raises"]
    assert "RuntimeError: boom in register_attacks" in info.error and "f_raises.py" in info.error
    assert "None of the components of plugin 'f_raises' is registered" in info.error
    assert "half-done" not in host.attacks and "raiser-defense" not in host.defenses
    assert info.provides == {}
    assert not host.pm.has_plugin("f_raises")  # unregistered: no later hook call reaches it
    assert "from-last" in host.attacks  # the trylast implementation ran after the raising one
    assert all(i.error is None for name, i in _infos(host).items() if name != "f_raises")


CLASH = """
import click


@hookimpl
def register_attacks(register):
    register(attack("none"))  # the built-in's name
    register(attack("fine-attack"))


@hookimpl
def register_defenses(register):
    register(defense("fine-defense"))


@hookimpl
def register_commands(cli):
    @cli.command(name="fine-command")
    def fine():
        click.echo("never")
"""


@pytest.mark.faults
def test_a_name_clash_leaves_none_of_the_plugin_registered_and_says_so(invoke, tmp_path, calllog):
    folder = _folder(tmp_path / "plugs", {"clashing.py": CLASH})
    host = get_host((str(folder),))
    error = _infos(host)["clashing"].error
    assert "attack 'none' from clashing clashes with the one from uebench.attacks.baselines" in error
    assert "None of the components of plugin 'clashing' is registered" in error
    for offered in ("attack 'fine-attack'", "defense 'fine-defense'", "command 'fine-command'"):
        assert offered in error
    assert "fine-attack" not in host.attacks and "fine-defense" not in host.defenses
    assert "fine-command" not in host.commands
    assert host.attacks.get("none").plugin == "uebench.attacks.baselines"
    listed = {p["name"]: p for p in json_out(invoke("--plugins-dir", folder, "plugins", "--json"))}
    assert listed["clashing"]["provides"] == {} and listed["clashing"]["error"] == error
    result = invoke("--plugins-dir", folder, "fine-command")
    assert result.exit_code == 2 and "No such command" in result.output


@pytest.mark.faults
def test_of_two_plugins_with_one_name_the_first_loaded_keeps_it(tmp_path, calllog):
    files = {
        "a_one.py": "@hookimpl\ndef register_attacks(register):\n    register(attack('twin'))\n",
        "b_two.py": "@hookimpl\ndef register_attacks(register):\n    register(attack('twin'))\n    register(attack('solo'))\n",
    }
    host = get_host((str(_folder(tmp_path / "plugs", files)),))
    infos = _infos(host)
    assert infos["a_one"].error is None and host.attacks.get("twin").plugin == "a_one"
    assert "attack 'twin' from b_two clashes with the one from a_one" in infos["b_two"].error
    assert "solo" not in host.attacks


@pytest.mark.faults
@pytest.mark.parametrize("body, fragment", [
    ("    register(attack('dup'))\n    register(attack('dup'))\n", "two different attacks named 'dup'"),
    ("    register(attack('ok-one'))\n    register(defense('not-an-attack'))\n", "must subclass Attack"),
    ("    register(attack('ok-one'))\n    register(attack('Bad_Name'))\n", "kebab-case"),
], ids=["duplicate-in-one-plugin", "wrong-base", "bad-name"])
def test_one_bad_entry_leaves_none_of_the_plugin(tmp_path, calllog, body, fragment):
    files = {"bad.py": "@hookimpl\ndef register_attacks(register):\n" + body}
    host = get_host((str(_folder(tmp_path / "plugs", files)),))
    error = _infos(host)["bad"].error
    assert fragment in error and "None of the components of plugin 'bad' is registered" in error
    assert "ok-one" not in host.attacks and "dup" not in host.attacks


def test_the_same_class_twice_is_one_registration(tmp_path, calllog):
    files = {"twice.py": "@hookimpl\ndef register_attacks(register):\n    cls = attack('once')\n"
                         "    register(cls)\n    register(cls)\n"}
    host = get_host((str(_folder(tmp_path / "plugs", files)),))
    assert _infos(host)["twice"].error is None and _infos(host)["twice"].provides == {"attack": ["once"]}


@pytest.mark.faults
def test_a_wrapper_that_raises_before_its_yield_fails_alone(tmp_path, calllog):
    files = {
        "bad_wrap.py": "@hookimpl(wrapper=True)\ndef register_attacks(register):\n    register(attack('lost'))\n"
                       "    raise ValueError('wrapper broke')\n    yield\n",
        "good.py": "@hookimpl\ndef register_attacks(register):\n    register(attack('kept'))\n",
    }
    host = get_host((str(_folder(tmp_path / "plugs", files)),))
    assert "ValueError: wrapper broke" in _infos(host)["bad_wrap"].error
    assert "lost" not in host.attacks and host.attacks.get("kept").plugin == "good"


def test_register_outside_a_hook_call_is_refused(tmp_path, calllog):
    files = {"keeper.py": "KEPT = []\n@hookimpl\ndef register_attacks(register):\n    KEPT.append(register)\n"}
    get_host((str(_folder(tmp_path / "plugs", files)),))
    register = sys.modules["uebench_plugin_keeper"].KEPT[0]
    with pytest.raises(RuntimeError, match="outside a uebench hook call"):
        register(type("Late", (Attack,), {"name": "late"}))


def test_registry_check_changes_nothing_and_add_returns_the_entry():
    reg = Registry("attack", Attack)
    first = type("A", (Attack,), {"name": "a"})
    reg.check(first, plugin="one")
    assert len(reg) == 0
    entry = reg.add(first, plugin="one")
    assert (entry.name, entry.cls, entry.plugin) == ("a", first, "one")
    assert reg.add(first, plugin="two").plugin == "one"  # the same class again: the first plugin keeps it
    with pytest.raises(ValueError, match="clashes"):
        reg.check(type("A2", (Attack,), {"name": "a"}), plugin="two")
