"""Published numbers beside measured ones: ``leaderboards/reported.toml`` read, checked and matched.

RobustBench keeps one small record per entry and generates its board from them, "reported" beside
"measured".  uebench does the same: one ``[[reported]]`` record per number a paper publishes
(the file's header lists the fields), and this module is the only reader of that file.

A record names a configuration the way ``uebench run`` does (attack and the ``-o`` options that
define it, defense, victim, dataset, protocol, scope, ε).  It *matches* a results row when the
row is that configuration, by the leaderboard's own notion of one: the fields a row's config key
hashes (``uebench.cellkey.identity``) less the data digest and the numerics, which no paper
states, with the attack's and defense's options read as the tables read them
(:func:`uebench.stats.parse_options`) and compared with what the record's options resolve to
(``Attack.resolve`` at the row's protocol, dataset and ε, as ``uebench run`` resolves them).  So
``errmin-pgd {form = "class"}`` never matches a row that adds ``patch = 8`` or was crafted with
another M, and a record at the ``paper`` scale is never measured by ``cpu`` rows: those are
shown only as *another scale* (:attr:`Comparison.other_scales`).  Every statistic comes from
:func:`uebench.stats.cell_stats`.

Reading is cheap (TOML, structure checked); checking names (``check_names``) and matching load
the plugin host, lazily, so importing this module stays light.

    reported = Reported.load("leaderboards/reported.toml")
    reported.for_cell("paper", "cifar10", "resnet18", key, row)   # the record a table cell shows
    reported.comparison(labelled(current_version(frame)))          # every record, measured or not
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from uebench.options import OptionError, parse_fraction
from uebench.stats import cell_stats, current_version, labelled, parse_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FILE_NAME = "reported.toml"  # beside the protocols' folders: ``leaderboards/reported.toml``
DEFAULT_EPS = 8 / 255

REQUIRED = ("source", "value", "dataset", "victim", "protocol", "attack")
TEXT = ("source", "url", "published_as", "dataset", "victim", "protocol", "attack", "defense", "poison_classes", "note",
        "via", "unmatched", "plugin")
TABLES = ("options", "defense_options")
FIELDS = (*REQUIRED, "url", "published_as", "options", "defense", "defense_options", "poison_rate", "poison_classes",
          "drop_poisoned", "eps", "note", "via", "unmatched", "plugin")
VIA = ("from-file",)
# the row fields (``uebench.cellkey.identity``) a record states besides protocol, victim and options
SAME = ("dataset", "attack", "eps", "poison_rate", "poison_classes", "drop_poisoned", "quantized")


class ReportedError(OptionError):
    """A ``reported.toml`` that cannot be read, or a record in it that is not valid (exit code 2)."""


@dataclass(frozen=True)
class Published:
    """One published number and the configuration it was measured on."""

    index: int  # 1-based position in the file: error messages and the tie-break name it
    source: str  # paper and table: "Huang et al. 2021, Table 1"
    value: float  # clean test accuracy (%) as published
    dataset: str
    victim: str
    protocol: str  # the scale it was measured at ("paper": full data, GPU)
    attack: str
    options: dict = field(default_factory=dict)  # the -o options that define the attack
    defense: str = "none"
    defense_options: dict = field(default_factory=dict)
    poison_rate: float = 1.0
    poison_classes: str = ""
    drop_poisoned: bool = False
    eps: float = DEFAULT_EPS
    url: str = ""
    published_as: str = ""  # the entry's name in the source ("Δc · RN-18 · C10 Du")
    note: str = ""
    via: str = ""  # "from-file": uebench has no such attack; its released poison goes through from-file
    unmatched: str = ""  # why uebench cannot measure this number
    plugin: str = ""  # the plugin package the attack comes from

    @property
    def scope(self) -> tuple[float, str, bool]:
        """(poison_rate, poison_classes, drop_poisoned): the last three fields of a table's group key."""
        return (self.poison_rate, self.poison_classes, self.drop_poisoned)

    @property
    def matchable(self) -> bool:
        """False for a number uebench cannot measure (``via``, ``unmatched``): never matched."""
        return not (self.via or self.unmatched)

    @property
    def why_unmatched(self) -> str:
        """Why no row can ever be this record's configuration ("" for a matchable record)."""
        if self.via:
            return f"uebench has no {self.attack!r} attack; its released poison can be evaluated with --attack {self.via}"
        return self.unmatched

    @property
    def where(self) -> str:
        """``record 12 (Huang et al. 2021, Table 1: Δs · RN-18 · C10 Du)``: how messages name it."""
        return f"record {self.index} ({self.source}" + (f": {self.published_as}" if self.published_as else "") + ")"

    @property
    def configuration(self) -> str:
        """``errmin-pgd form=class × cutmix · resnet18 · cifar10 · paper`` (+ scope, ε where not the defaults)."""
        attack = self.attack + "".join(f" {k}={v}" for k, v in sorted(self.options.items()))
        defense = self.defense + "".join(f" {k}={v}" for k, v in sorted(self.defense_options.items()))
        text = f"{attack} × {defense} · {self.victim} · {self.dataset} · {self.protocol}"
        if self.poison_rate != 1.0 or self.poison_classes:
            text += f" · poison rate {self.poison_rate:g}" + (f" of {self.poison_classes}" if self.poison_classes else "")
        if self.drop_poisoned:
            text += " · poisoned samples dropped"
        if abs(self.eps - DEFAULT_EPS) > 1e-12:
            text += f" · eps {self.eps * 255:.4g}/255"
        return text


@dataclass(frozen=True)
class Measured:
    """The statistics of one leaderboard cell (``uebench.stats.cell_stats``) that a record matched."""

    protocol: str
    victim: str
    label: str  # the attack label as the board shows it
    defense: str  # the defense column as the board shows it
    mean: float
    sd: float
    n: int
    ci_low: float
    ci_high: float

    @property
    def text(self) -> str:
        """``23.44 ± 5.21 (n=5; CI 17.0–29.9)``: as the markdown board writes a cell."""
        from uebench.leaderboard import cell_text

        return cell_text({"mean": self.mean, "sd": self.sd, "n": self.n, "ci_low": self.ci_low, "ci_high": self.ci_high})


@dataclass(frozen=True)
class Comparison:
    """A record beside what uebench measured: at the record's own scale (``measured``: its
    protocol and victim) and, clearly apart, the same configuration at other scales."""

    record: Published
    measured: tuple[Measured, ...]  # empty: not measured at this scale yet (several: other numerics / data)
    other_scales: tuple[Measured, ...]  # the same configuration under other protocols — not the published scale

    @property
    def text(self) -> str:
        """``published 16.42 (Huang et al. 2021, Table 1; resnet18, paper) · not measured at this
        scale yet · at the cpu scale (cnn-small): 23.44 ± 5.21 (n=5; CI 17.0–29.9)``."""
        r = self.record
        parts = [f"published {r.value:.2f} ({r.source}; {r.victim}, {r.protocol})"]
        if not r.matchable:
            return " · ".join([*parts, f"uebench cannot measure this: {r.why_unmatched}"])
        parts += [f"measured {m.text}" for m in self.measured] or ["not measured at this scale yet"]
        parts += [f"at the {m.protocol} scale ({m.victim}): {m.text}" for m in self.other_scales]
        return " · ".join(parts)


@dataclass(frozen=True)
class Reported:
    """The records of one ``reported.toml``, and their matching to results rows."""

    records: tuple[Published, ...]
    path: str = ""

    @classmethod
    def load(cls, path, check_names: bool = True, host=None) -> Reported:
        """Read and check ``path`` (see :func:`load`)."""
        return cls(tuple(load(path, check_names=check_names, host=host)), str(path))

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def matches(self, protocol: str, dataset: str, victim: str, key, row, host=None) -> tuple[Published, ...]:
        """Every record whose configuration is ``row``'s at ``protocol`` / ``dataset`` / ``victim``
        and the scope of ``key`` (a table's group key, ``uebench.stats.GROUP``: dataset, victim,
        poison_rate, poison_classes, drop_poisoned; None: the row's own).  ``row``: a results row
        (dict or Series; labelled or not), any of the cell's rows: a cell is one configuration.
        Only records of ``protocol``: a row of another scale never measures a published number."""
        fields = {**_as_dict(row), "protocol": protocol, "dataset": dataset, "victim": victim}
        if key is not None:
            fields.update(zip(("poison_rate", "poison_classes", "drop_poisoned"), tuple(key)[-3:], strict=True))
        return tuple(r for r in self.records if _fits(r, fields, (r.victim,), host))

    def for_cell(self, protocol: str, dataset: str, victim: str, key, row, host=None) -> Published | None:
        """The record a table cell shows beside its measurement, or None: of :meth:`matches`, the
        value published most often (ties: the first in the file)."""
        return most_reported(self.matches(protocol, dataset, victim, key, row, host))

    def find(self, attack: str, options: dict | None = None, defense: str = "none", *, dataset: str = "cifar10",
             victim: str = "resnet18", protocol: str = "paper", source: str = "", poison_rate: float = 1.0,
             poison_classes: str = "", drop_poisoned: bool = False, eps: float = DEFAULT_EPS) -> Published | None:
        """The record of a configuration named by the records' own fields (no rows, no plugins),
        from sources starting with ``source``: what a sentence quoting a paper needs."""
        found = [r for r in self.records
                 if r.source.startswith(source) and r.attack == attack and r.options == (options or {})
                 and r.defense == defense and not r.defense_options and r.dataset == dataset and r.victim == victim
                 and r.protocol == protocol and r.scope == (poison_rate, poison_classes, drop_poisoned)
                 and _same_eps(r.eps, eps)]
        return most_reported(found)

    def comparison(self, frame: pd.DataFrame, host=None) -> list[Comparison]:
        """Every record beside what ``frame`` measured (rows of one or several protocols, as
        ``labelled(current_version(...))`` gives them; a raw frame is labelled here): at the
        record's own protocol and victim (``measured``), and under every other protocol, with
        the record's victim or that protocol's own (``other_scales``: another scale)."""
        if len(frame) and "attack_label" not in frame:
            frame = labelled(current_version(frame))
        rows = frame.to_dict("records") if len(frame) else []
        out = []
        for record in self.records:
            here, elsewhere = [], []
            for i, row in enumerate(rows):
                if not record.matchable or str(row.get("attack")) != record.attack:
                    continue
                if _fits(record, row, (record.victim,), host):
                    here.append(i)
                elif _fits(record, row, (record.victim, _protocol_victim(str(row.get("protocol")))), host, other_scale=True):
                    elsewhere.append(i)
            out.append(Comparison(record, _measured(frame, here), _measured(frame, elsewhere)))
        return out


def load(path, check_names: bool = True, host=None) -> list[Published]:
    """The records of ``path``, each checked: unknown keys, a missing field, a value that is not a
    number, a scope out of range → :class:`ReportedError` naming the record.  ``check_names`` also
    checks every name against the plugin registry (attack, defense, victim, dataset, protocol) and
    builds and resolves the options as ``uebench run`` would (an unknown or mistyped option is an
    error); ``via``/``unmatched`` records skip what they say uebench does not have."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ReportedError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ReportedError(f"{path}: not valid TOML: {exc}") from None
    stray = sorted(set(data) - {"reported"})
    if stray:
        raise ReportedError(f"{path}: unknown top-level key(s) {', '.join(map(repr, stray))}; records are [[reported]] tables")
    entries = data.get("reported", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ReportedError(f"{path}: `reported` must be [[reported]] tables")
    records = [_record(entry, i, path) for i, entry in enumerate(entries, start=1)]
    if check_names:
        for record in records:
            check(record, path, host)
    return records


def read(root, check_names: bool = True) -> Reported | None:
    """``<root>/reported.toml`` (``uebench leaderboard build``'s root), checked, or None where it
    has none."""
    path = Path(root) / FILE_NAME
    return Reported.load(path, check_names=check_names) if path.is_file() else None


def most_reported(records) -> Published | None:
    """Of records matching one configuration, the one whose value is published most often
    (ties: the first in the file); None for none."""
    records = sorted(records, key=lambda r: r.index)
    if not records:
        return None
    counts = Counter(r.value for r in records)
    return max(records, key=lambda r: (counts[r.value], -r.index))


def check(record: Published, path="reported.toml", host=None) -> None:
    """Raise :class:`ReportedError` unless every name of ``record`` is registered and its options
    build and resolve (at its protocol, dataset and ε) as ``uebench run`` would build them."""
    from uebench.protocols import PROTOCOLS
    from uebench.registry import UnknownNameError

    host = host or _host()
    at = f"{path}: {record.where}"
    if record.protocol not in PROTOCOLS:
        raise ReportedError(f"{at}: unknown protocol {record.protocol!r}; known: {', '.join(PROTOCOLS)}")
    try:
        host.datasets.get(record.dataset)
        host.victims.resolve(record.victim)
        if record.via:
            if record.attack in host.attacks:
                raise ReportedError(f"{at}: via = {record.via!r}, but uebench has attack {record.attack!r}: "
                                    "name its options instead")
        elif record.plugin and record.attack not in host.attacks:
            pass  # the plugin package is not installed here: the record stays unmatched
        else:
            _resolved_attack(record, record.protocol, host)
        if not (record.unmatched and record.defense not in host.defenses):
            _resolved_defense(record, host)
    except ReportedError:
        raise
    except UnknownNameError as exc:
        hint = " (a number uebench cannot measure: say why with unmatched = \"...\", or via = \"from-file\")"
        raise ReportedError(f"{at}: {exc}{hint}") from None
    except OptionError as exc:
        raise ReportedError(f"{at}: {exc}") from None


def resolved_options(attack: str, options: dict, protocol: str, dataset: str, eps: float = DEFAULT_EPS, host=None) -> dict:
    """The options a row of ``attack -o options`` holds at ``protocol`` / ``dataset`` / ``eps``:
    built and resolved as ``uebench run`` does, without the ones that do not apply (None)."""
    return json.loads(_resolved_json(attack, json.dumps(options, sort_keys=True), protocol, dataset, float(eps),
                                     host or _host()))


# --- reading -------------------------------------------------------------------------------------


def _record(entry: dict, index: int, path: Path) -> Published:
    name = entry.get("source") if isinstance(entry.get("source"), str) else "no source"
    at = f"{path}: record {index} ({name})"
    stray = sorted(set(entry) - set(FIELDS))
    if stray:
        raise ReportedError(f"{at}: unknown key(s) {', '.join(map(repr, stray))}; allowed: {', '.join(FIELDS)}")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise ReportedError(f"{at}: missing {', '.join(missing)}")
    for key in TEXT:
        if key in entry and not isinstance(entry[key], str):
            raise ReportedError(f"{at}: {key} must be text, got {entry[key]!r}")
    for key in TABLES:
        if key in entry and not isinstance(entry[key], dict):
            raise ReportedError(f"{at}: {key} must be a table ({key} = {{key = value}}), got {entry[key]!r}")
    for key in ("source", "dataset", "victim", "protocol", "attack"):
        if not entry[key].strip():
            raise ReportedError(f"{at}: {key} is empty")
    value = entry["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 100:
        raise ReportedError(f"{at}: value must be a number of percent in [0, 100] (value = 16.42), got {value!r}")
    rate = entry.get("poison_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ReportedError(f"{at}: poison_rate must be a number in [0, 1], got {rate!r}")
    drop = entry.get("drop_poisoned", False)
    if not isinstance(drop, bool):
        raise ReportedError(f"{at}: drop_poisoned must be true or false, got {drop!r}")
    eps = entry.get("eps", DEFAULT_EPS)
    try:
        eps = parse_fraction(eps, "eps") if isinstance(eps, (str, int, float)) and not isinstance(eps, bool) else None
    except OptionError:
        eps = None
    if eps is None or not 0 < eps <= 1:
        raise ReportedError(f"{at}: eps must be in (0, 1], a number or text such as \"16/255\", got {entry.get('eps')!r}")
    via = entry.get("via", "")
    if via and via not in VIA:
        raise ReportedError(f"{at}: via must be one of {', '.join(VIA)}, got {via!r}")
    defense = entry.get("defense", "none")
    options = dict(entry.get("defense_options", {}))
    if "+" in defense and options and not all(isinstance(v, dict) for v in options.values()):
        raise ReportedError(f"{at}: a composed defense takes defense_options by name ({{jpeg = {{quality = 10}}}})")
    return Published(index=index, source=entry["source"], value=float(value), dataset=entry["dataset"],
                     victim=entry["victim"], protocol=entry["protocol"], attack=entry["attack"],
                     options=dict(entry.get("options", {})), defense=defense, defense_options=options,
                     poison_rate=float(rate), poison_classes=entry.get("poison_classes", ""), drop_poisoned=drop, eps=eps,
                     url=entry.get("url", ""), published_as=entry.get("published_as", ""), note=entry.get("note", ""),
                     via=via, unmatched=entry.get("unmatched", ""), plugin=entry.get("plugin", ""))


# --- matching --------------------------------------------------------------------------------------


def _host():
    from uebench.plugins import get_host

    return get_host()


def _protocol_victim(name: str) -> str | None:
    from uebench.protocols import PROTOCOLS

    return PROTOCOLS[name].victim if name in PROTOCOLS else None


def _fits(record: Published, row: dict, victims: tuple, host, other_scale: bool = False) -> bool:
    """Whether ``row`` is ``record``'s configuration with one of ``victims`` — at the record's
    protocol, or (``other_scale``) at the row's other protocol, the record's options resolved
    there.  The fields compared are a row's identity (``uebench.cellkey.identity``: what its
    config key hashes) less the data and the numerics, which no paper states: protocol, dataset,
    attack, ε (not for the clean attack "none": it shapes no clean run), scope, release; the
    victim at its default options; the attack's and defense's options as the leaderboard reads
    them (``uebench.stats.parse_options``) against what the record's options resolve to."""
    from uebench.cellkey import identity

    protocol = str(row.get("protocol"))
    if not record.matchable or (protocol != record.protocol) != other_scale:
        return False
    if row.get("attack") != record.attack or row.get("victim") not in victims:
        return False
    if _defense_name(row.get("defense")) != record.defense:
        return False
    fields = tuple(f for f in SAME if f != "eps" or record.attack != "none")
    expected = {"dataset": record.dataset, "attack": record.attack, "eps": record.eps, "poison_rate": record.poison_rate,
                "poison_classes": record.poison_classes, "drop_poisoned": record.drop_poisoned, "quantized": True}
    if identity(row, fields) != identity(expected, fields):
        return False
    try:
        host = host or _host()
        if parse_options(row.get("victim_options")) != _default_victim_options(str(row["victim"]), host):
            return False
        if parse_options(row.get("defense_options")) != _resolved_defense(record, host):
            return False
        return parse_options(row.get("attack_options")) == _resolved_attack(record, protocol, host)
    except (LookupError, OptionError):  # a plugin not installed here, a protocol it does not know
        return False


def _resolved_attack(record: Published, protocol: str, host) -> dict:
    from uebench.protocols import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise LookupError(protocol)
    return json.loads(_resolved_json(record.attack, json.dumps(record.options, sort_keys=True), protocol, record.dataset,
                                     record.eps, host))


@functools.lru_cache(maxsize=1024)
def _resolved_json(attack: str, options: str, protocol: str, dataset: str, eps: float, host) -> str:
    """``attack -o options`` resolved at the protocol (with its per-dataset numbers) and ε, as the
    row's ``attack_options`` would hold it (``uebench.record.planned_row``), read back as
    :func:`uebench.stats.parse_options` reads a row's."""
    from uebench.options import applied_options, build_options, canonical_json
    from uebench.protocols import get_protocol

    cls = host.attacks.get(attack).cls
    instance = cls(build_options(cls.Options, json.loads(options), f"attack {attack!r}"))
    resolved = instance.resolve(get_protocol(protocol).for_dataset(dataset), eps)
    instance.check(resolved, host)
    return json.dumps(parse_options(canonical_json(applied_options(resolved))), sort_keys=True)


def _resolved_defense(record: Published, host) -> dict:
    """The record's defense options as a row's ``defense_options`` reads (``parse_options``)."""
    from uebench.options import build_options, canonical_json, options_dict

    names = [n for n in record.defense.split("+") if n]
    single = len(names) == 1
    nested = {}
    for name in names:
        cls = host.defenses.get(name).cls
        given = record.defense_options if single else record.defense_options.get(name, {})
        nested[name] = options_dict(build_options(cls.Options, given, f"defense {name!r}"))
    stray = set(record.defense_options) - set(names) if not single else set()
    if stray:
        raise OptionError(f"defense options for {', '.join(sorted(stray))}, which the record does not use")
    return parse_options(canonical_json(nested))


def _default_victim_options(victim: str, host) -> dict:
    from uebench.options import build_options, canonical_json, options_dict

    entry, _ = host.victims.resolve(victim)
    return parse_options(canonical_json(options_dict(build_options(entry.cls.Options, {}, f"victim {victim!r}"))))


def _measured(frame: pd.DataFrame, positions: list[int]) -> tuple[Measured, ...]:
    """The cells (``cell_stats``) of the rows at ``positions``, per protocol and victim."""
    if not positions:
        return ()
    rows = frame.iloc[positions]
    out = []
    for (protocol, victim), part in rows.groupby(["protocol", "victim"], sort=True):
        stats = cell_stats(part)
        for (label, defense), s in stats.iterrows():
            out.append(Measured(str(protocol), str(victim), str(label), str(defense), float(s["mean"]), float(s["sd"]),
                                int(s["n"]), float(s["ci_low"]), float(s["ci_high"])))
    return tuple(out)


def _as_dict(row) -> dict:
    return dict(row.items()) if hasattr(row, "items") else dict(row)


def _defense_name(value) -> str:
    """A row's defense without the brackets ``labelled`` appends to tell variants apart
    (``early-stop [clean_val=True]`` → ``early-stop``)."""
    return _text(value).split(" [", 1)[0] or "none"


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _same_eps(a, b) -> bool:
    """ε as rows hold it (a float of ``k/255``), equal as ``uebench.cellkey.identity`` rounds it."""
    return round(float(a), 10) == round(float(b), 10)


__all__ = ["FILE_NAME", "Comparison", "Measured", "Published", "Reported", "ReportedError", "check", "load",
           "most_reported", "read", "resolved_options"]
