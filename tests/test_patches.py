"""Patch noise (Table 5): crafted as a p×p patch, released pasted at a random place of each image."""

from __future__ import annotations

import pytest
import torch

from conftest import make_ctx
from uebench.attacks.patches import PatchPlacer, paste_everywhere
from uebench.options import OptionError, build_options
from uebench.plugins import get_host

EPS = 8 / 255


def test_place_and_take_round_trip_per_image():
    placer = PatchPlacer(3, 8, 8, torch.Generator().manual_seed(0))
    patches = torch.rand(16, 2, 3, 3, generator=torch.Generator().manual_seed(1)) + 0.1  # never zero
    full, where = placer.place(patches)
    assert full.shape == (16, 2, 8, 8)
    assert torch.equal(PatchPlacer.take(full, where), patches)
    nonzero = full.ne(0).any(1)
    assert bool((nonzero.flatten(1).sum(1) == 9).all())  # exactly one 3×3 square per image
    assert torch.equal(PatchPlacer.mask(full.shape, where, full.device)[:, 0].bool(), nonzero)
    corners = {tuple(torch.nonzero(nonzero[i])[0].tolist()) for i in range(16)}
    assert len(corners) > 4  # places differ from image to image
    with pytest.raises(ValueError, match="does not fit"):
        PatchPlacer(9, 8, 8, torch.Generator())


def test_paste_everywhere_uses_the_class_patch_for_class_noise():
    rows = torch.stack([torch.full((3, 2, 2), v) for v in (0.1, 0.2, 0.3)])
    labels = torch.tensor([0, 1, 2, 2, 1])
    full = paste_everywhere(rows, labels, "class", 6, 6, torch.Generator().manual_seed(0))
    for i, k in enumerate(labels.tolist()):
        values = full[i][full[i] != 0]
        assert len(values) == 12 and torch.allclose(values, torch.full_like(values, 0.1 * (k + 1)))


@pytest.mark.parametrize(("attack", "options"), [
    ("errmin-pgd", {"form": "class", "patch": "8", "max_iters": "1", "steps": "2"}),
    ("errmin-pgd", {"form": "sample", "patch": "8", "max_iters": "1", "steps": "2"}),
    ("random", {"form": "class", "patch": "8"}),
])
def test_patch_attacks_release_one_patch_per_image(attack, options):
    ctx = make_ctx(n_per_class=2)
    cls = get_host().attacks.get(attack).cls
    noise = cls(build_options(cls.Options, options)).craft(ctx)
    assert noise.form == "sample" and noise.delta.shape == ctx.x.shape
    assert noise.meta["patch"] == 8 and noise.meta["crafted_form"] == options["form"]
    assert noise.delta.abs().max() <= EPS + 1e-6
    changed = noise.delta.ne(0).any(1).flatten(1).sum(1)
    assert bool((changed <= 64).all()) and bool((changed > 32).all())  # an 8×8 patch (a few exact zeros allowed)
    if options["form"] == "class":  # every image of a class carries the same patch values
        for k in range(ctx.num_classes):
            members = noise.delta[ctx.y == k]
            sums = members.flatten(1).sum(1)
            assert torch.allclose(sums, sums[0].expand_as(sums), atol=1e-5)


def test_patch_must_be_positive():
    cls = get_host().attacks.get("errmin-pgd").cls
    with pytest.raises(OptionError, match="patch must be >= 1"):
        build_options(cls.Options, {"patch": "0"})
