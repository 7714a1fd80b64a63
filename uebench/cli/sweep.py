"""``uebench sweep MATRIX.toml``: every cell of a benchmark matrix, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from uebench.compute import COMPILE_MODES, PRECISIONS


@click.command(short_help="Run the cells of a matrix that OUT lacks; resumable.")
@click.argument("matrix", type=click.Path(dir_okay=False))
@click.option("--out", default="uebench-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for results.csv and curves/.")
@click.option("--dry-run", is_flag=True, help="List the cells (done or to do) and the noises still to craft; run nothing.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1, 64),
              help="local: cells at a time, in worker processes, each on its protocol's pinned CPU threads (1): "
                   "--jobs 2 fills 2 cores.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]), help="Where cells run.")
@click.option("--address", default=None, help="ray: the cluster (auto, ray://host:10001, host:6379); default: a local Ray.")
@click.option("--cpus-per-cell", default=1.0, show_default=True, type=float,
              help="ray: CPUs a cell's task asks for (its torch threads are the protocol's, or --threads).")
@click.option("--gpus-per-cell", default=None, type=float,
              help="ray: GPUs a cell's task asks for (default: 1 where the cluster has GPUs, else 0; "
                   "0.5 puts two cells on a GPU).")
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Dataset root, an existing folder (else $UEBENCH_DATA, else ~/.cache/uebench).")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Noise cache (else $UEBENCH_CACHE, else ~/.cache/uebench/noise).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(PRECISIONS),
              help="auto = the protocol's (fp32 for cpu, cpu-full, smoke), "
                   "else bf16 on GPUs and bf16-capable CPUs, fp32 elsewhere.")
@click.option("--compile", "compile_mode", default="none", show_default=True, type=click.Choice(COMPILE_MODES),
              help="torch.compile every cell's victim (reduce-overhead: CUDA graphs on a GPU); not part of a cell's key.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="CPU threads each cell computes on; default: the protocol's (1). Part of every cell's key.")
@click.option("--detect-only", is_flag=True,
              help="Only score the released sets with the matrix's detectors (OUT/detections.csv); train nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="With --dry-run: the plan as JSON; else the new rows as JSON lines, no bars.")
@click.pass_context
def sweep(ctx, matrix, out, dry_run, jobs, executor, address, cpus_per_cell, gpus_per_cell, data_dir, cache_dir, device,
          precision, compile_mode, threads, detect_only, as_json):
    """Run every cell of MATRIX (a TOML file; see uebench/sweep/matrix.py for the format) that
    OUT/results.csv does not hold yet.  A killed sweep loses at most the cells in flight:
    rerun the same command and it does the rest.  A matrix with ``detectors = [...]`` also
    scores every distinct released set with them, after the cells (OUT/detections.csv).

    \b
    Example:
      uebench sweep leaderboards/cpu/matrix.toml --out leaderboards/cpu --dry-run
    """
    from uebench.progress import Reporter
    from uebench.sweep.local import run_local
    from uebench.sweep.plan import plan_sweep

    if executor == "ray" and not dry_run:
        from uebench.sweep.ray_executor import check_reachable

        check_reachable(address)  # seconds, before planning; ray.init would retry for minutes
    settings = {"data_dir": data_dir, "cache_dir": Path(cache_dir) if cache_dir else None, "device": device,
                "precision": precision, "compile": compile_mode, "threads": threads, "plugins_dirs": ctx.obj["plugins_dirs"]}
    from uebench.sweep.detection import plan_detection, run_detection

    plan = plan_sweep(Path(matrix), Path(out), **settings)
    detection = plan_detection(Path(matrix), plan)
    if detect_only and detection is None:
        raise click.UsageError(f"--detect-only: {matrix} names no detectors (add detectors = [\"simple-networks\", ...])")
    if detect_only:
        plan.done |= {key for key, _ in plan.cells}  # nothing to train
    if dry_run:
        cells = [_describe(key, cell, key in plan.done, settings) for key, cell in plan.cells]
        if as_json:
            click.echo(json.dumps(cells, indent=2))
        else:
            Console().print(_table(cells, plan.protocol))
            crafts = sorted({c["noise"] for c in cells if not c["done"] and c["noise"] and not c["noise_cached"]})
            click.echo(f"{len(plan.todo)} of {len(plan.cells)} cells to run; {len(crafts)} noise(s) to craft"
                       + (": " + ", ".join(crafts) if crafts else ""))
            if plan.todo:
                click.echo(f"time for the cells to do: {_estimate(cells, Path(out)).describe()}")
            if detection is not None:
                click.echo(f"detection: {len(detection.todo)} released set(s) to score, {detection.done} verdict(s) already "
                           f"in {Path(out) / 'detections.csv'}")
        return
    with Reporter(quiet=as_json) as reporter:
        if executor == "ray":
            from uebench.sweep.ray_executor import run_ray

            outcome = run_ray(plan, reporter, address, cpus_per_cell, gpus_per_cell)
        else:
            outcome = run_local(plan, reporter, jobs)
        if detection is not None and detection.todo:
            detected, detect_failed = run_detection(detection, Path(out), reporter)
            outcome.failed += detect_failed
        else:
            detected = []
    if as_json:
        for row in outcome.rows + detected:
            click.echo(json.dumps(row, default=str))
    else:
        if not detect_only:
            click.echo(f"{len(outcome.rows)} cell(s) run, {len(plan.done)} already done; rows in {Path(out) / 'results.csv'}")
        if detection is not None:
            click.echo(f"{len(detected)} detection verdict(s) written, {detection.done} already there; "
                       f"rows in {Path(out) / 'detections.csv'}")
    if outcome.failed:
        listing = "\n".join(f"  - {label}: {why}" for label, why in outcome.failed)
        raise click.ClickException(f"{len(outcome.failed)} cell(s) failed and have no row; "
                                   f"rerun the sweep to retry them:\n{listing}")


def _estimate(cells: list[dict], out: Path):
    from uebench.sweep.estimate import estimate

    todo = [(c["config_key"], c["noise"] if c["noise"] and not c["noise_cached"] else None) for c in cells if not c["done"]]
    return estimate(todo, out / "results.csv")


def _describe(key, cell, done: bool, settings: dict) -> dict:
    """One cell of the plan: what it is, whether it is done, which noise it needs (named by the
    cell's noise request: nothing is loaded)."""
    from uebench.cellkey import config_key
    from uebench.craft.cache import NoiseCache
    from uebench.craft.identity import identity_options
    from uebench.record import planned_row
    from uebench.sweep.plan import noise_group

    noise, cached = "", False
    if not done and noise_group(cell) is not None:
        noise = cell.noise.key
        cached = NoiseCache(settings["cache_dir"]).path(noise).exists()
    return {"cell_key": key, "config_key": config_key(planned_row(cell)), "done": done, "attack": cell.attack.name,
            "attack_options": identity_options(cell.attack, cell.resolved),
            "defense": cell.defense_name, "victim": cell.victim_name, "dataset": cell.dataset.name, "seed": cell.spec.seed,
            "noise": noise, "noise_cached": cached}


def _table(cells: list[dict], protocol: str) -> Table:
    table = Table(title=f"sweep plan — protocol {protocol}")
    for column in ("#", "attack", "defense", "victim", "seed", "status", "noise"):
        table.add_column(column)
    for i, c in enumerate(cells, 1):
        options = " ".join(f"{k}={v}" for k, v in c["attack_options"].items() if k in ("form", "patch"))
        status = "[green]done[/]" if c["done"] else "to do"
        noise = "" if not c["noise"] else (f"{c['noise']} (cached)" if c["noise_cached"] else f"{c['noise']} (to craft)")
        table.add_row(str(i), f"{c['attack']} {options}".strip(), c["defense"], c["victim"], str(c["seed"]), status, noise)
    return table
