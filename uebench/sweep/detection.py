"""Detection in a sweep: a matrix with ``detectors = [...]`` also scores every distinct training
set its cells release (one per attack, options, seed and poison scope: the defense and the
victim do not change what is released), writing ``OUT/detections.csv``.

A set already scored by a detector (its ``detect_key`` in the file) is skipped, so a rerun does
only what is missing, as for the cells.  Detection runs in the driver, one set at a time: at the
``cpu`` scale a set takes seconds to a minute, far less than one cell's training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from uebench.detect import (
    build_detectors,
    cell_set_fields,
    cell_suspect,
    detect_key,
    detection_row,
    known_verdicts,
    score,
    write_rows,
)
from uebench.failures import CellFailure
from uebench.sweep.matrix import read_detectors


@dataclass
class DetectionPlan:
    """The sets to score: (cell standing for the set, its set fields, detectors still to run on it)."""

    todo: list[tuple[object, dict, list]] = field(default_factory=list)
    done: int = 0  # (set, detector) pairs already in the file


def plan_detection(matrix: Path, plan) -> DetectionPlan | None:
    """None when the matrix names no detectors."""
    names = read_detectors(matrix)
    if names is None:
        return None
    host = plan.cells[0][1].host if plan.cells else None
    if host is None:
        return DetectionPlan()
    detectors = build_detectors(host, names, {})
    known = known_verdicts(plan.out)
    out, seen = DetectionPlan(), set()
    for _, cell in plan.cells:
        base = cell_set_fields(cell)
        marker = tuple(sorted(base.items()))
        if marker in seen:
            continue
        seen.add(marker)
        todo = [d for d in detectors if detect_key(base, d) not in known]
        out.done += len(detectors) - len(todo)
        if todo:
            out.todo.append((cell, base, todo))
    return out


def run_detection(plan: DetectionPlan, out: Path, reporter) -> tuple[list[dict], list[tuple[str, str]]]:
    """Score every set still to do; returns (rows written, failures (label, why))."""
    rows, failed = [], []
    bar = reporter.task("detection", total=len(plan.todo))
    for cell, base, detectors in plan.todo:
        try:
            suspect, _ = cell_suspect(cell, reporter)
            scored = [detection_row(base, s, len(suspect))
                      for s in score(suspect, detectors, cell.spec.seed, cell.device, reporter)]
        except CellFailure as exc:
            failed.append((cell.label, str(exc)))
            reporter.log(f"[red]detection on {cell.label} failed:[/] {exc}")
            bar.update(1)
            continue
        write_rows(out, scored)
        rows += scored
        bar.update(1, last=", ".join(f"{r['detector']} {r['score']:.2f}" for r in scored))
    bar.close()
    return rows, failed

