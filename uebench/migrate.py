"""Bring results rows written by older uebench up to today's identity, without touching a result.

A sweep recognises a cell by its key (``uebench.cellkey``), a hash over the row's identity
fields.  When a change leaves the results alone but changes how a cell is *named* — an option
that never applied leaves the key — rows written before it no longer match the cells today's
code plans, and a sweep would run them again.  ``uebench leaderboard migrate RESULTS.csv``
rewrites such rows (atomically, under the results lock); each migration below says what it does
and why the measured values stay valid.  A row whose stored key is not the key of its fields
(edited by hand) is refused, never re-keyed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from filelock import FileLock

from uebench.cellkey import IDENTITY, IDENTITY_V1, cell_key, config_key, device_type, fields_of
from uebench.craft.request import NoiseRequest
from uebench.numerics import threads_of_device_label
from uebench.options import canonical_json
from uebench.results import atomic_write_csv, ordered_columns


class MigrationError(ValueError):
    """A row cannot be migrated as asked: what is missing, and the option that supplies it."""


@dataclass
class Sources:
    """Where a migration finds what older rows did not record.

    ``revision_of(attack)``: the attack's revision today; ``train_size_of(row)``: candidates for
    the crafting set's size; ``data_digest_of(dataset)``: the digest of the dataset the rows ran
    on (the copy found now, ``--data-dir``); ``assume_torch``: the torch release they ran under
    (``--assume-torch``: rows before the column was written do not say; this project's machines
    and CI pinned torch 2.14.1 throughout)."""

    revision_of: Callable[[str], int]
    train_size_of: Callable[[dict], list[int]]
    data_digest_of: Callable[[str], str] | None = None
    assume_torch: str | None = None

# Δs crafting never read ``class_subset`` (it selects the images Δc is crafted on), yet it was
# stored in the Δs options, cache key and row.  Dropping it changes no noise and no number.
CLASSWISE_ONLY = {"errmin-pgd": ("class_subset",), "errmin-adam": ("class_subset",)}


def _options(row: dict) -> dict:
    text = row.get("attack_options") or "{}"
    return json.loads(text)


def provenance_of(row: dict) -> dict | None:
    """The ``Cell.provenance`` a row of today's identity was crafted with (typed as the runner's:
    threads an int or None); None for a row written before provenance entered the keys."""
    if fields_of(row) is IDENTITY_V1:
        return None
    threads = str(row.get("threads", "")).strip()
    return {"data_digest": row["data_digest"], "torch_version": row["torch_version"],
            "device_type": device_type(row.get("device")),
            "threads": int(float(threads)) if threads else None, "precision": row["precision"]}


def _noise_key(row: dict, options: dict, revision: int, train_size: int, provenance: dict | None = None) -> str:
    """The noise-cache key this row's noise was crafted under, from the row's fields."""
    return NoiseRequest.from_row(row, options=options, revision=revision, train_size=train_size, provenance=provenance).key


def _check_key(row: dict, fields=None) -> None:
    expected = cell_key(row, fields)
    if row.get("cell_key") and row["cell_key"] != expected:
        raise MigrationError(f"row {row.get('run_id')!r}: its cell_key {row['cell_key']} is not the key of its fields "
                             f"({expected}); not migrating a row that was edited by hand")


def _rekey_noise(row: dict, out: dict, src: Sources, options: dict, new_options: dict, old_provenance, new_provenance) -> None:
    """``out``'s noise key rebuilt where ``row``'s is reproduced from its fields (a row of an older
    attack revision keeps the key it was written with: no noise of today's code matches it)."""
    if not row.get("noise_key"):
        return
    revision = src.revision_of(row["attack"])
    for size in src.train_size_of(row):
        if _noise_key(row, options, revision, size, old_provenance) == row["noise_key"]:
            out["noise_key"] = _noise_key(row, new_options, revision, size, new_provenance)
            return


def drop_classwise_options(row: dict, src: Sources) -> dict | None:
    """The row without Δc-only options in a sample-wise attack's options (None: nothing to do).
    Its noise key is rewritten only where the old key is reproduced from the row (so a row of an
    older attack revision keeps the key it was written with)."""
    dropped = CLASSWISE_ONLY.get(row.get("attack"), ())
    options = _options(row)
    if options.get("form") != "sample" or not any(name in options for name in dropped):
        return None
    new_options = {k: v for k, v in options.items() if k not in dropped}
    out = dict(row, attack_options=canonical_json(new_options))
    _check_key(row)
    out["cell_key"] = cell_key(out)
    if "config_key" in row:
        out["config_key"] = config_key(out)
    provenance = provenance_of(row)
    _rekey_noise(row, out, src, options, new_options, provenance, provenance)
    return out


DEFAULT_EPS = 8 / 255  # ``uebench run --eps``'s default


def l0_max_delta_column(row: dict, src: Sources) -> dict | None:
    """An L0 row's ``eps`` held the noise's largest |δ| while its key held --eps, so the key could
    not be computed from the row.  The largest |δ| moves to ``l0_max_delta`` and ``eps`` gets
    the --eps its key was made with (the default 8/255: the only one its stored key matches;
    anything else is refused).  The attack ignores --eps, so no number changes."""
    if not str(row.get("norm", "")).startswith("l0:") or str(row.get("l0_max_delta", "")).strip():
        return None
    out = dict(row, eps=repr(DEFAULT_EPS), l0_max_delta=row["eps"])
    if row.get("cell_key") and row["cell_key"] == cell_key(row):
        return None
    _check_key(out)
    return out


def add_provenance(row: dict, src: Sources) -> dict | None:
    """A row written before the data and the numerics joined the keys gets ``data_digest``,
    ``torch_version``, ``threads`` and ``config_key``, and keys of today's identity (None: the
    row has them).  The digest is of the dataset copy found now (the rows must have run on it:
    the command names the folder), the torch release is ``--assume-torch``'s, the thread count
    is read from the row's ``device`` column (``cpu:1threads``); no measured value changes."""
    if fields_of(row) is IDENTITY:
        if row.get("config_key"):
            return None
        return dict(row, config_key=config_key(row))
    _check_key(row, IDENTITY_V1)
    if src.assume_torch is None:
        raise MigrationError(f"row {row.get('run_id')!r} predates the torch_version column: pass --assume-torch VERSION, "
                             f"the torch release it ran under (this project's machines and CI pinned 2.14.1)")
    if src.data_digest_of is None:
        raise MigrationError(f"row {row.get('run_id')!r} predates the data_digest column: "
                             f"it needs the dataset it ran on (--data-dir)")
    threads = threads_of_device_label(row.get("device"))
    if device_type(row.get("device")) == "cpu" and threads is None:
        raise MigrationError(f"row {row.get('run_id')!r}: device {row.get('device')!r} "
                             f"does not say its thread count (cpu:Nthreads)")
    if not row.get("precision"):
        raise MigrationError(f"row {row.get('run_id')!r} has no precision")
    out = dict(row, data_digest=src.data_digest_of(row["dataset"]), torch_version=src.assume_torch,
               threads="" if threads is None else str(threads))
    out["cell_key"], out["config_key"] = cell_key(out, IDENTITY), config_key(out, IDENTITY)
    options = _options(row)
    _rekey_noise(row, out, src, options, options, None, provenance_of(out))
    return out


MIGRATIONS = (l0_max_delta_column, drop_classwise_options, add_provenance)


def revision_of(attack: str) -> int:
    from uebench.plugins import get_host

    return get_host().attacks.get(attack).cls.revision


def train_size_of(row: dict) -> list[int]:
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


def dataset_digests(data_dir: str | None = None, found: Callable[[str, Path, str], None] | None = None) -> Callable[[str], str]:
    """``data_digest_of`` for :class:`Sources`: the digest of each dataset's copy in the data roots
    (``--data-dir``, ``$UEBENCH_DATA``, the user cache; never downloaded), once per dataset;
    ``found(dataset, folder, digest)`` is told which copy was used."""
    from uebench.plugins import get_host

    memo: dict[str, str] = {}

    def digest_of(name: str) -> str:
        if name not in memo:
            dataset = get_host().datasets.get(name).cls()
            folder = dataset.locate(data_dir)
            if folder is None:
                raise MigrationError(f"rows of dataset {name!r} predate data_digest, and no copy of {name!r} "
                                     f"is in the data roots: pass --data-dir DIR (DIR/{name}/ in the cache layout), "
                                     f"the copy the rows ran on")
            memo[name] = dataset.digest(folder.parent)
            if found is not None:
                found(name, folder, memo[name])
        return memo[name]

    return digest_of


def migrate_rows(frame: pd.DataFrame, src: Sources | None = None) -> tuple[pd.DataFrame, int]:
    """Every migration applied to every row: (the new frame, how many rows changed)."""
    src = src or Sources(revision_of, train_size_of)
    rows, changed = frame.to_dict("records"), 0
    for i, row in enumerate(rows):
        before = row
        for migration in MIGRATIONS:
            row = migration(row, src) or row
        changed += row is not before
        rows[i] = row
    columns = list(frame.columns) + [c for c in ("config_key", "data_digest", "torch_version", "threads", "l0_max_delta")
                                    if c not in frame.columns]
    out = pd.DataFrame(rows, columns=columns).astype(object).fillna("")
    return out[ordered_columns(columns)], changed


def migrate_file(path: Path, src: Sources | None = None) -> int:
    """Migrate the results CSV at ``path`` in place (under its lock, atomically); rows changed."""
    path = Path(path)
    with FileLock(str(path) + ".lock"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        new, changed = migrate_rows(frame, src)
        if changed:
            atomic_write_csv(new, path)
    return changed
