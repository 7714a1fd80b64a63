"""The cell key: a hash of everything that defines a cell, stored in every results row.

A sweep skips a cell whose key is already in its results, so the key must be computable both
from a prepared cell (before any work) and from any row already written (rows from before the
key existed included).  Both go through :func:`identity`: the row fields that define a cell,
in one canonical form — options as parsed JSON without ``None`` values (an option that is None
does not apply), ε rounded, scope fields with their defaults.  Timing, device, accuracies and
the noise's cache state are results, not identity.
"""

from __future__ import annotations

import hashlib
import json
import math

IDENTITY = ("uebench_version", "protocol", "protocol_version", "dataset", "attack", "attack_options", "eps",
            "poison_rate", "poison_classes", "drop_poisoned", "quantized", "defense", "defense_options", "victim",
            "victim_options", "seed")
DEFAULTS = {"poison_rate": 1.0, "poison_classes": "", "drop_poisoned": False, "quantized": True}


def _options(text) -> dict:
    value = json.loads(text) if isinstance(text, str) and text else (text or {})
    if isinstance(value, dict):
        return {k: _options(v) if isinstance(v, dict) else v for k, v in value.items() if v is not None}
    return value


def _flag(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def identity(row: dict) -> dict:
    """The canonical identity of the cell a row (or a planned row) belongs to."""
    out = {}
    for field in IDENTITY:
        value = row.get(field)
        if _missing(value) and field in DEFAULTS:
            value = DEFAULTS[field]
        if field.endswith("_options"):
            value = _options(value)
        elif field in ("eps", "poison_rate"):
            value = round(float(value), 10)
        elif field in ("seed", "protocol_version"):
            value = int(value)
        elif field in ("drop_poisoned", "quantized"):
            value = _flag(value)
        else:
            value = "" if _missing(value) else str(value)
        out[field] = value
    return out


def cell_key(row: dict) -> str:
    """20 hex characters of sha256 over :func:`identity`."""
    blob = json.dumps(identity(row), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
