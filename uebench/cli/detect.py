"""``uebench detect``: is a training set poisoned?  Score a cell's released set (``--attack``) or
a dataset a user brings (``PATH``) with the registered detectors; one row per set and detector
in ``OUT/detections.csv``, a table on the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from uebench.cli.run import FractionType
from uebench.options import OptionError, parse_assignments


def split_detector_options(pairs, detector_names) -> tuple[list[tuple[str, str]], dict[str, dict]]:
    """``-o simple-networks.threshold=0.7`` goes to that detector; every other ``-o`` to the attack."""
    attack, detectors = [], {}
    for key, value in pairs:
        prefix, dot, name = key.partition(".")
        if dot and prefix in detector_names:
            detectors.setdefault(prefix, {})[name] = value
        else:
            attack.append((key, value))
    return attack, detectors


@click.command(short_help="Is this training set poisoned? Score a cell's released set or a dataset you bring.")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--attack", default=None, help="Score the released training set of this attack's cell (instead of PATH).")
@click.option("--detector", "detectors", multiple=True,
              help="Detector name (see `uebench detectors list`); repeatable; default: every registered detector.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Attack option, or a detector's as <detector>.KEY=VALUE (e.g. simple-networks.threshold=0.7).")
@click.option("--dataset", default="cifar10", show_default=True, help="The cell's dataset (with --attack).")
@click.option("--protocol", default=None, help="The cell's protocol (with --attack); default as for `uebench run`.")
@click.option("--seed", "seeds", multiple=True, type=int, default=(0,), show_default=True,
              help="The cell's seed (repeatable: one set per seed); also seeds the detectors' draws.")
@click.option("--eps", default="8/255", show_default=True, type=FractionType(), help="L∞ budget (with --attack).")
@click.option("--poison-rate", default="1", show_default=True, type=FractionType(), help="Fraction poisoned (with --attack).")
@click.option("--poison-classes", default="", metavar="NAMES", help="Poison only these classes (with --attack).")
@click.option("--clean", default=None, type=click.Path(path_type=Path),
              help="The clean originals of PATH, same order and format, for detectors that look at the perturbation.")
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False), help="Dataset root (with --attack).")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help="Noise cache (with --attack).")
@click.option("--out", default="uebench-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for detections.csv.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, ...")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="CPU threads (with --attack: default the protocol's).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON lines; no progress bars.")
@click.pass_context
def detect(ctx, path, attack, detectors, options, dataset, protocol, seeds, eps, poison_rate, poison_classes, clean, data_dir,
           cache_dir, out, device, threads, as_json):
    """Score a training set with poison detectors: a cell's released set, or a dataset you downloaded.

    \b
    Examples:
      uebench detect --attack errmin-pgd -o form=class --seed 0 --seed 1
      uebench detect ~/Downloads/suspect-cifar/          # a folder of class folders
      uebench detect suspect.npz --detector simple-networks
    """
    from uebench.detect import build_detectors
    from uebench.plugins import get_host

    if (path is None) == (attack is None):
        raise click.UsageError("give either PATH (a dataset you bring) or --attack (a cell's released set), not both"
                               if path is not None else "give PATH (a dataset to score) or --attack NAME (a cell's released set)")
    if clean is not None and path is None:
        raise click.UsageError("--clean goes with PATH; a cell already has its clean originals")
    host = get_host(ctx.find_root().obj["plugins_dirs"])
    for name in detectors:
        host.detectors.get(name)  # an unknown name fails before any work, with suggestions
    attack_pairs, detector_options = split_detector_options(parse_assignments(options), set(host.detectors.names()))
    chosen = build_detectors(host, tuple(detectors), detector_options)
    if path is not None:
        if attack_pairs:
            raise OptionError(f"option(s) {', '.join(k for k, _ in attack_pairs)} are attack options, which a dataset you bring "
                              "has none of; a detector's option is written <detector>.KEY=VALUE")
        rows = _detect_path(path, clean, chosen, Path(out), device, seeds[0], as_json)
    else:
        rows = _detect_cells(ctx, host, attack, attack_pairs, chosen, dataset, protocol, seeds, eps, poison_rate,
                             poison_classes, data_dir, cache_dir, Path(out), device, threads, as_json)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
    else:
        Console().print(verdict_table(rows))
        click.echo(f"rows in {Path(out) / 'detections.csv'}")


def _detect_path(path, clean, chosen, out, device, seed, as_json) -> list[dict]:
    import torch

    from uebench.compute import pick_device
    from uebench.detect import content_digest, detection_row, score, user_set_fields, write_rows
    from uebench.detectors.base import SuspectSet
    from uebench.detectors.suspect_files import read_suspect
    from uebench.progress import Reporter

    suspect, _ = read_suspect(path)
    if clean is not None:
        originals, _ = read_suspect(clean)
        if originals.x.shape != suspect.x.shape or not torch.equal(originals.y, suspect.y):
            raise OptionError(f"--clean {clean}: {tuple(originals.x.shape)} images whose labels do not match {path}'s "
                              f"{tuple(suspect.x.shape)}; the originals must be the same images in the same order")
        suspect = SuspectSet(suspect.x, suspect.y, suspect.num_classes, x_clean=originals.x, description=suspect.description)
    dev = pick_device(device)
    digest = content_digest(suspect.x, suspect.y)
    base = user_set_fields(path, suspect, digest, dev)
    with Reporter(quiet=as_json) as reporter:
        rows = [detection_row(base, s, len(suspect)) for s in score(suspect, chosen, seed, dev, reporter)]
    write_rows(out, rows)
    return rows


def _detect_cells(ctx, host, attack, attack_pairs, chosen, dataset, protocol, seeds, eps, poison_rate, poison_classes,
                  data_dir, cache_dir, out, device, threads, as_json) -> list[dict]:
    from uebench.cell import CellSpec, RunSettings, prepare
    from uebench.cli.routing import route_options
    from uebench.detect import cell_set_fields, cell_suspect, detect_key, detection_row, known_verdicts, score, write_rows
    from uebench.progress import Reporter
    from uebench.protocols import default_protocol_name, get_protocol

    chosen_protocol = get_protocol(protocol or default_protocol_name())
    a_opts, _, _ = route_options(attack_pairs, host, attack, ("none",), None, chosen_protocol)
    settings = RunSettings(data_dir=data_dir, out=out, cache_dir=Path(cache_dir) if cache_dir else None, device=device,
                           threads=threads, plugins_dirs=ctx.find_root().obj["plugins_dirs"])
    known, rows = known_verdicts(out), []
    with Reporter(quiet=as_json) as reporter:
        cells = [prepare(CellSpec(attack=attack, dataset=dataset, protocol=protocol, seed=seed, eps=eps, poison_rate=poison_rate,
                                  poison_classes=tuple(c for c in poison_classes.split(",") if c.strip()),
                                  attack_options=a_opts), settings, host, reporter) for seed in seeds]
        for cell in cells:
            base = cell_set_fields(cell)
            todo = [d for d in chosen if detect_key(base, d) not in known]
            done = [known[detect_key(base, d)] for d in chosen if d not in todo]
            for row in done:
                reporter.log(f"{cell.label.split('×')[0]} s{cell.spec.seed} × {row['detector']}: already in {out}, not rerun")
            rows += done
            if not todo:
                continue
            suspect, _ = cell_suspect(cell, reporter)
            scored = [detection_row(base, s, len(suspect)) for s in score(suspect, todo, cell.spec.seed, cell.device, reporter)]
            write_rows(out, scored)
            rows += scored
    return rows


def verdict_table(rows: list[dict]) -> Table:
    table = Table(title="poison detection")
    for col in ("set", "detector", "looked at", "score", "threshold", "verdict", "seconds"):
        table.add_column(col, justify="right" if col in ("score", "threshold", "seconds") else "left")
    for r in rows:
        what = r.get("path") or f"{r['attack']} {r['attack_options']} rate {r['poison_rate']} s{r['seed']}"
        flagged = str(r["flagged"]).lower() == "true"
        table.add_row(str(what), str(r["detector"]), str(r["inputs_seen"]), f"{float(r['score']):.3f}",
                      f"{float(r['threshold']):.3f}", "[red]poisoned[/]" if flagged else "[green]not flagged[/]",
                      f"{float(r['detect_seconds']):.1f}")
    return table
