"""The artifact between an attack and training: the noise δ, its metadata and how it is applied.

δ is stored in float32 on the [0, 1] pixel scale, either one tensor per training sample
(``form="sample"``, shape N×C×H×W) or one per class (``form="class"``, shape K×C×H×W).  It is
*added to float pixels in [0, 1] and the sum is clamped* — never clamped first and added
after, which would let poisoned pixels leave the valid range (a bug of the reference code).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from uebench.atomic import atomic_write

FORMS = ("sample", "class")


class NoiseFileError(ValueError):
    """A cached noise file is unreadable or does not match what was asked for."""


@dataclass
class Noise:
    delta: torch.Tensor  # float32, (N|K, C, H, W), |δ| <= eps
    form: str
    eps: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"noise form must be one of {FORMS}, got {self.form!r}")
        if self.delta.dim() != 4:
            raise ValueError(f"noise must be 4-D (N|K, C, H, W), got shape {tuple(self.delta.shape)}")

    def for_batch(self, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """δ for the samples ``index`` with labels ``labels`` (class-wise noise is looked up by label)."""
        return self.delta[labels] if self.form == "class" else self.delta[index]

    def to(self, device) -> Noise:
        return Noise(self.delta.to(device), self.form, self.eps, dict(self.meta))


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
    meta = dict(noise.meta, form=noise.form, eps=noise.eps, shape=list(noise.delta.shape))
    payload = {"delta": noise.delta.detach().float().cpu().contiguous(), "meta": json.dumps(meta, sort_keys=True)}
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_noise(path: Path, expect: dict | None = None) -> Noise:
    """Read a noise file without unpickling code (``weights_only=True``) and validate it.

    ``expect`` maps metadata keys to the values they must have (e.g. the cache key); δ must be
    finite and inside its own ε-ball.  Any mismatch raises :class:`NoiseFileError`.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        delta, meta = payload["delta"], json.loads(payload["meta"])
        form, eps = meta["form"], float(meta["eps"])
    except Exception as exc:  # any corruption: truncated file, wrong format, missing keys
        raise NoiseFileError(f"cannot read noise file {path}: {exc}") from None
    if not isinstance(delta, torch.Tensor) or list(delta.shape) != meta.get("shape"):
        raise NoiseFileError(f"noise file {path}: tensor shape does not match its metadata")
    if not torch.isfinite(delta).all() or delta.abs().max().item() > eps + 1e-6:
        raise NoiseFileError(f"noise file {path}: values are not finite or exceed eps={eps:.5f}")
    for key, want in (expect or {}).items():
        if meta.get(key) != want:
            raise NoiseFileError(f"noise file {path}: {key}={meta.get(key)!r}, expected {want!r}")
    return Noise(delta, form, eps, {k: v for k, v in meta.items() if k not in ("form", "eps", "shape")})
