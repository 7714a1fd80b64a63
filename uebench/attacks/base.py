"""Attacks: they craft the noise δ that makes a training set unlearnable (or a baseline's)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from uebench.noise import Noise
from uebench.progress import NULL_REPORTER, Reporter


@dataclass(kw_only=True)
class CraftContext:
    """Everything an attack may use.  ``x`` is the whole (protocol-sized) training set.

    Keyword-only (``CraftContext(x=..., y=..., ...)``), so a field added later breaks no plugin
    or test that builds one."""

    x: torch.Tensor  # uint8 N×C×H×W on ``device``
    y: torch.Tensor  # int64 N on ``device``
    num_classes: int
    eps: float
    seed: int
    device: torch.device
    precision: str
    channels_last: bool
    protocol: object  # uebench.protocols.Protocol
    build_model: Callable[[str], torch.nn.Module]  # victim name → fresh model on ``device``
    generator: torch.Generator
    reporter: Reporter = NULL_REPORTER
    train_index: torch.Tensor | None = None  # dataset indices of x's rows (int64 N, CPU); None = unknown
    cache_dir: Path | None = None  # where attacks cache their own artifacts (a clean-trained source model); None = default
    # (name, options, seed) → another attack's noise on this data, through the noise cache (the
    # runner sets it; None: composed attacks craft their parts directly)
    craft_other: Callable[[str, dict, int], Noise | None] | None = None
    # the data's digest and the numerics (``Cell.provenance``): part of every noise-cache key
    provenance: dict | None = None
    # the attack's options as ``Attack.resolve`` made them concrete, once, when the cell was
    # prepared (None: an attack called outside the runner resolves its own; ``Attack.resolved``)
    options: object = None
    # the plugin host of this run (its ``--plugins-dir`` plugins included): where a composed
    # attack looks its components up (None: the default host)
    host: object = None
    # whether training may mirror this dataset's images (``Dataset.hflip``; False for digits): an
    # attack that takes an expectation over the training augmentations flips only where it may
    hflip: bool = True


class Attack:
    """Base class of attack plugins.

    Subclasses set ``name``, declare ``Options`` (a dataclass; ``None`` fields are filled from
    the protocol and ε by ``resolve``) and implement ``craft``.  ``cacheable = False`` skips
    the noise cache (for attacks cheaper to redo than to store).  Bump ``revision`` whenever
    a change makes ``craft`` produce different noise for the same options: it is part of the
    noise-cache key, so noise cached by the old code is never served for the new.
    """

    name: str = ""
    Options = None
    cacheable: bool = True
    revision: int = 1
    # options that may stay None after ``resolve``: "does not apply to this run" (``patch`` when
    # crafting full images); such an option enters neither the noise-cache key nor the row
    inapplicable_when_none: tuple[str, ...] = ()

    def __init__(self, options=None):
        self.options = options if options is not None else (self.Options() if self.Options else None)

    def resolve(self, protocol, eps: float):
        """Return a copy of the options with every protocol- or ε-dependent default made concrete."""
        return replace(self.options) if self.options is not None else None

    def craft(self, ctx: CraftContext) -> Noise | None:
        """Return the noise for ``ctx.x`` (``None`` = clean data)."""
        raise NotImplementedError

    def resolved(self, ctx: CraftContext):
        """The options ``craft`` works with: those resolved once when the cell was prepared
        (``ctx.options``), or resolved now for a context built outside the runner."""
        return ctx.options if ctx.options is not None else self.resolve(ctx.protocol, ctx.eps)

    def check(self, resolved, host) -> None:
        """Raise (``OptionError``, ``UnknownNameError``) for resolved options that cannot work
        with this ``host``'s plugins — called when the cell is prepared, before any data is
        loaded.  The default accepts everything."""

    def input_files(self, resolved) -> dict[str, Path]:
        """Option name → the file or folder it names, for options that say *where* the attack
        reads its input.  The keys and the row hold ``sha256:<digest>`` of the content in their
        place (the path goes to the row's ``inputs`` column): a file changed in place is another
        cell, the same bytes under another name the same."""
        return {}

    def __repr__(self) -> str:
        from uebench.options import options_dict

        args = ", ".join(f"{k}={v!r}" for k, v in options_dict(self.options).items())
        return f"{type(self).__name__}({args})"
