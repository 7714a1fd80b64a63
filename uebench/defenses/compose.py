"""Which defenses compose, and the error for those that do not.

``--defense a --defense b`` applies ``a`` then ``b`` at every event (``prepare`` squeezes in
that order, ``augment`` transforms in that order).  Combinations that make no sense are
rejected before any work starts:

- ``none`` with anything: ``none`` *is* standard training, which every defense already includes;
- the same defense twice;
- two defenses that each replace the training loss (``adv-train`` and ``ueraser``: an
  adversarial-example loss and a max-over-augmentations loss cannot both be *the* loss);
- two of one ``group``: ``mixup`` and ``cutmix`` (group ``label-mixing``) each blend pairs of
  images and labels; stacking them blends up to four images per sample, a recipe no paper
  evaluates.

Anything else composes, e.g. ``jpeg`` + ``cutmix`` (squeeze once, then mix batches),
``early-stop`` + ``adv-train``, ``grayscale`` + ``autoaugment``.
"""

from __future__ import annotations

from collections import Counter

from uebench.options import OptionError

GROUP_REASONS = {
    "label-mixing": ("each blends pairs of images and their labels; stacked they blend up to four images per sample, "
                     "a recipe no paper evaluates"),
}


def check_composition(defenses) -> None:
    """Raise :class:`OptionError` naming the clash if ``defenses`` (in order) do not compose."""
    names = [d.name for d in defenses]
    if not names:
        raise OptionError("at least one defense is needed (`none` for standard training)")
    twice = [n for n, c in Counter(names).items() if c > 1]
    if twice:
        raise OptionError(f"defense {twice[0]!r} is listed {names.count(twice[0])} times; list each defense once")
    if "none" in names and len(names) > 1:
        others = ", ".join(n for n in names if n != "none")
        raise OptionError(f"`none` means standard training, which {others} already include; drop `--defense none`")
    owners = [d.name for d in defenses if d.replaces_loss()]
    if len(owners) > 1:
        raise OptionError(f"defenses {' and '.join(owners)} both replace the training loss; a cell can use only one of them")
    groups: dict[str, list[str]] = {}
    for d in defenses:
        if d.group:
            groups.setdefault(d.group, []).append(d.name)
    for group, members in groups.items():
        if len(members) > 1:
            why = GROUP_REASONS.get(group, f"they belong to the same group {group!r}")
            raise OptionError(f"defenses {' and '.join(members)} do not compose: {why}. Pick one")


def composed_name(names) -> str:
    """The row's ``defense`` value: names joined by ``+`` in application order (``jpeg+cutmix``)."""
    return "+".join(names)
