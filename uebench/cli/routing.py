"""``-o key=value`` routing: the grammar of ``uebench run``'s options, and where each one goes."""

from __future__ import annotations

from uebench.options import OptionError, option_fields
from uebench.protocols import Protocol


def route_options(pairs: list[tuple[str, str]], host, attack: str, defenses, victim: str | None,
                  protocol: Protocol) -> tuple[dict, dict, dict]:
    """Send each ``-o key=value`` to the attack, the defense or the victim that declares ``key``.

    Returns (attack options, {defense name: options}, victim options).  A prefix addresses one
    component explicitly (needed when two declare the same name): ``attack.key``,
    ``victim.key``, ``<defense name>.key`` (``cutmix.alpha``), or ``defense.key`` when only one
    of the cell's defenses declares ``key``.
    """
    owners = {"attack": host.attacks.get(attack).cls}
    for name in defenses:
        owners[name] = host.defenses.get(name).cls
    owners["victim"] = host.victims.get(victim or protocol.victim).cls
    declared = {role: {f.name for f in option_fields(cls.Options)} for role, cls in owners.items()}
    kind = {role: role if role in ("attack", "victim") else "defense" for role in owners}
    routed = {role: {} for role in owners}

    def describe(role):
        return f"{kind[role]} {owners[role].name!r}"

    for key, value in pairs:
        prefix, dot, name = key.partition(".")
        if dot and prefix == "defense":
            holders = [r for r in owners if kind[r] == "defense" and name in declared[r]]
            if len(holders) != 1:
                listing = "; ".join(f"{describe(r)}: {', '.join(sorted(declared[r])) or '(none)'}"
                                    for r in owners if kind[r] == "defense")
                why = ("no defense of this cell declares it" if not holders
                       else f"{' and '.join(holders)} both declare it; write e.g. {holders[0]}.{name}=…")
                raise OptionError(f"option {name!r}: {why}. Defense options are — {listing}")
            routed[holders[0]][name] = value
            continue
        if dot and prefix in owners:
            if name not in declared[prefix]:
                allowed = ", ".join(sorted(declared[prefix])) or "(none)"
                raise OptionError(f"{describe(prefix)} has no option {name!r}; its options are: {allowed}")
            routed[prefix][name] = value
            continue
        roles = [r for r in owners if key in declared[r]]
        if not roles:
            listing = "; ".join(f"{describe(r)}: {', '.join(sorted(declared[r])) or '(none)'}" for r in owners)
            raise OptionError(f"no component declares option {key!r}. Options are — {listing}")
        if len(roles) > 1:
            raise OptionError(f"option {key!r} is declared by {' and '.join(roles)}; write e.g. {roles[0]}.{key}=…")
        routed[roles[0]][key] = value
    return routed["attack"], {r: routed[r] for r in owners if kind[r] == "defense"}, routed["victim"]
