"""A benchmark matrix file (TOML) → the cells it names.

```toml
protocol = "cpu"                 # one protocol per matrix (rows are comparable within one)
seeds = [0, 1, 2]
datasets = ["cifar10"]           # default: ["cifar10"]
victims = ["cnn-small"]          # default: the protocol's victim
defenses = ["none", "cutmix", ["jpeg", "cutmix"], {use = ["early-stop"], options = {early-stop = {clean_val = true}}}]
eps = "8/255"                    # default 8/255
quantize = true                  # default true (the released 8-bit images)
detectors = ["simple-networks"]  # optional: also score every released set (OUT/detections.csv)

[[attacks]]                      # crossed with everything above
name = "errmin-pgd"
options = {form = "sample"}

[[cells]]                        # extra cells, outside the cross; any key above may be overridden
attack = "random"
options = {form = "class"}
defenses = [{use = ["early-stop"], options = {early-stop = {clean_val = true}}}]
seeds = [0]
poison_rate = 0.5
poison_classes = ["bird"]
drop_poisoned = false
```

A defenses entry is a name, a list of names (a composition, applied in order) or a table with
``use`` (the list) and ``options`` (per defense name, each one of ``use``'s).  Every key is
checked: an unknown one is an error naming it and its line.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from uebench.options import OptionError, parse_fraction

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP = {"protocol", "seeds", "datasets", "victims", "defenses", "eps", "quantize", "attacks", "cells",
       "poison_rate", "poison_classes", "drop_poisoned", "detectors"}
ATTACK = {"name", "options"}
CELL = {"attack", "options", "seeds", "datasets", "victims", "defenses", "eps", "quantize", "poison_rate",
        "poison_classes", "drop_poisoned", "victim_options"}
DEFENSE_TABLE = {"use", "options"}


class MatrixError(OptionError):
    """A matrix file that cannot be read or names something unknown (exit code 2)."""


@dataclass(frozen=True)
class PlannedCell:
    """One cell of the matrix, as names and raw options (validated later by ``runner.prepare``)."""

    attack: str
    attack_options: dict
    defenses: tuple[str, ...]
    defense_options: dict
    victim: str | None
    dataset: str
    seed: int
    eps: float
    quantize: bool
    poison_rate: float
    poison_classes: tuple[str, ...]
    drop_poisoned: bool
    victim_options: dict


def _line(text: str, key: str) -> int | None:
    """The first line of ``text`` that sets or opens ``key`` (for error messages)."""
    pattern = re.compile(rf"^\s*(\[\[?\s*)?{re.escape(key)}\s*(=|\]|\.)", re.M)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _unknown(table: dict, allowed: set, where: str, text: str, path: Path) -> None:
    for key in table:
        if key not in allowed:
            line = _line(text, key)
            at = f"{path}:{line}" if line else str(path)
            raise MatrixError(f"{at}: unknown key {key!r} in {where}; allowed: {', '.join(sorted(allowed))}")


def _key_line(text: str, key: str, near: tuple[str, ...] = ()) -> int | None:
    """The line of ``text`` that uses ``key`` as a key, inline tables too (``{jpg = {...}}``):
    the first such line that also names every one of ``near`` (the entry it belongs to), else
    the first.  ``_line`` sees only keys that open a line, and options sit inside inline tables."""
    pattern = re.compile(rf"(?:^|[\s{{,])[\"']?{re.escape(key)}[\"']?\s*[=.]", re.M)
    lines = [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]
    text_lines = text.splitlines()
    for line in lines:
        if all(f'"{n}"' in text_lines[line - 1] or f"'{n}'" in text_lines[line - 1] for n in near):
            return line
    return lines[0] if lines else None


def _check_options_in_use(use: list[str], options: dict, text: str, path: Path) -> None:
    """Options for a defense the table does not use would be dropped without a word (a typo such
    as ``jpg`` for ``jpeg`` runs the cell at the defaults): refuse them, saying where."""
    allowed = set(use) | {u.partition(":")[0] for u in use}  # a defense ``name:arg`` takes options as ``name``
    for name in options:
        if name not in allowed:
            line = _key_line(text, name, tuple(use))
            at = f"{path}:{line}" if line else str(path)
            close = difflib.get_close_matches(name, use, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise MatrixError(f"{at}: defenses options for {name!r}, which is not in use = {list(use)!r}; options may name "
                              f"only the defenses in use ({', '.join(use)}).{hint}")


def _defenses(entries, text: str, path: Path) -> list[tuple[tuple[str, ...], dict]]:
    out = []
    for entry in entries:
        if isinstance(entry, str):
            out.append(((entry,), {}))
        elif isinstance(entry, list) and entry and all(isinstance(e, str) for e in entry):
            out.append((tuple(entry), {}))
        elif isinstance(entry, dict):
            _unknown(entry, DEFENSE_TABLE, "a defenses table", text, path)
            use = entry.get("use")
            if isinstance(use, str):
                use = [use]
            if not use or not all(isinstance(e, str) for e in use):
                raise MatrixError(f"{path}: a defenses table needs use = [names], got {entry!r}")
            options = entry.get("options", {})
            if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
                raise MatrixError(f"{path}: defenses options must be {{defense = {{key = value}}}}, got {options!r}")
            _check_options_in_use(use, options, text, path)
            out.append((tuple(use), options))
        else:
            raise MatrixError(f"{path}: a defenses entry is a name, a list of names or a table {{use, options}}; got {entry!r}")
    return out


def _list(value, what: str, path: Path) -> list:
    if not isinstance(value, list) or not value:
        raise MatrixError(f"{path}: {what} must be a non-empty list, got {value!r}")
    return value


def read_matrix(path: Path) -> tuple[str, list[PlannedCell]]:
    """(protocol name, cells) of the matrix file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise MatrixError(f"matrix file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"{path}: not valid TOML: {exc}") from None
    if not data:
        raise MatrixError(f"{path}: the matrix is empty; it needs protocol, seeds and [[attacks]] (see `uebench sweep --help`)")
    _unknown(data, TOP, "the matrix", text, path)
    if "protocol" not in data:
        raise MatrixError(f"{path}: the matrix names no protocol (protocol = \"cpu\")")
    base = {
        "seeds": data.get("seeds", [0]), "datasets": data.get("datasets", ["cifar10"]), "victims": data.get("victims", [None]),
        "defenses": data.get("defenses", ["none"]), "eps": data.get("eps", "8/255"), "quantize": data.get("quantize", True),
        "poison_rate": data.get("poison_rate", 1.0), "poison_classes": data.get("poison_classes", []),
        "drop_poisoned": data.get("drop_poisoned", False), "victim_options": {},
    }
    cells: list[PlannedCell] = []
    attacks = data.get("attacks", [])
    if not isinstance(attacks, list):
        raise MatrixError(f"{path}: attacks must be [[attacks]] tables")
    for attack in attacks:
        _unknown(attack, ATTACK, "an [[attacks]] table", text, path)
        if "name" not in attack:
            raise MatrixError(f"{path}: an [[attacks]] table has no name")
        cells += _expand({**base, "attack": attack["name"], "options": attack.get("options", {})}, text, path)
    for extra in data.get("cells", []):
        _unknown(extra, CELL, "a [[cells]] table", text, path)
        if "attack" not in extra:
            raise MatrixError(f"{path}: a [[cells]] table names no attack")
        cells += _expand({**base, "options": {}, **extra}, text, path)
    if not cells:
        raise MatrixError(f"{path}: the matrix names no cells: add [[attacks]] or [[cells]] tables")
    return str(data["protocol"]), cells


def read_detectors(path: Path) -> tuple[str, ...] | None:
    """The detectors the matrix names (``detectors = [...]``; ``true`` for every registered
    one: the empty tuple), or None when it names none."""
    value = tomllib.loads(Path(path).read_text()).get("detectors")
    if value is None or value is False:
        return None
    if value is True:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise MatrixError(f"{path}: detectors must be a non-empty list of detector names, or true for all; got {value!r}")
    return tuple(value)


def _expand(spec: dict, text: str, path: Path) -> list[PlannedCell]:
    eps = parse_fraction(spec["eps"], "eps") if isinstance(spec["eps"], str) else float(spec["eps"])
    classes = spec["poison_classes"]
    classes = tuple(classes.split(",")) if isinstance(classes, str) else tuple(str(c) for c in classes)
    out = []
    for dataset in _list(spec["datasets"], "datasets", path):
        for victim in _list(spec["victims"], "victims", path):
            for defenses, defense_options in _defenses(_list(spec["defenses"], "defenses", path), text, path):
                for seed in _list(spec["seeds"], "seeds", path):
                    if not isinstance(seed, int) or seed < 0:
                        raise MatrixError(f"{path}: seeds are integers >= 0, got {seed!r}")
                    out.append(PlannedCell(
                        attack=spec["attack"], attack_options=dict(spec["options"]), defenses=defenses,
                        defense_options=defense_options, victim=victim, dataset=dataset, seed=seed, eps=eps,
                        quantize=bool(spec["quantize"]), poison_rate=float(spec["poison_rate"]), poison_classes=classes,
                        drop_poisoned=bool(spec["drop_poisoned"]), victim_options=dict(spec.get("victim_options", {})),
                    ))
    return out
