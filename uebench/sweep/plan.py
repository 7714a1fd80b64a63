"""Plan a sweep: prepare every cell of a matrix (every error before any work), key it, and
find which keys the results already hold — a rerun does only what is missing."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from uebench.cell import Cell, CellSpec, RunSettings, prepare
from uebench.cellkey import cell_key
from uebench.failures import CellFailure
from uebench.options import OptionError
from uebench.record import planned_row, record
from uebench.registry import UnknownNameError
from uebench.sweep.matrix import MatrixError, PlannedCell, read_matrix


@dataclass
class SweepPlan:
    protocol: str
    out: Path
    settings: RunSettings = field(default_factory=RunSettings)  # every cell's (``out`` included)
    cells: list[tuple[str, Cell]] = field(default_factory=list)  # (cell key, cell), matrix order, unique
    done: set[str] = field(default_factory=set)

    @property
    def todo(self) -> list[tuple[str, Cell]]:
        return [(key, cell) for key, cell in self.cells if key not in self.done]


@dataclass
class SweepOutcome:
    """What a sweep run did: the rows it wrote, and the cells that failed (label, why) — those
    have no row, so the next run of the sweep retries them."""

    rows: list[dict] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, cell: Cell, exc: BaseException, reporter, bar) -> None:
        """``cell`` failed: noted, logged, counted on the sweep's bar; no row is written."""
        self.failed.append((cell.label, str(exc)))
        reporter.log(f"[red]cell {cell.label} failed:[/] {exc}")
        bar.update(1)

    def finished(self, out: Path, row: dict, history: list[dict], bar) -> None:
        """A cell's row and curve came back: the driver alone writes them (``record.record``)."""
        record(out, row, history)
        self.rows.append(row)
        bar.update(1, last=f"{row['attack']}×{row['defense']} s{row['seed']}: {100 * row['final_test_acc']:.1f}%")

    def collect(self, out: Path, cell: Cell, result, reporter, bar) -> None:
        """The one result step of every executor: ``result()`` (a finished future's, a Ray
        task's, a cell run inline) gives (row, curve), written at once; a
        :class:`~uebench.failures.CellFailure` it raises fails the cell and the sweep goes on."""
        try:
            row, history = result()
        except CellFailure as exc:
            self.fail(cell, exc, reporter, bar)
            return
        self.finished(out, row, history, bar)


def noise_group(cell: Cell) -> str | None:
    """Cells with the same group share one cached noise (their noise requests are equal); None
    when the cell needs no cached noise."""
    request = cell.noise
    if request is None or not request.attack_impl.cacheable:
        return None
    return request.group


def prepared_again(spec: CellSpec, settings: RunSettings, expected_key: str, expected_noise: str | None = None) -> Cell:
    """In a worker: the cell prepared from its plain description, checked to be the cell the
    driver planned.  A worker that sees other data, another torch or other plugins would run
    another cell under the planned key; it fails instead, naming both keys."""
    cell = prepare(spec, settings)
    key = cell_key(planned_row(cell))
    if key != expected_key:
        raise CellFailure(f"cell {cell.label}: this worker prepares it as cell {key}, the driver planned {expected_key}: "
                          f"the worker sees other data, numerics or plugins "
                          f"(data digest {cell.data_digest}, {cell.numerics.describe()})")
    if expected_noise and cell.noise is not None and cell.noise.key != expected_noise:
        raise CellFailure(f"cell {cell.label}: this worker names its noise {cell.noise.key}, "
                          f"the crafting task made {expected_noise}")
    return cell


def crafting_first(todo: list[tuple[str, Cell]]) -> list[tuple[str, Cell]]:
    """``todo`` reordered for parallel workers: the first cell of each distinct noise, then the
    rest, each part in matrix order.  In matrix order two workers would often start two cells
    of one noise, and the second would wait on the cache lock while another noise could be
    crafting beside the first."""
    first, rest, seen = [], [], set()
    for key, cell in todo:
        noise = noise_group(cell)
        if noise is not None and noise not in seen:
            seen.add(noise)
            first.append((key, cell))
        else:
            rest.append((key, cell))
    return first + rest


def done_keys(results: Path) -> set[str]:
    """Cell keys of the rows in ``results`` (rows written before the key existed are keyed now)."""
    if not Path(results).is_file():
        return set()
    frame = pd.read_csv(results, dtype=str, keep_default_na=False)
    keys = set()
    for row in frame.to_dict("records"):
        keys.add(row.get("cell_key") or cell_key(row))
    return keys


def spec_of(planned: PlannedCell, protocol: str) -> CellSpec:
    return CellSpec(
        attack=planned.attack, defenses=planned.defenses, victim=planned.victim, dataset=planned.dataset, protocol=protocol,
        seed=planned.seed, eps=planned.eps, poison_rate=planned.poison_rate, poison_classes=planned.poison_classes,
        drop_poisoned=planned.drop_poisoned, quantize=planned.quantize, attack_options=dict(planned.attack_options),
        defense_options={k: dict(v) for k, v in planned.defense_options.items()}, victim_options=dict(planned.victim_options),
    )


def plan_sweep(matrix: Path, out: Path, **settings) -> SweepPlan:
    """``settings``: the :class:`~uebench.cell.RunSettings` fields but ``out`` (data_dir,
    cache_dir, device, precision, compile, threads, plugins_dirs), as for ``uebench run``."""
    protocol, planned = read_matrix(matrix)
    run_settings = RunSettings(out=Path(out), **settings)
    plan = SweepPlan(protocol, Path(out), run_settings)
    seen = set()
    for number, p in enumerate(planned, 1):
        try:
            cell = prepare(spec_of(p, protocol), run_settings)
        except (OptionError, UnknownNameError) as exc:
            what = f"{p.attack} × {'+'.join(p.defenses)} × seed {p.seed}"
            raise MatrixError(f"{matrix}: cell {number} ({what}): {exc}") from None
        key = cell_key(planned_row(cell))
        if key not in seen:
            seen.add(key)
            plan.cells.append((key, cell))
    plan.done = done_keys(Path(out) / "results.csv") & seen
    return plan


def threads_per_job(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)
