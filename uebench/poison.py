"""Noise + scope → the training set a data owner releases.

What a data owner publishes is 8-bit images.  The released set is therefore quantized once —
``round(255 · clamp(x + δ, 0, 1)) / 255``, as the official code does when it stores its poisoned
dataset as uint8 — and training reads those bytes.  Keeping δ in float (``quantize=False``) lets
sub-pixel noise (α = 0.8/255 steps) survive that a real release would round away; it stays
available to measure exactly that difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uebench.noise import Noise, apply_noise, to_unit_float

# Images poisoned per step: bounds the float copy (1024 CIFAR images ≈ 12 MB) whatever the set size.
CHUNK = 1024


def poison_mask(y: torch.Tensor, rate: float, generator: torch.Generator, classes: tuple[int, ...] = ()) -> torch.Tensor | None:
    """Which samples (labels ``y``) carry noise: those of ``classes`` (all when empty), of which
    ``round(rate · count)`` drawn with ``generator``; ``None`` when every sample does."""
    if rate >= 1 and not classes:
        return None
    y = y.cpu()
    candidates = torch.nonzero(torch.isin(y, torch.tensor(classes, dtype=y.dtype))).flatten() if classes else torch.arange(len(y))
    if rate < 1:
        candidates = candidates[torch.randperm(len(candidates), generator=generator)[: int(round(rate * len(candidates)))]]
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[candidates] = True
    return mask


def resolve_classes(wanted, classes: list[str] | tuple[str, ...]) -> tuple[int, ...]:
    """Class names or indices (``("bird", "3")``) → sorted indices; an unknown one raises
    :class:`OptionError` naming it, the closest names and every class."""
    import difflib

    from uebench.options import OptionError

    out = set()
    for item in wanted:
        text = str(item).strip()
        if text.isdigit() and int(text) < len(classes):
            out.add(int(text))
        elif text in classes:
            out.add(list(classes).index(text))
        else:
            close = difflib.get_close_matches(text, list(classes), n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            listing = ", ".join(f"{i}={c}" for i, c in enumerate(classes))
            raise OptionError(f"unknown class {text!r}.{hint} Classes (name or index): {listing}")
    return tuple(sorted(out))


def release(x: torch.Tensor, y: torch.Tensor, noise: Noise | None, mask: torch.Tensor | None = None,
            quantize: bool = True) -> torch.Tensor:
    """The released training images: ``x`` (uint8 N×C×H×W) with ``noise`` added where ``mask``
    (bool N, ``None`` = everywhere) says, as uint8 (``quantize``) or float32 in [0, 1]."""
    if noise is None or (mask is not None and not bool(mask.any())):
        return x.clone() if quantize else to_unit_float(x)
    out = torch.empty_like(x) if quantize else torch.empty(x.shape, dtype=torch.float32, device=x.device)
    mask = mask.to(x.device) if mask is not None else None
    for start in range(0, len(x), CHUNK):
        index = torch.arange(start, min(start + CHUNK, len(x)), device=x.device)
        delta = noise.for_batch(index, y[index])
        if mask is not None:
            delta = delta * mask[index].view(-1, 1, 1, 1).to(delta.dtype)
        poisoned = apply_noise(to_unit_float(x[index]), delta)
        out[index] = poisoned.mul_(255).round_().to(torch.uint8) if quantize else poisoned
    return out


@dataclass
class Released:
    """The training set a victim sees: ``images`` (uint8, or float with ``quantize=False``) with
    their ``labels``, and ``clean``, the same images without noise (what a defense that needs the
    originals reads, and the clean-remainder set when poisoned samples are dropped); ``poisoned``
    (bool, one per image; None = every image) which of ``images`` carry noise (what
    ``uebench.imperceptibility`` measures)."""

    images: torch.Tensor
    labels: torch.Tensor
    clean: torch.Tensor
    poisoned: torch.Tensor | None = None


def release_scope(x: torch.Tensor, y: torch.Tensor, noise: Noise | None, *, rate: float, classes: tuple[int, ...],
                  drop: bool, quantize: bool, generator: torch.Generator) -> Released:
    """The poison scope applied: the samples of ``classes`` (all when empty) drawn at ``rate`` with
    ``generator`` carry ``noise``; with ``drop`` they are left out instead and the victim trains on
    the clean remainder alone (the seed paper's Table 2)."""
    mask = poison_mask(y, rate, generator, classes) if noise is not None or drop else None
    if drop:
        keep = ~mask.to(x.device)
        if not bool(keep.any()):
            raise ValueError("--drop-poisoned left no training images")
        x, y = x[keep], y[keep]
    if drop or noise is None or rate <= 0:
        poisoned = torch.zeros(len(y), dtype=torch.bool)
    else:
        poisoned = mask
    return Released(release(x, y, noise if rate > 0 else None, mask, quantize), y, x, poisoned)
