"""A results row → the ``uebench run …`` command that reproduces it.

A leaderboard entry is only as useful as the command that remakes it.  The row holds every
setting of its cell, but in resolved form (every default made concrete, ``8/255`` as a float);
typed back verbatim that would be a wall of ``-o`` options.  So the command names only what
differs from what ``uebench run`` would pick by itself: an option is written when the row's
value is not the one its component resolves to with no option given (at the row's protocol and
ε), and ``--victim``, ``--eps``, ``--threads``… only when they are not the defaults.  Run on the
same data, torch release and kind of device, the command plans a cell with the row's
``cell_key`` (``tests/test_run_command.py`` checks that for every committed row).
"""

from __future__ import annotations

import json
import shlex

from uebench.cellkey import is_missing
from uebench.options import OptionError, build_options, display_value, options_dict

DEFAULT_EPS = 8 / 255


def run_command(row: dict, host=None) -> str:
    """The shell command that reruns ``row``'s cell (``row``: a results row as a dict)."""
    return shlex.join(run_arguments(row, host))


def run_arguments(row: dict, host=None) -> list[str]:
    """:func:`run_command` as an argument list (``["uebench", "run", "--protocol", "cpu", …]``)."""
    from uebench.plugins import get_host
    from uebench.protocols import get_protocol

    host = host or get_host()
    protocol = get_protocol(str(row["protocol"])).for_dataset(str(row["dataset"]))
    eps = float(row["eps"])
    args = ["uebench", "run", "--protocol", protocol.name, "--dataset", str(row["dataset"]), "--attack", str(row["attack"])]

    attack_cls = host.attacks.get(str(row["attack"])).cls
    given = {k: v for k, v in _parsed(row.get("attack_options")).items() if v is not None}  # None: does not apply
    inputs = _parsed(row.get("inputs"))  # from-file: the row keys a file by its content; the command names the path
    given.update(inputs)
    attack_pairs = sorted(_fewest_options(attack_cls, given, dict(inputs), protocol, eps).items())

    defenses = [name for name in str(row["defense"]).split("+") if name]
    defense_pairs = []
    defense_options = _parsed(row.get("defense_options"))
    for name in defenses:
        cls = host.defenses.get(name).cls
        base = options_dict(build_options(cls.Options, {}, f"defense {name!r}"))
        defense_pairs += [(f"{name}.{k}", v) for k, v in sorted(defense_options.get(name, {}).items()) if base.get(k) != v]

    victim = str(row["victim"])
    victim_cls = host.victims.resolve(victim)[0].cls
    victim_base = options_dict(build_options(victim_cls.Options, {}, f"victim {victim!r}"))
    victim_pairs = [(f"victim.{k}", v) for k, v in sorted(_parsed(row.get("victim_options")).items())
                    if victim_base.get(k) != v]

    option_names = _declared(host, attack_cls, defenses, victim_cls)
    for key, value in attack_pairs:
        args += ["-o", f"{key if option_names.count(key) == 1 else 'attack.' + key}={_value(value)}"]
    for name in defenses:
        args += ["--defense", name]
    if not defenses:
        args += ["--defense", "none"]
    for key, value in defense_pairs + victim_pairs:
        args += ["-o", f"{key}={_value(value)}"]
    if victim != protocol.victim:
        args += ["--victim", victim]
    if abs(eps - DEFAULT_EPS) > 1e-12:
        args += ["--eps", display_value(eps)]
    if float(row.get("poison_rate", 1.0)) != 1.0:
        args += ["--poison-rate", f"{float(row['poison_rate']):g}"]
    if not is_missing(row.get("poison_classes")):
        args += ["--poison-classes", str(row["poison_classes"])]
    if _flag(row.get("drop_poisoned")):
        args.append("--drop-poisoned")
    if not _flag(row.get("quantized", True)):
        args.append("--float-noise")
    threads = row.get("threads")
    if str(row.get("device", "")).startswith("cpu") and not is_missing(threads) and int(float(threads)) != protocol.cpu_threads:
        args += ["--threads", str(int(float(threads)))]
    precision = str(row.get("precision", ""))
    if precision and precision != protocol.precision:  # the cpu protocols' auto is fp32; paper's depends on the device
        args += ["--precision", precision]
    return [*args, "--seed", str(int(row["seed"]))]


_ABSENT = object()


def _fewest_options(attack_cls, row_options: dict, chosen: dict, protocol, eps: float) -> dict:
    """The fewest of ``row_options`` that resolve to all of them: one option can set others'
    defaults (``form=class`` brings the protocol's class-wise batch size, M and iteration cap),
    so options are added one at a time, each time the one that leaves the fewest differences."""
    from uebench.craft.identity import identity_options

    def differing(options: dict) -> dict | None:
        """The row's options ``options`` does not resolve to; None where ``options`` alone is
        not a valid set (``class_subset`` without ``form=class``)."""
        try:
            attack = attack_cls(build_options(attack_cls.Options, options, f"attack {attack_cls.name!r}"))
            resolved = identity_options(attack, attack.resolve(protocol, eps))
        except OptionError:
            return None
        return {k: v for k, v in row_options.items() if k not in options and resolved.get(k, _ABSENT) != v}

    def left_after(key: str) -> float:
        rest = differing({**chosen, key: row_options[key]})
        return float("inf") if rest is None else len(rest)

    left = differing(chosen)
    while left:
        key = min(sorted(left), key=left_after)
        chosen[key] = row_options[key]
        left = differing(chosen)
    if left is None:
        raise OptionError(f"the options {row_options} of attack {attack_cls.name!r} are not a valid set today")
    return chosen


def _parsed(text) -> dict:
    if is_missing(text):
        return {}
    value = json.loads(text) if isinstance(text, str) else text
    return dict(value) if isinstance(value, dict) else {}


def _flag(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")


def _value(value) -> str:
    """An option value as ``-o`` reads it back (``8/255``, ``true``, ``0.5``, ``form``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return display_value(value)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _declared(host, attack_cls, defenses, victim_cls) -> list[str]:
    """Every option name the cell's components declare, once per component (a name that occurs
    twice needs its component's prefix on the command line)."""
    from uebench.options import option_fields

    classes = [attack_cls, *(host.defenses.get(n).cls for n in defenses), victim_cls]
    return [f.name for cls in classes for f in option_fields(cls.Options)]
