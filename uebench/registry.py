"""Named registries of plugin classes: kebab-case names, fnmatch listing, "did you mean"."""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")


class UnknownNameError(LookupError):
    """An unknown attack/defense/victim/dataset name; the message suggests and lists."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known) or '(none)'}."
        )


def natural_key(name: str):
    """Sort ``resnet18`` before ``resnet101`` (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    plugin: str  # which plugin registered it

    @property
    def summary(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @property
    def takes_argument(self) -> bool:
        return bool(getattr(self.cls, "takes_argument", False))


class Registry:
    """The classes of one kind (attack, defense, victim, dataset), keyed by name."""

    def __init__(self, kind: str, base: type):
        self.kind, self.base = kind, base
        self._entries: dict[str, Entry] = {}

    def add(self, cls: type, plugin: str = "?") -> Entry:
        """Register ``cls`` for ``plugin`` and return its entry; raise as :meth:`check` does.
        The same class added again is a no-op (its first plugin keeps the credit)."""
        self.check(cls, plugin)
        return self._entries.setdefault(cls.name, Entry(cls.name, cls, plugin))

    def check(self, cls: type, plugin: str = "?") -> None:
        """Raise ``ValueError`` (a name that is not kebab-case, or taken by another class) or
        ``TypeError`` (not a subclass of this kind's base) if ``cls`` cannot be added; change
        nothing.  The plugin host checks every class of a plugin before it adds any."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(
                f"{self.kind} {cls!r} needs a lowercase kebab-case `name` (e.g. 'errmin-pgd'), "
                f"got {name!r}"
            )
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{self.kind} {name!r} must subclass {self.base.__qualname__}")
        if name in self._entries and self._entries[name].cls is not cls:
            other = self._entries[name].plugin
            raise ValueError(f"{self.kind} {name!r} from {plugin} clashes with the one from {other}")

    def names(self) -> list[str]:
        return sorted(self._entries, key=natural_key)

    def list(self, pattern: str = "*") -> list[Entry]:
        return [self._entries[n] for n in self.names() if fnmatch.fnmatchcase(n, pattern)]

    def resolve(self, name: str) -> tuple[Entry, str | None]:
        """Return (entry, argument); ``timm:resnet18`` resolves to entry ``timm``, arg ``resnet18``."""
        if name in self._entries and not self._entries[name].takes_argument:
            return self._entries[name], None
        prefix, sep, arg = name.partition(":")
        entry = self._entries.get(prefix)
        if sep and entry is not None and entry.takes_argument and arg:
            return entry, arg
        raise UnknownNameError(self.kind, name, self._display_names())

    def get(self, name: str) -> Entry:
        return self.resolve(name)[0]

    def _display_names(self) -> list[str]:
        return [f"{n}:<name>" if self._entries[n].takes_argument else n for n in self.names()]

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except UnknownNameError:
            return False
        return True

    def __len__(self) -> int:
        return len(self._entries)
