"""Bring results rows written by older uebench up to today's identity, without touching a result.

A sweep recognises a cell by its key (``uebench.cellkey``), a hash over the row's identity
fields.  When a change leaves the results alone but changes how a cell is *named* — an option
that never applied leaves the key — rows written before it no longer match the cells today's
code plans, and a sweep would run them again.  ``uebench leaderboard migrate RESULTS.csv``
rewrites such rows (atomically, under the results lock); each migration below says what it does
and why the measured values stay valid.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from filelock import FileLock

from uebench.cache import noise_key
from uebench.cellkey import cell_key
from uebench.options import canonical_json
from uebench.results import atomic_write_csv
from uebench.runner import key_fields

# Δs crafting never read ``class_subset`` (it selects the images Δc is crafted on), yet it was
# stored in the Δs options, cache key and row.  Dropping it changes no noise and no number.
CLASSWISE_ONLY = {"errmin-pgd": ("class_subset",), "errmin-adam": ("class_subset",)}


def _options(row: dict) -> dict:
    text = row.get("attack_options") or "{}"
    return json.loads(text)


def _noise_key(row: dict, options: dict, revision: int, train_size: int) -> str:
    """The noise-cache key ``runner.noise_key_of`` gave this row's noise, from the row's fields."""
    return noise_key(key_fields(row["attack"], revision, options, row["dataset"], row["protocol"], int(row["protocol_version"]),
                                int(row["seed"]), float(row["eps"]), train_size, row["uebench_version"]))


def drop_classwise_options(row: dict, revision_of: Callable[[str], int], train_size_of: Callable[[dict], list[int]]) -> dict | None:
    """The row without Δc-only options in a sample-wise attack's options (None: nothing to do).
    Its noise key is rewritten only where the old key is reproduced from the row (so a row of an
    older attack revision keeps the key it was written with)."""
    dropped = CLASSWISE_ONLY.get(row.get("attack"), ())
    options = _options(row)
    if options.get("form") != "sample" or not any(name in options for name in dropped):
        return None
    new_options = {k: v for k, v in options.items() if k not in dropped}
    out = dict(row, attack_options=canonical_json(new_options))
    old_cell = cell_key(row)
    if row.get("cell_key") and row["cell_key"] != old_cell:
        raise ValueError(f"row {row.get('run_id')!r}: its cell_key {row['cell_key']} is not the key of its fields ({old_cell}); not migrating a row that was edited by hand")
    out["cell_key"] = cell_key(out)
    if row.get("noise_key"):
        revision = revision_of(row["attack"])
        for size in train_size_of(row):
            if _noise_key(row, options, revision, size) == row["noise_key"]:
                out["noise_key"] = _noise_key(row, new_options, revision, size)
                break
    return out


MIGRATIONS = (drop_classwise_options,)


def _revision_of(attack: str) -> int:
    from uebench.plugins import get_host

    return get_host().attacks.get(attack).cls.revision


def _train_size_of(row: dict) -> list[int]:
    """Candidates for the crafting set's size: the protocol's per-class count × classes, and the
    row's training-set size (equal unless a defense held images out)."""
    from uebench.plugins import get_host
    from uebench.protocols import get_protocol

    sizes = []
    per_class = get_protocol(row["protocol"]).for_dataset(row["dataset"]).train_per_class
    if per_class is not None:
        sizes.append(per_class * len(get_host().datasets.get(row["dataset"]).cls.classes))
    if str(row.get("train_size", "")).isdigit():
        sizes.append(int(row["train_size"]))
    return sizes


def migrate_rows(frame: pd.DataFrame, revision_of=_revision_of, train_size_of=_train_size_of) -> tuple[pd.DataFrame, int]:
    """Every migration applied to every row: (the new frame, how many rows changed)."""
    rows, changed = frame.to_dict("records"), 0
    for i, row in enumerate(rows):
        before = row
        for migration in MIGRATIONS:
            row = migration(row, revision_of, train_size_of) or row
        changed += row is not before
        rows[i] = row
    return pd.DataFrame(rows, columns=frame.columns), changed


def migrate_file(path: Path) -> int:
    """Migrate the results CSV at ``path`` in place (under its lock, atomically); rows changed."""
    path = Path(path)
    with FileLock(str(path) + ".lock"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        new, changed = migrate_rows(frame)
        if changed:
            atomic_write_csv(new, path)
    return changed
