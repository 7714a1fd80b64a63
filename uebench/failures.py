"""Why a cell could not finish when the input was fine: a plugin raised or returned something
unusable, or training diverged.

These are not bad input (exit 2, caught before any work) and not uebench bugs (a traceback): the
CLI prints the one-paragraph message and exits 1, a sweep records the failed cell and goes on with
the others, and nothing of the failed cell is written (no results row, no cached noise), so a
rerun retries exactly it.  ``UEBENCH_DEBUG=1`` shows the original traceback.
"""

from __future__ import annotations

import torch

from uebench.noise import Noise, budget_violation

DEBUG_HINT = "set UEBENCH_DEBUG=1 to see the traceback"


class CellFailure(RuntimeError):
    """A cell stopped for a reason that names the component responsible."""


class ComponentError(CellFailure):
    """An attack, defense or victim raised while it worked."""

    @classmethod
    def wrap(cls, where: str, exc: BaseException) -> ComponentError:
        """``where``: who was doing what, e.g. "attack 'x' (crafting)"; raise it ``from exc``."""
        return cls(f"{where} raised {type(exc).__name__}: {exc} ({DEBUG_HINT})")


class InvalidNoiseError(CellFailure):
    """An attack returned noise that does not fit the training set or breaks its budget."""


class TrainingDiverged(CellFailure):
    """The training loss stopped being a finite number."""


def check_crafted(noise: Noise | None, attack_name: str, x: torch.Tensor, num_classes: int, eps: float) -> None:
    """Refuse noise an attack returned that cannot be what it claims: not a :class:`Noise`, a shape
    that does not match the training set (sample-wise: one δ per image; class-wise: one per class),
    values that are not finite or leave the ε ball (an L∞ attack must also not claim a larger ε)."""
    where = f"attack {attack_name!r} returned"
    if noise is None:
        return
    if not isinstance(noise, Noise):
        raise InvalidNoiseError(f"{where} a {type(noise).__name__}, not a uebench.noise.Noise")
    rows = len(x) if noise.form == "sample" else num_classes
    want = (rows, *x.shape[1:])
    if tuple(noise.delta.shape) != want:
        raise InvalidNoiseError(
            f"{where} {noise.form}-wise noise of shape {tuple(noise.delta.shape)}; this training set needs {want} "
            f"({'one δ per training image' if noise.form == 'sample' else 'one δ per class'})"
        )
    if noise.norm == "linf" and noise.eps > eps + 1e-9:
        raise InvalidNoiseError(f"{where} noise labelled eps={noise.eps:.5f}, more than the cell's eps={eps:.5f}")
    if noise.norm != "linf" and noise.eps > 1 + 1e-6:
        raise InvalidNoiseError(f"{where} {noise.norm} noise whose largest |δ| is labelled {noise.eps:.5f}, "
                                f"more than the pixel range")
    bound = eps if noise.norm == "linf" else noise.eps
    why = budget_violation(noise.delta.detach(), bound, noise.norm, noise.pixels, noise.radius)
    if why:
        raise InvalidNoiseError(f"{where} unusable noise: {why}")
