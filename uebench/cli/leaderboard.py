"""``uebench leaderboard build|migrate|show|compare``: the generated boards, read from
``leaderboards/<protocol>/results.csv`` (the tables and statistics live in ``uebench.leaderboard``)."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table


@click.group(name="leaderboard", short_help="Build, show, compare and migrate the leaderboards.")
def leaderboard_group():
    """Generated leaderboards: markdown tables and plots built from the results CSVs under
    ROOT/<protocol>/results.csv (default ROOT: leaderboards)."""


ROOT_HELP = "Folder holding one <protocol>/results.csv per protocol."


@leaderboard_group.command(name="build", short_help="Regenerate every board's markdown and plots.")
@click.option("--root", default="leaderboards", show_default=True, type=click.Path(file_okay=False, exists=True), help=ROOT_HELP)
def leaderboard_build(root):
    """Regenerate ROOT/<protocol>.md, with the figures it embeds (ROOT/<protocol>/accuracy.svg,
    curves.svg, poison-rate.svg, per-class.svg: those the rows can answer), from every
    ROOT/<protocol>/results.csv."""
    from pathlib import Path

    from uebench.leaderboard import build

    _check_leaderboard_root(Path(root))
    for path in build(Path(root)):
        click.echo(f"wrote {path}")


@leaderboard_group.command(name="site", short_help="Build the static leaderboard website.")
@click.option("--root", default="leaderboards", show_default=True, type=click.Path(file_okay=False, exists=True), help=ROOT_HELP)
@click.option("--out", required=True, type=click.Path(),
              help="Folder for the site: new, empty, or an earlier site (replaced whole).")
def leaderboard_site(root, out):
    """Write the leaderboards as a static website into OUT: one page per protocol × dataset ×
    victim with sortable, filterable attack × defense tables; a page per cell with its seeds,
    curves and the command that reproduces each; the gallery of poisons; the published numbers
    beside the measured ones.  No server and nothing from the network: open OUT/index.html.

    \b
    Example:
      uebench leaderboard site --out site && xdg-open site/index.html
    """
    from pathlib import Path

    from uebench.site import SiteError, build_site

    _check_leaderboard_root(Path(root))
    try:
        pages = build_site(Path(root), Path(out))
    except SiteError as exc:
        raise click.BadParameter(str(exc), param_hint="'--out'") from None
    click.echo(f"wrote {len(pages)} pages to {out}; open {Path(out) / 'index.html'}")


@leaderboard_group.command(name="gallery", short_help="Draw every attack of a board on the same ten images, as PNGs.")
@click.option("--root", default="leaderboards", show_default=True, type=click.Path(file_okay=False, exists=True), help=ROOT_HELP)
@click.option("--protocol", default="cpu", show_default=True,
              help="The board whose attacks to draw (ROOT/<protocol>/results.csv).")
@click.option("--attack", "pattern", default=None, metavar="PATTERN",
              help="Only the attack labels (or attack names) this fnmatch pattern matches, e.g. 'errmin*'; the others "
                   "keep their entries.")
@click.option("--cached-only", is_flag=True,
              help="Craft nothing the noise cache would store: an attack not in it is listed as not crafted, with the "
                   "command that crafts it (model-free attacks are made again: seconds).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Dataset root (else $UEBENCH_DATA, else ~/.cache/uebench).")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Noise cache (else $UEBENCH_CACHE, else ~/.cache/uebench/noise).")
@click.pass_context
def leaderboard_gallery(ctx, root, protocol, pattern, cached_only, data_dir, cache_dir):
    """Write ROOT/gallery/<protocol>/<dataset>/: for every attack of the board's main table (one
    per attack label, fully poisoned rows of the protocol's current version, seed 0) the released
    image and its amplified noise for the same training images — the first of each class — as
    32×32 PNGs (<slug>/poisoned-<k>.png, <slug>/delta-<k>.png; clean/<k>.png once), and
    gallery.json: per attack its options, form, norm, noise key, the images' indices, PSNR, and
    the `uebench noise show` command that draws it; an attack that could not be drawn is listed
    with why and the command that crafts it.  Noise is crafted through the noise cache (without
    --cached-only every attack not cached is crafted: minutes to hours each); a rerun on the same
    cache writes the same bytes.

    \b
    Example:
      uebench leaderboard gallery --protocol cpu --cached-only
    """
    from pathlib import Path

    from uebench.gallery_board import GalleryInputError, build_gallery
    from uebench.progress import Reporter

    if not (Path(root) / protocol / "results.csv").is_file():
        raise click.BadParameter(f"no {Path(root) / protocol / 'results.csv'}: a board is ROOT/<protocol>/results.csv",
                                 param_hint="'--root' / '--protocol'")
    try:
        with Reporter() as reporter:
            written = build_gallery(Path(root), protocol, pattern, cached_only, data_dir, Path(cache_dir) if cache_dir else None,
                                    ctx.find_root().obj["plugins_dirs"], reporter)
    except GalleryInputError as exc:
        raise click.BadParameter(str(exc), param_hint="'--attack'" if pattern else "'--protocol'") from None
    for path in written:
        entries = json.loads(path.read_text())["attacks"]
        shown = sum(1 for e in entries.values() if e["status"] == "shown")
        click.echo(f"wrote {path}: {shown} of {len(entries)} attacks shown"
                   + (f"; not shown: {', '.join(sorted(k for k, e in entries.items() if e['status'] != 'shown'))}"
                      if shown < len(entries) else ""))


def _check_leaderboard_root(root) -> None:
    """A root without any ``<protocol>/results.csv`` would build nothing and exit 0, so a
    ``uebench run --out`` folder (its ``results.csv`` at the top) passed as ROOT looks like
    success: say which layout is expected, and how to get a run's rows into it."""
    if any(root.glob("*/results.csv")):
        return
    expected = (f"{str(root)!r} holds no <protocol>/results.csv: the layout is ROOT/<protocol>/results.csv "
                "(e.g. leaderboards/cpu/results.csv)")
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


@leaderboard_group.command(name="migrate", short_help="Bring rows written by an older uebench up to today's cell keys.")
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


@leaderboard_group.command(name="imperceptibility", short_help="Fill the PSNR/SSIM/Lp columns of rows written before them.")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="The noise cache the rows' noise was stored in (default: $UEBENCH_CACHE, ~/.cache/uebench/noise).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Data root holding the datasets the rows ran on (else $UEBENCH_DATA, the user cache).")
@click.option("--dry-run", is_flag=True, help="Measure and report, write nothing.")
def leaderboard_imperceptibility(results, cache_dir, data_dir, dry_run):
    """Fill the imperceptibility columns (psnr_mean … imperceptibility_note; see
    uebench/imperceptibility.py) of every row of RESULTS (results CSVs, or folders holding a
    results.csv) that lacks them: its released set rebuilt from the noise cache (by the row's
    noise_key) or, for an uncached model-free attack, by crafting it again; a row whose noise
    cannot be had gets empty values and a note saying why.  Rows are rewritten under the results
    lock, so a sweep may append meanwhile."""
    from pathlib import Path

    from uebench.imperceptibility import Backfill, backfill_file

    backfill = Backfill(cache_dir, data_dir, log=click.echo)
    for given in results:
        path = Path(given) / "results.csv" if Path(given).is_dir() else Path(given)
        if not path.is_file():
            raise click.BadParameter(f"{given!r} holds no results.csv", param_hint="RESULTS")
        counts = backfill_file(path, backfill, dry_run=dry_run)
        suffix = " — dry run, nothing written" if dry_run else ""
        click.echo(f"{path}: {counts['measured']} row(s) measured, {counts['clean']} clean, "
                   f"{counts['unavailable']} unavailable (their note says why){suffix}")


@leaderboard_group.command(name="show", short_help="Print a dataset's leaderboards in the terminal.")
@click.argument("dataset")
@click.option("--protocol", default=None, help="Only this protocol (default: every protocol with rows for DATASET).")
@click.option("--root", default="leaderboards", show_default=True, type=click.Path(file_okay=False, exists=True), help=ROOT_HELP)
@click.option("--json", "as_json", is_flag=True,
              help="One record per table cell: mean, sd and n of final clean test accuracy (%).")
def leaderboard_show(dataset, protocol, root, as_json):
    """Print DATASET's leaderboard(s) in the terminal: attacks × defenses, newest protocol version."""
    from pathlib import Path

    import pandas as pd
    from rich.markup import escape

    from uebench.leaderboard import cell_text, grid
    from uebench.stats import GROUP, current_version, group_title, labelled

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


@leaderboard_group.command(name="compare", short_help="Whether two cells differ by more than the seed spread.")
@click.argument("dataset")
@click.argument("first")
@click.argument("second")
@click.option("--protocol", default="cpu", show_default=True, help="The board to read.")
@click.option("--root", default="leaderboards", show_default=True, type=click.Path(file_okay=False, exists=True), help=ROOT_HELP)
@click.option("--victim", default=None, help="The table's victim (default: the only one with both cells).")
def leaderboard_compare(dataset, first, second, protocol, root, victim):
    """Whether two cells of a board differ by more than the spread between seeds.

    FIRST and SECOND are 'ATTACK LABEL / DEFENSE' as the table shows them (fully poisoned tables
    only).  Prints both cells, the difference of their means with its 95% interval and Welch's
    p-value.

    \b
    Example:
      uebench leaderboard compare cifar10 'errmin-pgd form=sample / mixup' 'errmin-pgd form=sample / cutout'
    """
    from pathlib import Path

    import pandas as pd

    from uebench.stats import compare, current_version, labelled

    csv = Path(root) / protocol / "results.csv"
    if not csv.is_file():
        raise click.BadParameter(f"no {csv}", param_hint="--protocol/--root")
    frame = labelled(current_version(pd.read_csv(csv)))
    frame = frame[(frame["dataset"] == dataset) & (frame["poison_rate"] == 1.0) & (frame["poison_classes"] == "")
                  & ~frame["drop_poisoned"]]
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
            raise click.BadParameter(f"no cell {text!r} in {csv}; "
                                     f"cells: {'; '.join(known[:12])}{' …' if len(known) > 12 else ''}",
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
