"""Plan a sweep: prepare every cell of a matrix (every error before any work), key it, and
find which keys the results already hold — a rerun does only what is missing."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from uebench.cellkey import cell_key
from uebench.options import OptionError
from uebench.registry import UnknownNameError
from uebench.runner import Cell, CellSpec, noise_fields, planned_row, prepare, record
from uebench.sweep.matrix import MatrixError, PlannedCell, read_matrix


@dataclass
class SweepPlan:
    protocol: str
    out: Path
    cells: list[tuple[str, Cell]] = field(default_factory=list)  # (cell key, cell), matrix order, unique
    done: set[str] = field(default_factory=set)

    @property
    def todo(self) -> list[tuple[str, Cell]]:
        return [(key, cell) for key, cell in self.cells if key not in self.done]


def cell_label(cell: Cell) -> str:
    """How a sweep names a cell in its messages, e.g. ``errmin-pgd×cutmix s1``."""
    return f"{cell.attack.name}×{cell.defense_name} s{cell.spec.seed}"


@dataclass
class SweepOutcome:
    """What a sweep run did: the rows it wrote, and the cells that failed (label, why) — those
    have no row, so the next run of the sweep retries them."""

    rows: list[dict] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, cell: Cell, exc: BaseException, reporter, bar) -> None:
        """``cell`` failed: noted, logged, counted on the sweep's bar; no row is written."""
        self.failed.append((cell_label(cell), str(exc)))
        reporter.log(f"[red]cell {cell_label(cell)} failed:[/] {exc}")
        bar.update(1)

    def finished(self, out: Path, row: dict, history: list[dict], bar) -> None:
        """A cell's row and curve came back: the driver alone writes them (``runner.record``)."""
        record(out, row, history)
        self.rows.append(row)
        bar.update(1, last=f"{row['attack']}×{row['defense']} s{row['seed']}: {100 * row['final_test_acc']:.1f}%")


def noise_group(cell: Cell) -> str | None:
    """Cells with the same group share one noise: its key's fields short of the data size (the
    same for every cell of one dataset and protocol; known only once the data is loaded).  None
    when the cell needs no cached noise."""
    if not cell.attack.cacheable or cell.spec.drop_poisoned or cell.attack.name == "none":
        return None
    fields = noise_fields(cell.attack, cell.attack_resolved, cell.dataset.name, cell.protocol, cell.spec.seed, cell.spec.eps,
                          train_size=None, provenance=cell.provenance)
    return json.dumps(fields, sort_keys=True, default=str)


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


def spec_of(planned: PlannedCell, protocol: str, out: Path, settings: dict) -> CellSpec:
    return CellSpec(
        attack=planned.attack, defenses=planned.defenses, victim=planned.victim, dataset=planned.dataset, protocol=protocol,
        seed=planned.seed, eps=planned.eps, poison_rate=planned.poison_rate, poison_classes=planned.poison_classes,
        drop_poisoned=planned.drop_poisoned, quantize=planned.quantize, attack_options=dict(planned.attack_options),
        defense_options={k: dict(v) for k, v in planned.defense_options.items()}, victim_options=dict(planned.victim_options),
        out=out, **settings,
    )


def plan_sweep(matrix: Path, out: Path, **settings) -> SweepPlan:
    """``settings``: data_dir, cache_dir, device, precision, plugins_dirs (as for ``uebench run``)."""
    protocol, planned = read_matrix(matrix)
    plan = SweepPlan(protocol, Path(out))
    seen = set()
    for number, p in enumerate(planned, 1):
        try:
            cell = prepare(spec_of(p, protocol, Path(out), settings))
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
