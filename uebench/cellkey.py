"""The cell key: a hash of everything that defines a cell, stored in every results row.

A sweep skips a cell whose key is already in its results, so the key must be computable both
from a prepared cell (before any work) and from any row already written (rows from before the
key existed included).  Both go through :func:`identity`: the row fields that define a cell,
in one canonical form — options as parsed JSON without ``None`` values (an option that is None
does not apply), ε rounded, scope fields with their defaults.  Timing, accuracies and the
noise's cache state are results, not identity.

Identity covers everything that decides a result and nothing else: the settings, the data's
content (``data_digest``) and the numerics (torch release, device type, CPU threads, precision;
``uebench.numerics``).  :data:`IDENTITY_V1` is what keys covered before the data and numerics
joined them: rows written then keep those keys until ``uebench leaderboard migrate`` fills the
new fields (``uebench.migrate``), and a row without ``data_digest`` is keyed the old way, so a
sweep never mistakes it for a cell of today's identity.

The ``config_key`` is the same hash without the seed: rows sharing it are seeds of one
configuration, the only rows a leaderboard cell may average.
"""

from __future__ import annotations

import hashlib
import json
import math

IDENTITY_V1 = ("uebench_version", "protocol", "protocol_version", "dataset", "attack", "attack_options", "eps",
               "poison_rate", "poison_classes", "drop_poisoned", "quantized", "defense", "defense_options", "victim",
               "victim_options", "seed")
NUMERICS = ("torch_version", "device_type", "threads", "precision")
IDENTITY = (*IDENTITY_V1, "data_digest", *NUMERICS)
DEFAULTS = {"poison_rate": 1.0, "poison_classes": "", "drop_poisoned": False, "quantized": True}


def _options(text) -> dict:
    value = json.loads(text) if isinstance(text, str) and text else (text or {})
    if isinstance(value, dict):
        return {k: _options(v) if isinstance(v, dict) else v for k, v in value.items() if v is not None}
    return value


def _flag(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")


def is_missing(value) -> bool:
    """None, NaN (pandas' empty cell) and "" are one thing in a row: no value."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def fields_of(row: dict) -> tuple[str, ...]:
    """The identity fields ``row`` is keyed by: today's, or :data:`IDENTITY_V1` for a row written
    before ``data_digest`` existed (not yet migrated)."""
    return IDENTITY if not is_missing(row.get("data_digest")) else IDENTITY_V1


def device_type(label) -> str:
    """``cpu`` for ``cpu:1threads``, ``cuda`` for ``cuda:NVIDIA H200``: a row's ``device`` column
    names the machine; only its type is identity."""
    return "" if is_missing(label) else str(label).split(":", 1)[0]


def identity(row: dict, fields: tuple[str, ...] | None = None) -> dict:
    """The canonical identity of the cell a row (or a planned row) belongs to."""
    out = {}
    for field in fields or fields_of(row):
        value = device_type(row.get("device")) if field == "device_type" and "device_type" not in row else row.get(field)
        if is_missing(value) and field in DEFAULTS:
            value = DEFAULTS[field]
        if field.endswith("_options"):
            value = _options(value)
        elif field in ("eps", "poison_rate"):
            value = round(float(value), 10)
        elif field in ("seed", "protocol_version"):
            value = int(value)
        elif field == "threads":
            value = "" if is_missing(value) else int(float(value))
        elif field in ("drop_poisoned", "quantized"):
            value = _flag(value)
        else:
            value = "" if is_missing(value) else str(value)
        out[field] = value
    return out


def _hash(fields: dict) -> str:
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cell_key(row: dict, fields: tuple[str, ...] | None = None) -> str:
    """20 hex characters of sha256 over :func:`identity`."""
    return _hash(identity(row, fields))


def config_key(row: dict, fields: tuple[str, ...] | None = None) -> str:
    """:func:`cell_key` without the seed: one key for every seed of a configuration."""
    return _hash({k: v for k, v in identity(row, fields).items() if k != "seed"})


def setting_key(row: dict) -> str:
    """:func:`config_key` without the data and the numerics: what the user asked for.  Rows
    sharing it and not the config key ran the same settings on other data or other numerics
    (another thread count, torch, device or precision): the run summary's comparison with the
    board matches on it to say *which* of those differ."""
    return _hash({k: v for k, v in identity(row, IDENTITY_V1).items() if k != "seed"})
