"""``none``: standard training (random crop + flip, which every defense also gets)."""

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl


class NoDefense(Defense):
    """No defense: standard augmentation (random crop with 4-pixel padding + horizontal flip) only."""

    name = "none"


@hookimpl
def register_defenses(register):
    register(NoDefense)
