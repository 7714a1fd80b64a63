"""The artifact between an attack and training: the noise δ, its metadata and how it is applied.

δ is stored in float32 on the [0, 1] pixel scale, either one tensor per training sample
(``form="sample"``, shape N×C×H×W) or one per class (``form="class"``, shape K×C×H×W).  It is
*added to float pixels in [0, 1] and the sum is clamped* — never clamped first and added
after, which would let poisoned pixels leave the valid range (a bug of the reference code).

Every noise says which budget it keeps (``norm``):

- ``"linf"`` (the default): |δ| ≤ ``eps``, the cell's ``--eps``.
- ``"l0"``: δ changes at most ``pixels`` pixel positions of each image (all channels of a
  position count once), by any amount the pixel range allows (OPS).
- ``"l2"``: each image's (or class's) δ has Euclidean norm ≤ ``radius`` over all its C×H×W
  values on the [0, 1] scale (LSP, AR).
- ``"transform"``: no Lp budget: δ = T(x) − x for a transform T of each image (CUDA's per-class
  convolution), so the released image is T(x); only |δ| ≤ 1 and finiteness are checked.

For every norm but ``linf`` the attack ignores ``--eps`` and ``eps`` records the largest |δ|
(≤ 1).  A noise file is checked against the budget it names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from uebench.atomic import atomic_write

FORMS = ("sample", "class")
NORMS = ("linf", "l0", "l2", "transform")


class NoiseFileError(ValueError):
    """A cached noise file is unreadable or does not match what was asked for."""


@dataclass
class Noise:
    delta: torch.Tensor  # float32, (N|K, C, H, W), |δ| <= eps
    form: str
    eps: float  # the L∞ budget (norm "linf"); the largest |δ| (every other norm)
    meta: dict = field(default_factory=dict)
    norm: str = "linf"  # one of NORMS
    pixels: int | None = None  # the L0 budget: pixel positions per image δ may change (norm "l0")
    radius: float | None = None  # the L2 budget: the largest ‖δ‖₂ of an image or class (norm "l2")

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"noise form must be one of {FORMS}, got {self.form!r}")
        if self.delta.dim() != 4:
            raise ValueError(f"noise must be 4-D (N|K, C, H, W), got shape {tuple(self.delta.shape)}")
        if self.norm not in NORMS:
            raise ValueError(f"noise norm must be one of {NORMS}, got {self.norm!r}")
        if (self.norm == "l0") != (self.pixels is not None) or (self.pixels is not None and self.pixels < 1):
            raise ValueError(f"an l0 noise names its budget as pixels >= 1, and only an l0 noise: "
                             f"got norm={self.norm!r}, pixels={self.pixels!r}")
        if (self.norm == "l2") != (self.radius is not None) or (self.radius is not None and not self.radius > 0):
            raise ValueError(f"an l2 noise names its budget as radius > 0, and only an l2 noise: "
                             f"got norm={self.norm!r}, radius={self.radius!r}")

    @property
    def budget_label(self) -> str:
        """The row's ``norm``: ``linf``, ``l0:<pixels>``, ``l2:<radius>`` or ``transform``."""
        if self.norm == "l0":
            return f"l0:{self.pixels}"
        if self.norm == "l2":
            return f"l2:{self.radius:g}"
        return self.norm

    def violation(self) -> str | None:
        """Why δ breaks the budget it names, or None (:func:`budget_violation`)."""
        return budget_violation(self.delta.detach(), self.eps, self.norm, self.pixels, self.radius)

    def for_batch(self, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """δ for the samples ``index`` with labels ``labels`` (class-wise noise is looked up by label)."""
        return self.delta[labels] if self.form == "class" else self.delta[index]

    def to(self, device) -> Noise:
        return Noise(self.delta.to(device), self.form, self.eps, dict(self.meta), self.norm, self.pixels, self.radius)


def budget_violation(delta: torch.Tensor, eps: float, norm: str = "linf", pixels: int | None = None,
                     radius: float | None = None) -> str | None:
    """Why ``delta`` breaks the budget it names, or None: finite, |δ| ≤ ``eps`` (+1e-6) and, for
    ``norm="l0"``, at most ``pixels`` changed pixel positions in each row (image or class); for
    ``norm="l2"``, each row's Euclidean norm ≤ ``radius`` (relative tolerance 1e-5)."""
    if not torch.isfinite(delta).all():
        return "values are not finite"
    if delta.numel() and delta.abs().max().item() > eps + 1e-6:
        return f"values exceed eps={eps:.5f}"
    if norm == "l0" and delta.numel():
        most = int(delta.ne(0).any(1).flatten(1).sum(1).max().item())
        if most > pixels:
            return f"an image has {most} changed pixel positions, more than its l0 budget of {pixels}"
    if norm == "l2" and delta.numel():
        largest = float(delta.flatten(1).double().norm(dim=1).max().item())
        if largest > radius * (1 + 1e-5) + 1e-7:
            return f"an image's L2 norm is {largest:.5f}, more than its l2 budget of {radius:g}"
    return None


def to_unit_float(x_uint8: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 pixels → float in [0, 1]."""
    return x_uint8.to(dtype).div(255.0)  # not in place: a float input must not be changed


def apply_noise(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Poison float pixels ``x`` in [0, 1]: add δ in float, *then* clamp to [0, 1]."""
    if x.dtype == torch.uint8:
        raise TypeError("apply_noise takes float pixels in [0, 1]; convert uint8 with to_unit_float first")
    return (x + delta.to(x.dtype)).clamp_(0.0, 1.0)


def save_noise(noise: Noise, path: Path) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written cache entry."""
    meta = dict(noise.meta, form=noise.form, eps=noise.eps, shape=list(noise.delta.shape), norm=noise.norm, pixels=noise.pixels,
                radius=noise.radius)
    payload = {"delta": noise.delta.detach().float().cpu().contiguous(), "meta": json.dumps(meta, sort_keys=True)}
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_noise(path: Path, expect: dict | None = None) -> Noise:
    """Read a noise file without unpickling code (``weights_only=True``) and validate it.

    ``expect`` maps metadata keys to the values they must have (e.g. the cache key); δ must be
    finite and inside the budget it names (its own ε-ball; for an l0 noise also its pixel
    count, for an l2 noise its radius; a file without a norm is linf).  Any mismatch raises :class:`NoiseFileError`.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        delta, meta = payload["delta"], json.loads(payload["meta"])
        form, eps = meta["form"], float(meta["eps"])
        norm, pixels, radius = meta.get("norm", "linf"), meta.get("pixels"), meta.get("radius")
        Noise(torch.zeros(0, 0, 0, 0), form, eps, norm=norm, pixels=pixels, radius=radius)  # form, norm, budget well-formed
    except Exception as exc:  # any corruption: truncated file, wrong format, missing keys
        raise NoiseFileError(f"cannot read noise file {path}: {exc}") from None
    if not isinstance(delta, torch.Tensor) or list(delta.shape) != meta.get("shape"):
        raise NoiseFileError(f"noise file {path}: tensor shape does not match its metadata")
    why = budget_violation(delta, eps, norm, pixels, radius)
    if why is not None:
        raise NoiseFileError(f"noise file {path}: {why}")
    for key, want in (expect or {}).items():
        if meta.get(key) != want:
            raise NoiseFileError(f"noise file {path}: {key}={meta.get(key)!r}, expected {want!r}")
    own = ("form", "eps", "shape", "norm", "pixels", "radius")
    return Noise(delta, form, eps, {k: v for k, v in meta.items() if k not in own}, norm, pixels, radius)
