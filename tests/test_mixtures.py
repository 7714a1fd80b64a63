"""Mixtures (Table 5): Δc1 ∨ Δc2 and Δc1 + Δu, composed from class-wise components."""

from __future__ import annotations

import pytest
import torch

from conftest import json_out, make_ctx, require_data
from uebench.attacks.mixtures import component
from uebench.plugins import get_host

EPS = 8 / 255


def _craft(name, **options):
    ctx = make_ctx(n_per_class=3, num_classes=4)
    cls = get_host().attacks.get(name).cls
    return ctx, cls(cls.Options(**options)).craft(ctx)


def test_mix_or_gives_each_image_one_of_two_independent_class_noises():
    ctx, noise = _craft("mix-or", attack="random")
    first, second = component(ctx, "random", 0), component(ctx, "random", 1)
    assert not torch.equal(first, second)
    is_first = (noise.delta == first[ctx.y]).flatten(1).all(1)
    is_second = (noise.delta == second[ctx.y]).flatten(1).all(1)
    assert bool((is_first ^ is_second).all())  # each image: exactly one of the two
    assert bool(is_first.any()) and bool(is_second.any())
    assert noise.form == "sample" and noise.meta["component_seeds"] == [0, 1]


def test_mix_add_is_the_class_noise_plus_uniform_noise_clipped_to_eps():
    ctx, noise = _craft("mix-add", attack="random")
    base = component(ctx, "random", 0)[ctx.y]
    assert noise.delta.abs().max() <= EPS + 1e-7
    extra = noise.delta - base
    assert extra.abs().max() <= 2 * EPS and extra.std() > EPS / 4  # a per-image uniform part was added
    unclipped = noise.delta.abs() < EPS - 1e-6
    assert extra[unclipped].abs().max() <= EPS + 1e-6


def test_mixtures_need_a_class_wise_component():
    ctx = make_ctx(n_per_class=2)
    cls = get_host().attacks.get("mix-or").cls
    with pytest.raises(ValueError, match="class-wise component"):
        cls(cls.Options(attack="errmax-pgd")).craft(ctx)


@pytest.mark.slow
def test_mix_or_reuses_the_cached_components_of_other_cells(invoke, tmp_path):
    require_data()
    common = ("run", "--protocol", "smoke", "--json", "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    mixed = json_out(invoke(*common, "--attack", "mix-or", "-o", "attack=errmin-pgd"))
    assert mixed["attack"] == "mix-or" and mixed["noise_key"] == ""  # composed, not cached itself
    # the second component (seed 1) is the noise seed 1's errmin Δc cell uses: a cache hit there
    seed1 = json_out(invoke(*common, "--attack", "errmin-pgd", "-o", "form=class", "--seed", "1"))
    assert seed1["noise_cached"] is True
