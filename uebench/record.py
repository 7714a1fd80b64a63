"""A cell's results row: the fields that define it (known before any work) and what it measured.

The row's identity fields are what the cell key hashes (``uebench.cellkey``); the sweep
compares :func:`planned_row` with the rows already written, and ``run_cell`` extends it with the
measurements into :func:`result_row`.  Only the CLI and the sweep driver write rows
(:func:`record`), so a worker that dies leaves no half row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from uebench import __version__
from uebench.cellkey import cell_key, config_key
from uebench.compute import device_label
from uebench.craft.identity import identity_options, input_locations
from uebench.imperceptibility import unavailable
from uebench.numerics import Numerics
from uebench.options import canonical_json, options_dict, options_json
from uebench.results import COLUMNS, append_row, git_sha


def planned_row(cell) -> dict:
    """The row fields that define ``cell`` (a prepared ``uebench.cell.Cell``)."""
    spec, protocol = cell.spec, cell.protocol
    return {
        "uebench_version": __version__,
        "protocol": protocol.name,
        "protocol_version": protocol.version,
        "dataset": cell.dataset.name,
        "attack": cell.attack.name,
        "attack_options": canonical_json(identity_options(cell.attack, cell.resolved)),
        "eps": spec.eps,
        "poison_rate": spec.poison_rate,
        "poison_classes": ",".join(cell.dataset.classes[k] for k in cell.poison_classes),
        "drop_poisoned": spec.drop_poisoned,
        "quantized": spec.quantize,
        "defense": cell.defense_name,
        "defense_options": defense_options_json(cell.defenses),
        "victim": cell.victim_name,
        "victim_options": options_json(cell.victim.options),
        "seed": spec.seed,
        "data_digest": cell.data_digest,
        "torch_version": cell.numerics.torch_version,
        "device": numerics_device_label(cell.numerics, cell.device),
        "threads": "" if cell.numerics.threads is None else cell.numerics.threads,
        "precision": cell.numerics.precision,
    }


def result_row(cell, crafted, result, settings, train_size: int, test_size: int, imperceptibility: dict | None = None) -> dict:
    """The full row of a finished cell: :func:`planned_row`, its keys, and the measurements
    (``crafted``: ``uebench.craft.Crafted``; ``result``: the trainer's; ``settings``: its
    ``TrainSettings``; ``imperceptibility``: ``uebench.imperceptibility.measure_released``'s columns)."""
    noise = crafted.noise
    meta = noise.meta if noise is not None else {}
    l0 = noise is not None and noise.norm == "l0"
    oracle = result.oracle_best
    planned = planned_row(cell)
    row = {
        "run_id": dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
        "cell_key": cell_key(planned),
        "config_key": config_key(planned),
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        **planned,
        "l0_max_delta": noise.eps if l0 else "",  # an L0 attack ignores --eps: its largest |δ|
        "norm": noise.budget_label if noise is not None else "linf",
        "epochs": settings.epochs,
        "final_test_acc": result.final_test_acc,
        "selected_epoch": result.selected_epoch,
        "oracle_best_test_acc": oracle["test_acc"],
        "oracle_best_epoch": oracle["epoch"],
        "final_train_acc": result.final["train_acc"],
        "train_size": train_size,
        "test_size": test_size,
        "craft_seconds": round(crafted.seconds, 2),
        "train_seconds": round(result.seconds, 2),
        "device": device_label(cell.device),
        "precision": planned["precision"],
        "noise_key": crafted.key,
        "noise_cached": crafted.cached,
        "craft_stop_reason": meta.get("stop_reason", ""),
        "craft_iterations": meta.get("iterations", ""),
        "craft_final_error": meta.get("final_error", ""),
        "compile": "" if cell.settings.compile == "none" else cell.settings.compile,
        "inputs": input_locations(cell.attack, cell.resolved),
        **(imperceptibility or unavailable("not measured")),
    }
    return {column: row[column] for column in COLUMNS}


def numerics_device_label(numerics: Numerics, device) -> str:
    """The row's ``device`` as known before any work: ``cpu:1threads`` (the pinned count), or the
    accelerator's name."""
    return f"cpu:{numerics.threads}threads" if numerics.threads is not None else device_label(device)


def defense_options_json(defenses) -> str:
    """``{"cutmix": {"alpha": 1.0, ...}, "jpeg": {...}}``: each defense's options under its name."""
    return canonical_json({d.name: options_dict(d.options) for d in defenses})


def record(out: Path, row: dict, history: list[dict]) -> None:
    """Append ``row`` to ``out/results.csv`` and write its curve to ``out/curves/<run_id>.csv``."""
    out = Path(out)
    append_row(out / "results.csv", row, curve=(out / "curves" / f"{row['run_id']}.csv", history))
