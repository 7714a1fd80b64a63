"""One declaration per plugin's options: a dataclass drives parsing, validation, repr and rows.

A plugin declares ``Options`` as a dataclass.  Field metadata may carry ``help`` (shown by
``uebench attacks list``) and ``choices`` (validated).  The same object then becomes the
``-o key=value`` parser, the noise-cache key and the JSON in the results row, so the three can
never disagree.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from fractions import Fraction
from typing import Any


class OptionError(ValueError):
    """A bad option value or name; the message names it and what is allowed."""


def option(default: Any = None, *, help: str = "", choices: tuple | None = None):  # noqa: A002
    """A dataclass field with a help text and, optionally, the allowed values."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def parse_fraction(text: str | float, what: str = "value") -> float:
    """Parse ``8/255``, ``0.031`` or ``1e-2`` into a float; raise OptionError otherwise."""
    if isinstance(text, (int, float)):
        return float(text)
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise OptionError(f"{what} {text!r} is not a number (write e.g. 8/255 or 0.031)") from None


def display_value(value: Any) -> str:
    """``value`` as a listing shows it: a float that is a whole number of 8-bit grey levels and
    no short decimal reads as the user writes it (``8/255``, not ``0.03137254901960784``);
    ``0.2`` and ``1.0`` stay decimals, everything else is its ``repr``.  Display only: the
    stored value, and so every key and row, keeps the float."""
    if isinstance(value, float) and math.isfinite(value):
        levels = round(value * 255)
        short = float(f"{value:.6g}") == value  # 0.2, 0.05, 1.0: written as decimals
        if levels and not short and abs(value * 255 - levels) < 1e-9:
            return f"{levels}/255"
    return repr(value)


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp):
    """Strip ``Optional[...]``; return (inner type, allows None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _convert(name: str, raw: Any, tp) -> Any:
    base, nullable = _base_type(tp)
    if isinstance(raw, str) and nullable and raw.strip().lower() in ("none", "null", ""):
        return None
    if raw is None:
        if nullable:
            return None
        raise OptionError(f"option {name!r} may not be empty")
    try:
        if base is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if base is float:
            return parse_fraction(raw, f"option {name!r}")
        if base is str:
            return str(raw)
    except (ValueError, TypeError):
        raise OptionError(
            f"option {name!r} expects {getattr(base, '__name__', base)}, got {raw!r}"
        ) from None
    return raw


def option_fields(cls) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls)) if cls is not None else []


def describe_options(cls) -> list[dict]:
    """A JSON-able description of each option (name, type, default, help, choices)."""
    hints = _field_types(cls) if cls is not None else {}
    out = []
    for f in option_fields(cls):
        base, nullable = _base_type(hints[f.name])
        out.append(
            {
                "name": f.name,
                "type": getattr(base, "__name__", str(base)) + (" | None" if nullable else ""),
                "default": f.default if f.default is not dataclasses.MISSING else None,
                "help": f.metadata.get("help", ""),
                "choices": list(f.metadata["choices"]) if f.metadata.get("choices") else None,
            }
        )
    return out


def build_options(cls, values: dict[str, Any], owner: str = "plugin"):
    """Instantiate ``cls`` from ``values`` (strings or Python values), validating each one."""
    if cls is None:
        if values:
            raise OptionError(f"{owner} takes no options, got {', '.join(sorted(values))}")
        return None
    hints = _field_types(cls)
    fields = {f.name: f for f in option_fields(cls)}
    kwargs = {}
    for key, raw in values.items():
        if key not in fields:
            allowed = ", ".join(fields) or "(none)"
            raise OptionError(f"{owner} has no option {key!r}; its options are: {allowed}")
        value = _convert(key, raw, hints[key])
        choices = fields[key].metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise OptionError(
                f"option {key!r} of {owner} must be one of {', '.join(map(str, choices))}; "
                f"got {value!r}"
            )
        kwargs[key] = value
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"invalid options for {owner}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise OptionError(f"invalid options for {owner}: {exc}") from None
    return obj


def options_dict(obj) -> dict[str, Any]:
    """Plain dict of an options object (``{}`` for None)."""
    return dataclasses.asdict(obj) if obj is not None else {}


def canonical_json(value) -> str:
    """Compact JSON with sorted keys: how options are written into results rows (one form, so a
    row rewritten by ``uebench.migrate`` reads exactly as one the runner writes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def options_json(obj) -> str:
    """Canonical JSON of an options object — used in cache keys and results rows."""
    return canonical_json(options_dict(obj))


def applied_options(obj) -> dict[str, Any]:
    """The options of a *resolved* attack that apply: after ``resolve`` made every default
    concrete, an option still ``None`` does not apply to this run (``patch`` when crafting full
    images; attacks name such options in ``inapplicable_when_none``), so it enters neither the
    noise-cache key nor the row."""
    return {k: v for k, v in options_dict(obj).items() if v is not None}


def parse_assignments(pairs: typing.Iterable[str]) -> list[tuple[str, str]]:
    """Split ``key=value`` strings; raise OptionError naming a malformed one."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionError(f"malformed option {pair!r}: write key=value (e.g. -o form=class)")
        out.append((key, value.strip()))
    return out
