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
        if not rows:  # an empty table says nothing; say what there is instead
            known = host.registries[kind].names()
            raise click.ClickException(f"no {kind} matches {pattern!r}; the {len(known)} registered: {', '.join(known)}")
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
    """Named experiment scales (`uebench protocols list`)."""


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
    for col in ("name", "version", "description", "victim", "epochs", "train/class", "per dataset"):
        table.add_column(col)
    for p in rows:
        per_dataset = "; ".join(f"{name}: {_overrides(fields)}" for name, fields in p["per_dataset"].items())
        table.add_row(p["name"], str(p["version"]), p["description"], p["victim"], str(p["epochs"]), str(p["train_per_class"] or "all"),
                      per_dataset or "same for all")
    Console().print(table)


def _overrides(fields: dict) -> str:
    """A protocol's numbers for one dataset, e.g. ``epochs=100, M (Δs)=20, M (Δc)=20``."""
    names = {"craft_sample": "M (Δs)", "craft_class": "M (Δc)"}
    return ", ".join(f"{names.get(k, k)}={v['model_steps'] if k in names else v}" for k, v in fields.items())


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


@leaderboard_group.command(name="migrate")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def leaderboard_migrate(results):
    """Rewrite rows of RESULTS (CSV files) written by older uebench so their cell keys match the
    cells today's code plans (see uebench/migrate.py); no measured value changes.  Run it
    before resuming a sweep over older results, or the sweep runs those cells again."""
    from uebench.migrate import migrate_file

    for path in results:
        try:
            changed = migrate_file(path)
        except ValueError as exc:
            raise click.ClickException(f"{path}: {exc}") from exc
        click.echo(f"{path}: {changed} row(s) migrated")


@leaderboard_group.command(name="show")
@click.argument("dataset")
@click.option("--protocol", default=None, help="Only this protocol (default: every protocol with rows for DATASET).")
@click.option("--root", default="leaderboards", show_default=True, type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="One record per table cell: mean, sd and n of final clean test accuracy (%).")
def leaderboard_show(dataset, protocol, root, as_json):
    """Print DATASET's leaderboard(s) in the terminal: attacks × defenses, newest protocol version."""
    from pathlib import Path

    import pandas as pd

    from uebench.leaderboard import GROUP, cell_text, current_version, grid, group_title, labelled

    csvs = sorted(Path(root).glob(f"{protocol or '*'}/results.csv"))
    records, tables = [], []
    for csv in csvs:
        frame = labelled(current_version(pd.read_csv(csv)))
        frame = frame[frame["dataset"] == dataset]
        for key, part in frame.groupby(GROUP, sort=True):
            defenses, rows = grid(part)
            table = Table(title=f"protocol {csv.parent.name} · {group_title(key, quote='')}")
            table.add_column("attack")
            for d in defenses:
                table.add_column(d, justify="right")
            for label, cells in rows:
                table.add_row(label, *(cell_text(c) for c in cells))
                records += [{"protocol": csv.parent.name, **dict(zip(GROUP, key, strict=True)), "attack": label, "defense": d,
                             "mean": round(float(c["mean"]), 4), "sd": None if pd.isna(c["sd"]) else round(float(c["sd"]), 4),
                             "n": int(c["n"])} for d, c in zip(defenses, cells, strict=True) if c is not None]
            tables.append(table)
    if not tables:
        where = f"{root}/{protocol or '*'}/results.csv"
        raise click.ClickException(f"no rows for dataset {dataset!r} in {where} ({len(csvs)} results file(s) found)")
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
        return
    console = Console()
    for table in tables:
        console.print(table)


GROUPS.append(leaderboard_group)
