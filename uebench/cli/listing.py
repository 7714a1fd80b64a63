"""``uebench attacks|defenses|victims|datasets list [PATTERN] [--json]``, ``uebench plugins``,
``uebench protocols list|indices`` (the leaderboard commands are in ``uebench.cli.leaderboard``)."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from uebench.options import describe_options, display_value


def _entry_dict(entry) -> dict:
    return {
        "name": f"{entry.name}:<name>" if entry.takes_argument else entry.name,
        "summary": entry.summary,
        "plugin": entry.plugin,
        "options": describe_options(entry.cls.Options),
    }


# each kind's own example pattern for its ``list --help`` (one that matches built-in names)
EXAMPLE_PATTERNS = {"attack": "errmin*", "defense": "cut*", "victim": "resnet*", "dataset": "cifar*", "detector": "linear*"}


def _make_group(kind: str) -> click.Group:
    @click.group(name=f"{kind}s", help=f"Registered {kind}s: `uebench {kind}s list`.", short_help=f"List registered {kind}s.")
    def group():
        pass

    example = EXAMPLE_PATTERNS[kind]

    @group.command(
        name="list", short_help=f"List {kind}s, with their options and defaults.",
        help=f"List the {kind}s whose name matches PATTERN (an fnmatch pattern; default: all), naturally sorted, "
             f"with their options, defaults and plugin.\n\nExample: uebench {kind}s list '{example}'",
    )
    @click.argument("pattern", default="*")
    @click.option("--json", "as_json", is_flag=True,
                  help="Machine-readable output: name, summary, plugin, options (type, default, help, choices).")
    @click.pass_context
    def list_cmd(ctx, pattern, as_json):
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
            opts = ", ".join(f"{o['name']}={display_value(o['default'])}" for o in r["options"])
            table.add_row(r["name"], r["summary"], opts, r["plugin"])
        Console().print(table)

    return group


GROUPS = [_make_group(kind) for kind in ("attack", "defense", "victim", "dataset", "detector")]


@click.group(name="protocols", short_help="Named experiment scales: list them, or a subset's indices.")
def protocols_group():
    """Named experiment scales: a protocol fixes the data subset, the victim and the schedules,
    and rows compare only within one (`uebench protocols list`)."""


@protocols_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: every protocol's settings.")
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
        table.add_row(p["name"], str(p["version"]), p["description"], p["victim"], str(p["epochs"]),
                      str(p["train_per_class"] or "all"), per_dataset or "same for all")
    Console().print(table)


def _overrides(fields: dict) -> str:
    """A protocol's numbers for one dataset, e.g. ``epochs=100, M (Δs)=20, M (Δc)=20``."""
    names = {"craft_sample": "M (Δs)", "craft_class": "M (Δc)"}
    return ", ".join(f"{names.get(k, k)}={v['model_steps'] if k in names else v}" for k, v in fields.items())


@protocols_group.command(name="indices", short_help="Print or write the dataset indices of a protocol's subset.")
@click.argument("protocol")
@click.option("--dataset", default="cifar10", show_default=True, help="Dataset name (see `uebench datasets list`).")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "test"]),
              help="The split whose subset to print: the training images a cell crafts on, or its test images.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write the indices here as an int64 .npy (for from-file's -o indices=FILE.npy).")
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Dataset root, an existing folder (else $UEBENCH_DATA, else ~/.cache/uebench).")
@click.pass_context
def protocols_indices(ctx, protocol, dataset, split, out, data_dir):
    """The dataset indices of PROTOCOL's subset of one split, in the order a cell sees them.

    Noise made elsewhere for the `cpu` or `smoke` subset needs them: its rows go with these
    images, and `--out FILE.npy` writes what `uebench run --attack from-file -o indices=FILE.npy`
    reads.  The subset is drawn exactly as `uebench run` draws it (it depends on the protocol
    alone, not on the run's seed).

    Example: uebench protocols indices smoke --out smoke-train.npy
    """
    if out is not None and not out.lower().endswith(".npy"):
        raise click.BadParameter(f"{out!r} must end in .npy (from-file reads an indices file by that suffix)",
                                 param_hint="'--out'")
    indices, per_class, total = _subset_indices(ctx.find_root().obj["plugins_dirs"], protocol, dataset, split, data_dir)
    how = (f"stratified, {per_class} per class" if per_class is not None else "the whole split, in dataset order")
    click.echo(f"protocol {protocol!r}, {dataset} {split} split: {len(indices)} of {total} images ({how})")
    click.echo(f"indices: {_ends(indices)}")
    if out is not None:
        _save_indices(out, indices)
        click.echo(f"wrote {out} (int64, {len(indices)} entries); use it as: -o indices={out}")


def _subset_indices(plugins_dirs, protocol: str, dataset: str, split: str, data_dir):
    """(indices as int64 numpy, per-class count or None, split size), drawn as ``runner.load_cell``
    draws them; unknown names fail before any data is read."""
    from uebench.plugins import get_host
    from uebench.protocols import get_protocol, stratified_subset

    chosen = get_protocol(protocol).for_dataset(dataset)
    entry = get_host(plugins_dirs).datasets.get(dataset)
    data = entry.cls().load(data_dir)
    y = data.y_train if split == "train" else data.y_test
    per_class = chosen.train_per_class if split == "train" else chosen.test_per_class
    try:
        indices = stratified_subset(y, per_class, chosen.subset_seed)
    except ValueError as exc:  # a dataset too small for the protocol
        raise click.ClickException(f"protocol {protocol!r} on {dataset} {split}: {exc}") from None
    return indices.numpy().astype("int64"), per_class, len(y)


def _ends(indices, k: int = 5) -> str:
    """The first and last ``k`` indices (all of them when there are few)."""
    shown = [str(int(i)) for i in indices]
    return ", ".join(shown) if len(shown) <= 2 * k else f"{', '.join(shown[:k])}, …, {', '.join(shown[-k:])}"


def _save_indices(out: str, indices) -> None:
    """``indices`` as a plain .npy (no pickle), written whole or not at all."""
    import numpy as np

    from uebench.atomic import atomic_write

    atomic_write(out, lambda tmp: np.save(tmp, indices, allow_pickle=False), suffix=".npy")


GROUPS.append(protocols_group)


@click.command(short_help="Show loaded plugins and any that failed to load.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: one record per plugin.")
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
