"""``uebench attacks|defenses|victims|datasets list [PATTERN] [--json]``, ``uebench plugins``,
``uebench protocols list``."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from uebench.options import describe_options


def _entry_dict(entry) -> dict:
    return {
        "name": f"{entry.name}:<name>" if entry.takes_argument else entry.name,
        "summary": entry.summary,
        "plugin": entry.plugin,
        "options": describe_options(entry.cls.Options),
    }


def _make_group(kind: str) -> click.Group:
    @click.group(name=f"{kind}s", help=f"Registered {kind}s.")
    def group():
        pass

    @group.command(name="list")
    @click.argument("pattern", default="*")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.pass_context
    def list_cmd(ctx, pattern, as_json):
        """List names matching PATTERN (fnmatch, e.g. 'errmin*'), naturally sorted."""
        from uebench.plugins import get_host

        host = get_host(ctx.find_root().obj["plugins_dirs"])
        rows = [_entry_dict(e) for e in host.registries[kind].list(pattern)]
        if as_json:
            click.echo(json.dumps(rows, indent=2, default=str))
            return
        table = Table(title=f"{kind}s matching {pattern!r}")
        for col in ("name", "summary", "options", "plugin"):
            table.add_column(col)
        for r in rows:
            opts = ", ".join(f"{o['name']}={o['default']!r}" for o in r["options"])
            table.add_row(r["name"], r["summary"], opts, r["plugin"])
        Console().print(table)

    list_cmd.__doc__ = f"List {kind}s whose name matches PATTERN (fnmatch), naturally sorted."
    return group


GROUPS = [_make_group(kind) for kind in ("attack", "defense", "victim", "dataset")]


@click.group(name="protocols")
def protocols_group():
    """Named experiment scales (smoke, cpu, paper)."""


@protocols_group.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def protocols_list(as_json):
    """Show every protocol and its settings."""
    from uebench.protocols import PROTOCOLS

    rows = [p.as_dict() for p in PROTOCOLS.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="protocols")
    for col in ("name", "version", "description", "victim", "epochs", "train/class"):
        table.add_column(col)
    for p in rows:
        table.add_row(p["name"], str(p["version"]), p["description"], p["victim"], str(p["epochs"]), str(p["train_per_class"] or "all"))
    Console().print(table)


GROUPS.append(protocols_group)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plugins(ctx, as_json):
    """Show loaded plugins: name, source, version, what they provide, and load errors."""
    from uebench.plugins import get_host

    host = get_host(ctx.find_root().obj["plugins_dirs"])
    rows = [i.as_dict() for i in host.infos]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="uebench plugins")
    for col in ("name", "source", "version", "provides", "status"):
        table.add_column(col)
    for r in rows:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in r["provides"].items())
        status = f"[red]failed: {r['error']}[/]" if r["error"] else "ok"
        table.add_row(r["name"], r["source"], r["version"] or "", provides, status)
    Console().print(table)


@click.group(name="leaderboard")
def leaderboard_group():
    """Generated leaderboards (markdown and plots from results CSVs)."""


@leaderboard_group.command(name="build")
@click.option("--root", default="leaderboards", show_default=True, type=click.Path(file_okay=False, exists=True))
def leaderboard_build(root):
    """Regenerate ROOT/<protocol>.md, with its plots ROOT/<protocol>/accuracy.svg and
    curves.svg, from every ROOT/<protocol>/results.csv."""
    from pathlib import Path

    from uebench.leaderboard import build

    for path in build(Path(root)):
        click.echo(f"wrote {path}")


GROUPS.append(leaderboard_group)
