"""rem (Fu et al., ICLR 2022): robust error-minimizing noise — δ_u minimizes the source's loss
*after* an inner max over δ_a (‖δ_a‖∞ ≤ ρ), in expectation over crop + flip, while the source
trains adversarially.  What defines it, on tiny synthetic tasks:

* the crafted δ_u keeps the source's loss low under a fresh, stronger ρ-attack than any it was
  crafted with — far below the loss the same attack reaches on the clean images;
* the inner max is a max (it raises the loss, within ρ), δ_u's step descends the loss *at the
  inner max's point* (Danskin), and θ's SGD steps train on adversarial examples;
* ``rho=0, augment=none, samples=1`` is errmin-pgd, byte for byte; same seed → same bytes.

Not asserted: that δ_u also beats errmin-pgd's δ under the same attack on one fixed source.  On
these tasks the two solvers' δ share 85-90% of their signs and neither robust loss is reliably the
lower (measured over seeds while writing this file) — REM's strength comes mostly from its
adversarially trained source, as Liu et al. (2023, "Stable Unlearnable Example") also report.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_minmin_effect import stripes

from conftest import make_ctx
from uebench.attacks.base import CraftContext
from uebench.attacks.errmin_pgd import ErrMinPGD
from uebench.attacks.rem import REM, RemCrafter
from uebench.craft.solvers import MinMinCrafter, pgd
from uebench.noise import apply_noise, to_unit_float
from uebench.options import OptionError, applied_options, build_options
from uebench.plugins import get_host
from uebench.protocols import get_protocol

EPS, RHO = 8 / 255, 4 / 255
CPU = torch.device("cpu")


def _resolved(protocol="smoke", eps=EPS, **values):
    return REM(build_options(REM.Options, values)).resolve(get_protocol(protocol), eps)


def _stripes_ctx(n_per_class=16, seed=0) -> CraftContext:
    """The 4-class stripes task of ``test_minmin_effect`` (learnable by ``cnn-small`` in a few steps)."""
    x, y = stripes(n_per_class, seed=seed)

    def build(name):
        entry, arg = get_host().victims.resolve(name)
        torch.manual_seed(seed)
        return entry.cls(None, arg).build(4, (3, 32, 32))

    return CraftContext(x=x, y=y, num_classes=4, eps=EPS, seed=seed, device=CPU, precision="fp32", channels_last=False,
                        protocol=get_protocol("smoke"), build_model=build, generator=torch.Generator().manual_seed(seed))


def _loss(model, x, y) -> float:
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def _attacked_loss(model, x, y, rho=RHO, steps=20, seed=123) -> float:
    """The loss after a fresh L∞ PGD attack of radius ρ on ``x`` (random start, ``steps`` of ρ/4:
    more and finer steps than rem's inner max crafts with)."""
    start = (torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * rho
    delta_a = pgd(model, x, y, start, rho, rho / 4, steps, descend=False, device=CPU)
    return _loss(model, apply_noise(x, delta_a), y)


def _trained_crafter(**values) -> tuple[RemCrafter, CraftContext]:
    """A crafter on the stripes task whose (adversarially trained) source has taken 20 SGD steps."""
    ctx = _stripes_ctx(n_per_class=8)
    o = _resolved(source="cnn-small", model_steps=20, batch_size=16, **values)
    crafter = RemCrafter(o, ctx)
    crafter.model_steps()
    crafter.freeze()
    return crafter, ctx


# --- the defining property ------------------------------------------------------------------


def test_rem_noise_keeps_the_loss_low_after_a_fresh_inner_max():
    """The source REM trained, on x + δ_u + δ_a (δ_a the worst case a fresh 20-step ρ-PGD finds),
    has a loss far below the one the same attack reaches on the clean x, or on x plus the uniform
    noise δ_u started from.  (Measured at seeds 0-3 while writing this: 0.24, 0.47, 0.47 and 0.06
    of the clean x's attacked loss; a δ_u that ascends, or never moves, sits at 1 or above.)"""
    ctx = _stripes_ctx()
    o = _resolved(source="cnn-small", model_steps=10, batch_size=32, max_iters=2, steps=5, samples=2, adv_steps=2)
    crafter = RemCrafter(o, ctx)
    start = crafter.delta.clone()
    noise = crafter.run("rem")
    assert noise.meta["stop_reason"] == "max_iters" and noise.meta["iterations"] == 2  # the paper's rule: a fixed budget
    assert noise.delta.abs().max().item() <= EPS + 1e-7
    x, y, source = to_unit_float(ctx.x), ctx.y, crafter.frozen  # θ as of the last δ_u pass
    clean, clean_attacked = _loss(source, x, y), _attacked_loss(source, x, y)
    protected_attacked = _attacked_loss(source, apply_noise(x, noise.delta), y)
    random_attacked = _attacked_loss(source, apply_noise(x, start), y)
    assert clean_attacked > clean  # the attack does raise the loss
    assert protected_attacked < 0.6 * clean_attacked, (protected_attacked, clean_attacked)
    assert protected_attacked < 0.6 * random_attacked, (protected_attacked, random_attacked)


def test_inner_max_raises_the_loss_within_rho():
    crafter, ctx = _trained_crafter(augment="none", samples=1, adv_steps=5)
    x, y = to_unit_float(ctx.x), ctx.y
    x_u = apply_noise(x, crafter.delta)
    attacked = crafter.robust_view(x_u, y)
    assert attacked.shape == x_u.shape
    assert (attacked - x_u).abs().max().item() <= RHO + 1e-6
    assert 0 <= attacked.min() and attacked.max() <= 1
    assert _loss(crafter.frozen, attacked.detach(), y) > _loss(crafter.frozen, x_u, y)


def test_expectation_takes_samples_augmentations_of_each_image():
    crafter, ctx = _trained_crafter(samples=3, rho=0.0)
    x = to_unit_float(ctx.x)
    views = crafter.robust_view(x, ctx.y.repeat(3))
    assert views.shape == (3 * len(x), *x.shape[1:])
    copies = views.reshape(3, len(x), -1)
    assert not torch.equal(copies[0], copies[1])  # each copy its own crop and flip
    # every view is a crop (4-pixel zero padding) of the image, possibly mirrored: its mean stays close
    assert (copies.mean(2) - x.flatten(1).mean(1)).abs().max() < 0.25


def test_delta_u_steps_against_the_gradient_at_the_inner_max_point():
    """Danskin: δ_u's step follows the loss's gradient at t(x') + δ_a (δ_a held fixed), not at x'."""
    crafter, ctx = _trained_crafter(augment="none", samples=1, steps=1)
    o = crafter.o
    x, y = to_unit_float(ctx.x), ctx.y
    start = crafter.delta.clone()
    crafter.draws = torch.Generator().manual_seed(7)
    stepped = crafter.solve(x, y, start.clone())

    x_u = apply_noise(x, start)
    draws = torch.Generator().manual_seed(7)  # the same random start for δ_a
    delta_a = pgd(crafter.frozen, x_u, y, (torch.rand(x.shape, generator=draws) * 2 - 1) * o.rho, o.rho, o.adv_step_size,
                  o.adv_steps, descend=False, device=CPU)
    x_a = apply_noise(x_u, delta_a).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(crafter.frozen(x_a), y), x_a)
    expected = (x_u - o.step_size * grad.sign() - x).clamp(-EPS, EPS)
    assert torch.equal(stepped, expected)
    plain = MinMinCrafter.solve(crafter, x, y, start.clone())  # errmin-pgd's step: the gradient at x'
    assert not torch.equal(stepped, plain)


def test_theta_trains_on_adversarial_examples_of_the_noisy_batch():
    crafter, ctx = _trained_crafter(augment="none")
    model = crafter.model
    x, y = apply_noise(to_unit_float(ctx.x), crafter.delta), ctx.y
    stats = [b.clone() for b in model.buffers()]
    model.train()
    trained_on = crafter.train_input(x, y)
    assert model.training  # back in train mode for the SGD step
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))  # the attack ran in eval mode
    assert (trained_on - x).abs().max().item() <= RHO + 1e-6 and 0 <= trained_on.min() and trained_on.max() <= 1
    model.eval()
    assert _loss(model, trained_on, y) > _loss(model, x, y)


# --- reductions and reproducibility -----------------------------------------------------------


@pytest.mark.parametrize("form", ["sample", "class"])
def test_rho_0_without_expectation_is_errmin_pgd_byte_for_byte(form):
    shared = {"form": form, "steps": 3, "step_size": EPS / 10, "stop_error": 0.01, "max_iters": 2}
    errmin = ErrMinPGD(build_options(ErrMinPGD.Options, shared)).craft(make_ctx(n_per_class=4))
    rem = REM(build_options(REM.Options, {**shared, "rho": 0.0, "augment": "none", "samples": 1})).craft(make_ctx(n_per_class=4))
    assert torch.equal(rem.delta, errmin.delta)
    assert rem.meta["history"][-1]["error"] == errmin.meta["history"][-1]["error"]


def test_same_seed_same_bytes_and_another_seed_other_bytes():
    def craft(seed):
        return REM().craft(make_ctx(n_per_class=2, seed=seed)).delta

    first = craft(0)
    assert torch.equal(first, craft(0))
    assert not torch.equal(first, craft(1))
    assert first.abs().max().item() <= EPS + 1e-7


def test_classwise_form_runs_through_the_loops_class_pass():
    ctx = make_ctx(n_per_class=2)
    noise = REM(build_options(REM.Options, {"form": "class", "class_subset": 1.0})).craft(ctx)
    assert noise.form == "class" and noise.delta.shape == (ctx.num_classes, *ctx.x.shape[1:])
    assert noise.delta.abs().max().item() <= EPS + 1e-7


# --- options ----------------------------------------------------------------------------------


def test_resolve_at_the_paper_protocol_gives_the_papers_settings():
    eps = 8 / 255
    r = _resolved("paper", eps)
    assert (r.steps, r.adv_steps, r.samples, r.augment, r.stop_error) == (10, 10, 5, "crop-flip", 0.0)
    assert r.step_size == pytest.approx(1.6 / 255) and r.rho == pytest.approx(4 / 255)
    assert r.adv_step_size == pytest.approx(0.8 / 255)
    # the paper's θ budget: ≈ 12.8 epochs of CIFAR-10, one δ_u pass per ≈ epoch
    assert r.model_steps * r.batch_size * r.max_iters / 50_000 == pytest.approx(12.8, rel=0.05)
    assert (r.source, r.source_lr) == ("resnet18", 0.1)


@pytest.mark.parametrize("protocol", ["cpu", "cpu-full"])
def test_resolve_scales_the_inner_solvers_for_the_cpu_protocols(protocol):
    proto = get_protocol(protocol)
    r = _resolved(protocol)
    assert (r.steps, r.adv_steps, r.samples, r.max_iters) == (10, 5, 2, 6)
    assert (r.model_steps, r.batch_size, r.source) == (proto.craft_sample.model_steps, proto.craft_sample.batch_size, "cnn-small")
    assert r.step_size == pytest.approx(EPS / 5) and r.adv_step_size == pytest.approx(RHO / 5)
    if protocol == "cpu":  # ≈ the paper's 12.8 epochs of θ on the cpu protocol's 5,000 images
        assert r.model_steps * r.batch_size * r.max_iters / 5_000 == pytest.approx(12.8, rel=0.05)


def test_resolve_keeps_explicit_values_and_drops_the_inner_max_at_rho_0():
    r = _resolved("cpu", rho="2/255", adv_steps="3", adv_step_size="1/255", samples="4", steps="7", max_iters="9",
                  stop_error="0.05", augment="crop")
    assert (r.adv_steps, r.samples, r.steps, r.max_iters, r.stop_error, r.augment) == (3, 4, 7, 9, 0.05, "crop")
    assert r.rho == pytest.approx(2 / 255) and r.adv_step_size == pytest.approx(1 / 255)
    assert _resolved("cpu", rho="2/255").adv_step_size == pytest.approx(2 / 255 / 5)
    flat = applied_options(_resolved("cpu", rho="0"))
    assert flat["rho"] == 0 and "adv_steps" not in flat and "adv_step_size" not in flat  # not in the key or the row
    assert REM().options.rho is None  # resolve does not mutate the declared options


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"rho": "2"}, "rho must be in [0, 1]"),
        ({"samples": "0"}, "samples must be >= 1"),
        ({"adv_steps": "0"}, "adv_steps must be >= 1"),
        ({"adv_step_size": "0"}, "adv_step_size must be > 0"),
        ({"rho": "0", "adv_steps": "3"}, "rho=0 turns off"),
        ({"augment": "mixup"}, "must be one of crop-flip, crop, none"),
        ({"steps": "0"}, "steps must be >= 1"),  # errmin-pgd's checks still apply
    ],
)
def test_invalid_options(values, fragment):
    with pytest.raises(OptionError) as info:
        build_options(REM.Options, values, "attack 'rem'")
    assert fragment in str(info.value)


def test_the_docstring_names_paper_link_norm_and_defaults():
    import uebench.attacks.rem as module

    doc = module.__doc__
    for needle in ("ICLR 2022", "openreview.net", "L∞", "4/255", "samples", "max_iters", "cpu"):
        assert needle in doc, needle
