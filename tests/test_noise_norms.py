"""The budgets a noise can name beyond L∞ and L0: ``l2`` (a radius per image or class; LSP, AR)
and ``transform`` (δ = T(x) − x, no Lp budget; CUDA) — checked when crafted, stored, read back."""

from __future__ import annotations

import pytest
import torch

from uebench.failures import InvalidNoiseError, check_crafted
from uebench.noise import Noise, NoiseFileError, budget_violation, load_noise, save_noise


def _l2_noise(radius: float, scale: float = 1.0) -> Noise:
    delta = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    delta = delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * radius * scale
    return Noise(delta, "class", float(delta.abs().max()), norm="l2", radius=radius)


def test_an_l2_noise_names_its_radius_and_is_held_to_it():
    inside, outside = _l2_noise(1.0), _l2_noise(1.0, scale=1.01)
    assert inside.violation() is None and inside.budget_label == "l2:1"
    assert "more than its l2 budget of 1" in outside.violation()
    with pytest.raises(ValueError, match="radius > 0"):
        Noise(inside.delta, "class", inside.eps, norm="l2")
    with pytest.raises(ValueError, match="only an l2 noise"):
        Noise(inside.delta, "class", inside.eps, radius=1.0)


def test_a_stored_l2_noise_keeps_its_radius_and_a_forged_one_is_refused(tmp_path):
    noise = _l2_noise(0.5)
    save_noise(noise, tmp_path / "n.pt")
    back = load_noise(tmp_path / "n.pt")
    assert (back.norm, back.radius) == ("l2", 0.5) and torch.equal(back.delta, noise.delta)
    save_noise(Noise(noise.delta * 1.1, "class", noise.eps * 1.1, norm="l2", radius=0.5), tmp_path / "big.pt")
    with pytest.raises(NoiseFileError, match="l2 budget"):
        load_noise(tmp_path / "big.pt")


def test_crafted_noise_is_refused_outside_its_norm():
    x, classes = torch.zeros(8, 3, 8, 8, dtype=torch.uint8), 4
    check_crafted(_l2_noise(1.0), "lsp", x, classes, 8 / 255)  # within radius; --eps does not bind an l2 noise
    with pytest.raises(InvalidNoiseError, match="l2 budget"):
        check_crafted(_l2_noise(1.0, scale=1.5), "lsp", x, classes, 8 / 255)
    transform = Noise(torch.full((8, 3, 8, 8), 0.7), "sample", 0.7, norm="transform")
    check_crafted(transform, "cuda", x, classes, 8 / 255)
    assert transform.budget_label == "transform"
    with pytest.raises(InvalidNoiseError, match="more than the pixel range"):
        check_crafted(Noise(torch.full((8, 3, 8, 8), 0.5), "sample", 1.5, norm="transform"), "cuda", x, classes, 8 / 255)
    assert budget_violation(torch.full((2, 3, 4, 4), float("nan")), 1.0, "transform") == "values are not finite"
