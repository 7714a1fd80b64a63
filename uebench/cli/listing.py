"""``uebench attacks|defenses|victims|datasets list [PATTERN] [--json]``, ``uebench plugins``,
``uebench protocols list|indices``, ``uebench leaderboard build|migrate|show``."""

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


@protocols_group.command(name="indices")
@click.argument("protocol")
@click.option("--dataset", default="cifar10", show_default=True, help="Dataset name (see `uebench datasets list`).")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "test"]))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the indices here as an int64 .npy (for from-file's -o indices=FILE.npy).")
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False), help="Dataset root, an existing folder (else $UEBENCH_DATA, else ~/.cache/uebench).")
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
        raise click.BadParameter(f"{out!r} must end in .npy (from-file reads an indices file by that suffix)", param_hint="'--out'")
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

    _check_leaderboard_root(Path(root))
    for path in build(Path(root)):
        click.echo(f"wrote {path}")


def _check_leaderboard_root(root) -> None:
    """A root without any ``<protocol>/results.csv`` would build nothing and exit 0, so a
    ``uebench run --out`` folder (its ``results.csv`` at the top) passed as ROOT looks like
    success: say which layout is expected, and how to get a run's rows into it."""
    if any(root.glob("*/results.csv")):
        return
    expected = f"{str(root)!r} holds no <protocol>/results.csv: the layout is ROOT/<protocol>/results.csv (e.g. leaderboards/cpu/results.csv)"
    if (root / "results.csv").is_file():
        protocols = _protocols_in(root / "results.csv")
        named = f"; its rows' protocol: {', '.join(protocols)}" if protocols else ""
        where = protocols[0] if len(protocols) == 1 else "<protocol-name>"
        raise click.BadParameter(
            f"{expected}. It looks like a `uebench run --out` folder (results.csv directly inside{named}): its rows go into "
            f"ROOT/<protocol-name>/results.csv, so move or copy its results.csv into a folder named after the rows' protocol, "
            f"e.g. {str(root / where / 'results.csv')!r}, and build again", param_hint="'--root'")
    raise click.BadParameter(f"{expected}; there is nothing to build", param_hint="'--root'")


def _protocols_in(csv) -> list[str]:
    """The protocol names the rows of ``csv`` carry (empty when it cannot be read as a results file)."""
    import pandas as pd

    try:
        frame = pd.read_csv(csv, usecols=["protocol"], dtype=str)
    except (ValueError, OSError):  # pandas parse errors are ValueErrors
        return []
    return sorted(frame["protocol"].dropna().unique())


@leaderboard_group.command(name="migrate")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--assume-torch", default=None, metavar="VERSION",
              help="The torch release rows without a torch_version column ran under (e.g. 2.14.1, this project's pin).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Data root holding the dataset copy rows without a data_digest ran on (else $UEBENCH_DATA, the user cache).")
def leaderboard_migrate(results, assume_torch, data_dir):
    """Rewrite rows of RESULTS (CSV files) written by older uebench so their cell keys match the
    cells today's code plans (see uebench/migrate.py); no measured value changes.  Run it
    before resuming a sweep over older results, or the sweep runs those cells again."""
    from uebench.migrate import Sources, dataset_digests, migrate_file, revision_of, train_size_of

    def found(name, folder, digest):
        click.echo(f"data_digest of {name}: {digest} (the copy in {folder})")

    src = Sources(revision_of, train_size_of, dataset_digests(data_dir, found), assume_torch)
    for path in results:
        try:
            changed = migrate_file(path, src)
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
    from rich.markup import escape

    from uebench.leaderboard import GROUP, cell_text, current_version, grid, group_title, labelled

    csvs = sorted(Path(root).glob(f"{protocol or '*'}/results.csv"))
    records, tables = [], []
    for csv in csvs:
        frame = labelled(current_version(pd.read_csv(csv)))
        frame = frame[frame["dataset"] == dataset]
        for key, part in frame.groupby(GROUP, sort=True):
            defenses, rows = grid(part)
            # labels carry options in brackets (``jpeg [quality=20]``), which rich would take for markup
            table = Table(title=escape(f"protocol {csv.parent.name} · {group_title(key, quote='')}"))
            table.add_column("attack")
            for d in defenses:
                table.add_column(escape(str(d)), justify="right")
            for label, cells in rows:
                table.add_row(escape(str(label)), *(escape(cell_text(c)) for c in cells))
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


@leaderboard_group.command(name="compare")
@click.argument("dataset")
@click.argument("first")
@click.argument("second")
@click.option("--protocol", default="cpu", show_default=True, help="The board to read.")
@click.option("--root", default="leaderboards", show_default=True, type=click.Path(file_okay=False, exists=True))
@click.option("--victim", default=None, help="The table's victim (default: the only one with both cells).")
def leaderboard_compare(dataset, first, second, protocol, root, victim):
    """Whether two cells of a board differ by more than the spread between seeds.

    FIRST and SECOND are 'ATTACK LABEL / DEFENSE' as the table shows them, e.g.
    uebench leaderboard compare cifar10 'errmin-pgd form=sample / mixup' 'errmin-pgd form=sample / cutout'
    (fully poisoned tables only).  Prints both cells, the difference of their means with its 95%
    interval and Welch's p-value.
    """
    from pathlib import Path

    import pandas as pd

    from uebench.leaderboard import compare, current_version, labelled

    csv = Path(root) / protocol / "results.csv"
    if not csv.is_file():
        raise click.BadParameter(f"no {csv}", param_hint="--protocol/--root")
    frame = labelled(current_version(pd.read_csv(csv)))
    frame = frame[(frame["dataset"] == dataset) & (frame["poison_rate"] == 1.0) & (frame["poison_classes"] == "") & ~frame["drop_poisoned"]]
    if victim:
        frame = frame[frame["victim"] == victim]
    values = []
    for text in (first, second):
        label, slash, defense = text.rpartition("/")
        if not slash:
            raise click.BadParameter(f"{text!r}: write 'ATTACK LABEL / DEFENSE'", param_hint="FIRST/SECOND")
        cell = frame[(frame["attack_label"] == label.strip()) & (frame["defense"] == defense.strip())]
        if cell.empty:
            known = sorted({f"{a} / {d}" for a, d in zip(frame["attack_label"], frame["defense"], strict=True)})
            raise click.BadParameter(f"no cell {text!r} in {csv}; cells: {'; '.join(known[:12])}{' …' if len(known) > 12 else ''}",
                                     param_hint="FIRST/SECOND")
        if cell["victim"].nunique() > 1:
            raise click.BadParameter(f"{text!r} is in tables of several victims ({', '.join(sorted(cell['victim'].unique()))}): "
                                     f"give --victim", param_hint="--victim")
        values.append(100 * cell["final_test_acc"].astype(float))
        click.echo(f"{text.strip()}: {values[-1].mean():.2f} ± {values[-1].std(ddof=1):.2f}% (n={len(values[-1])}; seeds "
                   f"{', '.join(f'{v:.1f}' for v in values[-1])})")
    c = compare(*values)
    verdict = "exceeds the seed spread" if c["exceeds_spread"] else "does not exceed the seed spread"
    click.echo(f"difference {c['difference']:+.2f} points, 95% CI {c['ci_low']:+.2f} to {c['ci_high']:+.2f}, "
               f"Welch p = {c['p']:.3g}: {verdict}")


GROUPS.append(leaderboard_group)
