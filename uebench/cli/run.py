"""``uebench run``: one cell — craft or load noise, poison, train under a defense, evaluate, record."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from uebench.compute import COMPILE_MODES, PRECISIONS
from uebench.options import OptionError, parse_assignments, parse_fraction


class FractionType(click.ParamType):
    """Accepts ``8/255``, ``0.031`` or ``1e-2``."""

    name = "number"

    def convert(self, value, param, ctx):
        try:
            return parse_fraction(value, param.name if param else "value")
        except OptionError as exc:
            self.fail(str(exc), param, ctx)


@click.command(short_help="Run one cell and append its row to OUT/results.csv.")
@click.option("--attack", default="errmin-pgd", show_default=True, help="Attack name (see `uebench attacks list`).")
@click.option("--defense", "defenses", multiple=True, default=("none",), show_default=True,
              help="Defense name (see `uebench defenses list`); repeat to compose, applied in the order given.")
@click.option("--victim", default=None, help="Victim name, or timm:<model>; default: the protocol's victim.")
@click.option("--dataset", default="cifar10", show_default=True, help="Dataset name (see `uebench datasets list`).")
@click.option("--protocol", default=None, help="A protocol of `uebench protocols list`; default: paper with CUDA, cpu without.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="The cell's seed: its noise, poison mask, victim weights, data order and augmentation draws "
                   "(uebench/seeds.py).")
@click.option("--eps", default="8/255", show_default=True, type=FractionType(), help="L∞ budget on the [0,1] pixel scale.")
@click.option("--poison-rate", default="1", show_default=True, type=FractionType(),
              help="Fraction of training samples poisoned, in [0, 1].")
@click.option("--poison-classes", default="", metavar="NAMES",
              help="Poison only these classes (comma-separated names or indices, e.g. bird,cat); "
                   "--poison-rate applies within them.")
@click.option("--drop-poisoned", is_flag=True,
              help="Train on the clean remainder alone: the poisoned samples are left out (Table 2's comparison).")
@click.option("--float-noise", is_flag=True,
              help="Train on x+δ in float instead of the released 8-bit images (quantized by default).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Attack/defense/victim option (repeatable); prefix attack./defense./victim. if ambiguous.")
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Dataset root, an existing folder (else $UEBENCH_DATA, else ~/.cache/uebench).")
@click.option("--out", default="uebench-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for results.csv and curves/.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Noise cache (else $UEBENCH_CACHE, else ~/.cache/uebench/noise).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(PRECISIONS),
              help="auto = the protocol's (fp32 for cpu, cpu-full, smoke), "
                   "else bf16 on GPUs and bf16-capable CPUs, fp32 elsewhere.")
@click.option("--compile", "compile_mode", default="none", show_default=True, type=click.Choice(COMPILE_MODES),
              help="torch.compile the victim (reduce-overhead: CUDA graphs on a GPU). "
                   "Compiling costs tens of seconds; not part of the cell's key.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="CPU threads the cell computes on; default: the protocol's (1), so the row reproduces bit for bit. "
                   "Part of the cell's key.")
@click.option("--board", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Committed results to compare the run with; default: leaderboards/<protocol>/results.csv "
                   "(cwd, else the checkout).")
@click.option("--json", "as_json", is_flag=True, help="Print the results row as JSON; no progress bars.")
@click.pass_context
def run(ctx, attack, defenses, victim, dataset, protocol, seed, eps, poison_rate, poison_classes, drop_poisoned, float_noise,
        options, data_dir, out, cache_dir, device, precision, compile_mode, threads, board, as_json):
    """Run one cell and append its row to OUT/results.csv.

    \b
    Example:
      uebench run --attack errmin-pgd -o form=class --defense jpeg --defense cutmix
    """
    from uebench.cell import prepare
    from uebench.plugins import get_host
    from uebench.progress import Reporter
    from uebench.record import record
    from uebench.runner import run_cell

    plugins_dirs = ctx.obj["plugins_dirs"]
    host = get_host(plugins_dirs)
    for info in host.failures:
        click.echo(f"warning: plugin {info.name!r} ({info.source}) failed to load: {info.error}", err=True)
    spec, settings = cell_request(ctx.params, host, plugins_dirs)
    with Reporter(quiet=as_json) as reporter:
        cell = prepare(spec, settings, host, reporter)
        row, history = run_cell(cell, reporter)
    record(Path(out), row, history)
    if as_json:
        click.echo(json.dumps(row, default=str))
    else:
        Console().print(summary_table(row))
        click.echo(f"row appended to {Path(out) / 'results.csv'}")
        print_board_comparison(row, Path(board) if board else None)


def cell_request(params: dict, host, plugins_dirs=()):
    """``uebench run``'s parsed parameters (click's ``ctx.params``) → the cell's (CellSpec,
    RunSettings): what the command asks for, before anything is checked against data.  Also how
    ``tests/test_run_command.py`` replays a leaderboard row's reproduce command."""
    from uebench.cell import CellSpec, RunSettings
    from uebench.cli.routing import route_options
    from uebench.protocols import default_protocol_name, get_protocol

    p = params
    chosen_protocol = get_protocol(p["protocol"] or default_protocol_name())
    a_opts, d_opts, v_opts = route_options(parse_assignments(p["options"]), host, p["attack"], p["defenses"], p["victim"],
                                           chosen_protocol)
    spec = CellSpec(
        attack=p["attack"], defenses=tuple(p["defenses"]), victim=p["victim"], dataset=p["dataset"], protocol=p["protocol"],
        seed=p["seed"], eps=p["eps"], poison_rate=p["poison_rate"],
        poison_classes=tuple(c for c in p["poison_classes"].split(",") if c.strip()), drop_poisoned=p["drop_poisoned"],
        quantize=not p["float_noise"], attack_options=a_opts, defense_options=d_opts, victim_options=v_opts,
    )
    cache_dir = p["cache_dir"]
    settings = RunSettings(data_dir=p["data_dir"], out=Path(p["out"]), cache_dir=Path(cache_dir) if cache_dir else None,
                           device=p["device"], precision=p["precision"], compile=p["compile_mode"], threads=p["threads"],
                           plugins_dirs=plugins_dirs)
    return spec, settings


def print_board_comparison(row: dict, board: Path | None) -> None:
    """The committed rows of the run's configuration and where the run falls among them
    (``board`` None: the committed board of the row's protocol, where there is one)."""
    from uebench.board_compare import compare_with_board, default_board  # pandas: only after a run

    board = board or default_board(row["protocol"])
    comparison = compare_with_board(row, board)
    if comparison is None:
        return
    for line in comparison.lines(row):
        click.echo(line)
    click.echo(f"(committed rows: {board})")


def budget_text(row: dict) -> str:
    """The noise's budget as a reader says it: ``0.03137 (8.0/255)``, ``L0, 1 pixel(s) per image``,
    ``L2 ≤ 1 per image``, ``a transform of each image (no Lp budget)``."""
    norm = str(row["norm"])
    if norm.startswith("l0:"):
        return f"L0, {norm[3:]} pixel(s) per image, max |δ| {float(row['l0_max_delta']):.3f}"
    if norm.startswith("l2:"):
        return f"L2 ≤ {norm[3:]} per image (--eps not used)"
    if norm == "transform":
        return "a transform of each image (no Lp budget; --eps not used)"
    return f"L∞ {row['eps']:.5f} ({row['eps'] * 255:.1f}/255)"


def summary_table(row: dict) -> Table:
    table = Table(title=f"uebench cell {row['run_id']}", show_header=True)
    table.add_column("field")
    table.add_column("value", overflow="fold")  # long option lists wrap instead of being cut
    shown = [
        ("protocol", f"{row['protocol']} v{row['protocol_version']}"),
        ("dataset", row["dataset"]),
        ("attack", f"{row['attack']} {row['attack_options']}"),
        ("budget / poison rate", budget_text(row) + f" / {row['poison_rate']:g}"
         + (f" of classes {row['poison_classes']}" if row["poison_classes"] else "")
         + (" — poisoned samples dropped, trained on the clean rest" if row["drop_poisoned"] else "")
         + ("" if row["quantized"] else " (float noise, not quantized)")),
        ("defense", f"{row['defense']} {row['defense_options']}"),
        ("victim", row["victim"]),
        ("clean test acc (final)", f"[bold]{row['final_test_acc'] * 100:.2f}%[/]"
         + (f" (weights of epoch {row['selected_epoch']})" if row["selected_epoch"] != row["epochs"] else "")),
        ("oracle: best test acc (epoch)", f"{row['oracle_best_test_acc'] * 100:.2f}% (epoch {row['oracle_best_epoch']}; "
                                          "picked on the test set, not a defense)"),
        ("train acc (final)", f"{row['final_train_acc'] * 100:.2f}%"),
        ("crafting", f"{row['craft_seconds']:.1f}s" + (" (cached)" if row["noise_cached"] else "")
         + (f", stopped by {row['craft_stop_reason']} after {row['craft_iterations']} iterations, "
            f"error {row['craft_final_error']:.4f}" if row["craft_stop_reason"] else "")),
        ("training", f"{row['train_seconds']:.1f}s on {row['device']} ({row['precision']}, torch {row['torch_version']})"),
        ("data", f"digest {row['data_digest']} · config {row['config_key']} · cell {row['cell_key']}"),
    ]
    for name, value in shown:
        table.add_row(name, str(value))
    return table
