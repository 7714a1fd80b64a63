"""Plugin-provided commands (the ``register_commands`` hook): listed in ``uebench --help`` under
"Plugin commands" with their plugin, runnable, never shadowing one of uebench's own commands,
and never left behind in the shared root group."""

from __future__ import annotations

import textwrap

import pytest

from conftest import json_out
from uebench import plugins
from uebench.cli import cli

COMMANDS = '''
import click

from uebench.api import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command(name="say-hello")
    @click.option("--name", default="world", help="Who to greet.")
    def say_hello(name):
        """Greet someone (test plugin)."""
        click.echo(f"hello {name}")

    @cli.group(name="noise-tools")
    def noise_tools():
        """Tools for noise files (test plugin)."""

    @noise_tools.command(name="count")
    def count():
        """Count nothing."""
        click.echo("0 files")

    hidden = click.Command("secret-tool", callback=lambda: click.echo("psst"), hidden=True)
    cli.add_command(hidden)
'''


@pytest.fixture
def plugdir(tmp_path):
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "greeter.py").write_text(textwrap.dedent(COMMANDS))
    return folder


def _help_sections(text: str) -> dict[str, str]:
    sections, current = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
            sections[current] = ""
        elif current:
            sections[current] += line + "\n"
    return sections


def test_plugin_commands_are_listed_in_help_with_their_plugin(invoke, plugdir):
    before = set(cli.commands)
    result = invoke("--plugins-dir", plugdir, "--help")
    assert result.exit_code == 0, result.output
    sections = _help_sections(result.stdout)
    assert "say-hello" in sections["Plugin commands"] and "[greeter]" in sections["Plugin commands"]
    assert "Greet someone" in sections["Plugin commands"] and "noise-tools" in sections["Plugin commands"]
    assert "secret-tool" not in result.stdout  # hidden commands stay hidden
    assert "say-hello" not in sections["Commands"] and "run" in sections["Commands"]
    assert set(cli.commands) == before  # nothing added to the root group every test shares


def test_plugin_commands_run_with_their_options_and_subcommands(invoke, plugdir):
    result = invoke("--plugins-dir", plugdir, "say-hello", "--name", "plugin")
    assert result.exit_code == 0 and result.stdout.strip() == "hello plugin"
    result = invoke("--plugins-dir", plugdir, "noise-tools", "count")
    assert result.exit_code == 0 and result.stdout.strip() == "0 files"
    assert invoke("--plugins-dir", plugdir, "secret-tool").stdout.strip() == "psst"
    assert "--name" in invoke("--plugins-dir", plugdir, "say-hello", "--help").stdout


def test_plugin_commands_are_credited_to_their_plugin(invoke, plugdir):
    infos = {i["name"]: i for i in json_out(invoke("--plugins-dir", plugdir, "plugins", "--json"))}
    assert infos["greeter"]["error"] is None
    assert infos["greeter"]["provides"] == {"command": ["say-hello", "noise-tools", "secret-tool"]}
    host = plugins.get_host((str(plugdir),))
    assert {name: e.plugin for name, e in host.commands.items()} == dict.fromkeys(
        ["say-hello", "noise-tools", "secret-tool"], "greeter")


def test_without_the_folder_the_commands_are_not_there(invoke, plugdir):
    assert "say-hello" not in invoke("--help").stdout
    result = invoke("say-hello")
    assert result.exit_code == 2 and "No such command" in result.output


def test_the_plugins_folder_from_the_environment_lists_its_commands(invoke, plugdir, monkeypatch):
    monkeypatch.setenv("UEBENCH_PLUGINS_DIR", str(plugdir))
    assert "say-hello" in _help_sections(invoke("--help").stdout)["Plugin commands"]


TAKES_RUN = '''
import click

from uebench.api import Attack, hookimpl


class Harmless(Attack):
    """A harmless attack (test plugin)."""

    name = "harmless"


@hookimpl
def register_attacks(register):
    register(Harmless)


@hookimpl
def register_commands(cli):
    @cli.command(name="run")
    def run():
        """Takes uebench's own command name."""
        click.echo("hijacked")
'''


@pytest.mark.faults
def test_a_command_named_like_a_builtin_one_fails_the_whole_plugin(invoke, tmp_path):
    (tmp_path / "hijack.py").write_text(textwrap.dedent(TAKES_RUN))
    infos = {i["name"]: i for i in json_out(invoke("--plugins-dir", tmp_path, "plugins", "--json"))}
    error = infos["hijack"]["error"]
    assert "command 'run' from hijack clashes with uebench's own command 'run'" in error
    assert "None of the components of plugin 'hijack' is registered" in error and "attack 'harmless'" in error
    assert infos["hijack"]["provides"] == {}
    names = {a["name"] for a in json_out(invoke("--plugins-dir", tmp_path, "attacks", "list", "--json"))}
    assert "harmless" not in names
    help_text = invoke("--plugins-dir", tmp_path, "run", "--help").stdout
    assert "Run one cell" in help_text and "hijacked" not in help_text
    assert "Plugin commands" not in invoke("--plugins-dir", tmp_path, "--help").stdout


@pytest.mark.faults
def test_a_command_another_plugin_has_fails_the_later_plugin(invoke, tmp_path, plugdir):
    (plugdir / "zz_second.py").write_text(textwrap.dedent(COMMANDS))
    host = plugins.get_host((str(plugdir),))
    infos = {i.name: i for i in host.infos}
    assert infos["greeter"].error is None
    assert "command 'say-hello' from zz_second clashes with the one from greeter" in infos["zz_second"].error
    assert host.commands["say-hello"].plugin == "greeter"


@pytest.mark.faults
@pytest.mark.parametrize("body, fragment", [
    ("    cli.add_command(click.Command('Bad_Name', callback=lambda: None))\n", "kebab-case"),
    ("    cli.add_command(print, 'not-a-command')\n", "must be a click.Command"),
], ids=["bad-name", "not-a-command"])
def test_a_bad_command_fails_its_plugin(invoke, tmp_path, body, fragment):
    (tmp_path / "bad.py").write_text("import click\nfrom uebench.api import hookimpl\n\n\n"
                                     "@hookimpl\ndef register_commands(cli):\n" + body)
    infos = {i["name"]: i for i in json_out(invoke("--plugins-dir", tmp_path, "plugins", "--json"))}
    assert fragment in infos["bad"]["error"]


def test_help_without_third_party_plugins_loads_no_plugin(invoke, monkeypatch):
    """Built-ins add no command, so with every installed plugin off ``--help`` never builds the
    plugin host (it imports every built-in plugin: seconds)."""
    monkeypatch.setenv("UEBENCH_LOAD_PLUGINS", "")

    def refuse(*args, **kwargs):
        raise AssertionError("--help built the plugin host")

    monkeypatch.setattr(plugins, "get_host", refuse)
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    assert "Plugin commands" not in result.stdout and "run" in _help_sections(result.stdout)["Commands"]


def test_help_with_a_missing_plugins_folder_is_a_clean_error(invoke, tmp_path):
    result = invoke("--plugins-dir", tmp_path / "nowhere", "--help")
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
