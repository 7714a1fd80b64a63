"""HYPO, TAP and SEP: each attack's defining property on a tiny synthetic task, and SEP's
checkpoints of one clean run (one cached artifact, trained once)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_ctx
from uebench.attacks import source_poisons
from uebench.craft.solvers import pgd
from uebench.craft.source_models import checkpoint_epochs, checkpoints_key, clean_checkpoints, clean_source, source_key
from uebench.plugins import get_host
from uebench.protocols import get_protocol

K = 10


class _Centered(nn.Module):
    def forward(self, x):
        return x - 0.5


def _coarse_linear(weights: torch.Tensor) -> nn.Module:
    """A frozen linear classifier on the 8×8-pixel cell means of a 32×32 image: its decision
    varies slowly over the image, so it survives the crops and flips TAP's loss draws."""
    head = nn.Linear(weights[0].numel(), len(weights))
    with torch.no_grad():
        head.weight.copy_(weights.flatten(1))
        head.bias.zero_()
    model = nn.Sequential(_Centered(), nn.AvgPool2d(8), nn.Flatten(), head).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _weights(count: int, mirror: bool = True) -> list[torch.Tensor]:
    """Random class patterns over a 4×4 grid of cells; ``mirror``: symmetric, so a flip keeps the class."""
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(K, 3, 4, 4, generator=g) for _ in range(count)]
    return [(w + w.flip(-1)) / 2 for w in weights] if mirror else weights


def _task(weights: list[torch.Tensor], signal: float = 0.03, n_per_class: int = 3):
    """A crafting context whose images carry their class's pattern (the models' mean weight
    pattern of that class, at ``signal`` on the [0, 1] scale) over low-contrast noise."""
    ctx = make_ctx(n_per_class=n_per_class)
    pattern = sum(F.interpolate(w / w.flatten(1).abs().amax(1).view(-1, 1, 1, 1), size=32, mode="nearest") for w in weights)
    x = ctx.x.float() / 255 * 0.2 + 0.4 + signal * pattern[ctx.y] / len(weights)
    ctx.x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return ctx


def _poisoned(ctx, noise) -> torch.Tensor:
    return (ctx.x.float() / 255 + noise.delta).clamp(0, 1)


def _attack(name: str, **options):
    cls = get_host().attacks.get(name).cls
    return cls(cls.Options(**options))


# --- TAP ----------------------------------------------------------------------------------


def test_tap_poisons_are_classified_as_their_target_class_by_the_source(monkeypatch):
    """Class-targeted: the source, which classifies the clean images right, puts most poisoned
    images in t(y) = (y + 1) mod K — not merely in some wrong class (that would be errmax)."""
    (w,) = _weights(1)
    source = _coarse_linear(w)
    ctx = _task([w])
    with torch.no_grad():
        assert torch.equal(source(ctx.x.float() / 255).argmax(1), ctx.y)
    monkeypatch.setattr(source_poisons, "clean_source", lambda ctx, name: (source, {"key": "test"}))
    noise = _attack("tap").craft(ctx)  # the defaults: augmentation inside the loss
    target = (ctx.y + 1) % K
    with torch.no_grad():
        predicted = source(_poisoned(ctx, noise)).argmax(1)
    assert (predicted == target).float().mean() >= 0.8
    assert noise.meta["target_rate_clean"] == 0 and noise.meta["target_rate_poisoned"] >= 0.8
    assert noise.delta.abs().max() <= ctx.eps + 1e-6 and noise.form == "sample" and noise.norm == "linf"


def test_tap_draws_its_augmentation_inside_the_loss(monkeypatch):
    """With ``augment`` the steps follow the gradient through a fresh crop + flip (other noise
    than without), and the draws come from the crafting stream (same seed, same bytes)."""
    (w,) = _weights(1)
    source = _coarse_linear(w)
    monkeypatch.setattr(source_poisons, "clean_source", lambda ctx, name: (source, {"key": "test"}))
    plain = _attack("tap", augment=False, steps=5).craft(_task([w])).delta
    augmented = _attack("tap", steps=5).craft(_task([w])).delta
    assert not torch.equal(plain, augmented)
    assert torch.equal(augmented, _attack("tap", steps=5).craft(_task([w])).delta)


def test_tap_scales_its_steps_for_the_cpu_protocols_only():
    eps = 8 / 255
    paper = _attack("tap").resolve(get_protocol("paper"), eps)
    assert (paper.steps, paper.step_size, paper.source) == (250, pytest.approx(eps / 20), "resnet18")
    for name in ("cpu", "cpu-full", "smoke"):
        cpu = _attack("tap").resolve(get_protocol(name), eps)
        assert (cpu.steps, cpu.step_size) == (50, pytest.approx(eps / 10))
    assert _attack("tap", steps=7).resolve(get_protocol("cpu"), eps).steps == 7  # an explicit value wins


# --- HYPO ---------------------------------------------------------------------------------


@pytest.mark.parametrize("augment", [True, False])
def test_hypo_poisons_have_lower_source_loss_than_clean_images(monkeypatch, augment):
    """Error-minimizing against the fixed clean source: the loss on x + δ drops below the clean
    loss (errmax-pgd, on the same source, raises it: the opposite direction), and every image
    stays correctly classified."""
    from uebench.attacks import errmax

    (w,) = _weights(1)
    source = _coarse_linear(w)
    monkeypatch.setattr(source_poisons, "clean_source", lambda ctx, name: (source, {"key": "test"}))
    monkeypatch.setattr(errmax, "clean_source", lambda ctx, name: (source, {"key": "test"}))
    ctx = _task([w])
    hypo = _attack("hypo", augment=augment).craft(ctx)
    errmax_noise = get_host().attacks.get("errmax-pgd").cls().craft(_task([w]))
    with torch.no_grad():
        clean_loss = F.cross_entropy(source(ctx.x.float() / 255), ctx.y)
        hypo_logits = source(_poisoned(ctx, hypo))
        hypo_loss = F.cross_entropy(hypo_logits, ctx.y)
        errmax_loss = F.cross_entropy(source(_poisoned(ctx, errmax_noise)), ctx.y)
    assert hypo_loss < 0.8 * clean_loss and errmax_loss > clean_loss
    assert torch.equal(hypo_logits.argmax(1), ctx.y)
    assert hypo.meta["source_loss_poisoned"] < hypo.meta["source_loss_clean"]
    assert hypo.delta.abs().max() <= ctx.eps + 1e-6


def test_hypo_resolves_the_reference_defaults_and_the_cpu_budget():
    eps = 8 / 255
    paper = _attack("hypo").resolve(get_protocol("paper"), eps)
    assert (paper.steps, paper.step_size, paper.augment) == (100, pytest.approx(eps / 10), True)
    assert _attack("hypo").resolve(get_protocol("cpu"), eps).steps == 20  # errmax-pgd's PGD-20


# --- SEP ----------------------------------------------------------------------------------


def test_sep_poisons_fool_every_checkpoint_of_the_ensemble(monkeypatch):
    """Three checkpoints with unrelated weights: SEP's poisons are classified as their target
    g(y) = (y + K/2) mod K by each of them, where the same attack against one checkpoint alone
    fools that one only — the ensemble, not any single member, is what the steps follow."""
    weights = _weights(3, mirror=False)  # no augmentation in SEP's loss
    members = [_coarse_linear(w) for w in weights]
    asked = {}

    def fake_checkpoints(ctx, name, epochs):
        asked["epochs"] = list(epochs)
        return members, {"key": "test", "epochs": list(epochs)}

    monkeypatch.setattr(source_poisons, "clean_checkpoints", fake_checkpoints)
    ctx = _task(weights, signal=0.02)
    target = (ctx.y + K // 2) % K
    noise = _attack("sep").craft(ctx)
    assert asked["epochs"] == [1, 2]  # smoke: a 2-epoch run, so 2 checkpoints
    with torch.no_grad():
        rates = [float((m(_poisoned(ctx, noise)).argmax(1) == target).float().mean()) for m in members]
        clean_rates = [float((m(ctx.x.float() / 255).argmax(1) == target).float().mean()) for m in members]
    assert min(rates) >= 0.8 and max(clean_rates) <= 0.2, (rates, clean_rates)
    assert noise.meta["target_rate_all_checkpoints"] >= 0.8
    assert noise.delta.abs().max() <= ctx.eps + 1e-6

    monkeypatch.setattr(source_poisons, "clean_checkpoints", lambda ctx, name, epochs: (members[-1:], {"key": "one"}))
    alone = _attack("sep").craft(_task(weights, signal=0.02))
    with torch.no_grad():
        alone_rates = [float((m(_poisoned(ctx, alone)).argmax(1) == target).float().mean()) for m in members]
    assert alone_rates[-1] >= 0.8 and min(alone_rates[:-1]) < 0.5, alone_rates


def test_sep_spreads_its_checkpoints_over_the_protocols_run():
    eps = 8 / 255
    assert _attack("sep").resolve(get_protocol("paper"), eps).checkpoints == 30
    assert checkpoint_epochs(60, 30) == list(range(2, 61, 2))
    cpu = get_protocol("cpu")
    assert _attack("sep").resolve(cpu, eps).checkpoints == 5
    assert checkpoint_epochs(cpu.epochs, 5) == [5, 10, 14, 19, 24]
    assert _attack("sep").resolve(get_protocol("smoke"), eps).checkpoints == 2  # never more than the run's epochs
    assert checkpoint_epochs(120, 30)[:3] == [4, 8, 12] and checkpoint_epochs(5, 5) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        checkpoint_epochs(2, 3)


def test_clean_checkpoints_are_distinct_come_from_one_run_and_are_trained_once(tmp_path, monkeypatch):
    """One training run gives every checkpoint: the last equals the model ``clean_source`` trains
    (same settings, same seeds), the earlier ones differ from it and from each other, and a
    second call loads them from their cache entry without training anything."""
    from uebench import train

    runs = []
    real_trainer = train.Trainer

    def counting_trainer(*args, **kwargs):
        runs.append(1)
        return real_trainer(*args, **kwargs)

    monkeypatch.setattr(train, "Trainer", counting_trainer)

    def ctx_():
        ctx = make_ctx(n_per_class=2)
        ctx.cache_dir = tmp_path
        return ctx

    ctx = ctx_()
    models, info = clean_checkpoints(ctx, "cnn-tiny", [1, 2])
    assert len(runs) == 1 and info["cached"] is False and info["epochs"] == [1, 2] and len(info["train_acc"]) == 2
    first, last = (m.state_dict() for m in models)
    assert not all(torch.equal(a, b) for a, b in zip(first.values(), last.values(), strict=True))
    final, _ = clean_source(ctx_(), "cnn-tiny")
    assert len(runs) == 2
    assert all(torch.equal(a, b) for a, b in zip(last.values(), final.state_dict().values(), strict=True))
    (path,) = tmp_path.glob("checkpoints-*.safetensors")

    again, info2 = clean_checkpoints(ctx_(), "cnn-tiny", [2, 1])  # the same epochs, in any order
    assert len(runs) == 2 and info2["cached"] is True and info2["key"] == info["key"]
    for model, cached in zip(models, again, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), cached.state_dict().values(), strict=True))
    # its own key: not clean_source's, and other epochs are another entry
    assert info["key"] != source_key(ctx_(), "cnn-tiny") and checkpoints_key(ctx_(), "cnn-tiny", [2]) != info["key"]
    # a corrupted entry is discarded and trained again; epochs outside the run are refused
    path.write_bytes(path.read_bytes()[:64])
    _, info3 = clean_checkpoints(ctx_(), "cnn-tiny", [1, 2])
    assert info3["cached"] is False and len(runs) == 3
    with pytest.raises(ValueError, match="1..2"):
        clean_checkpoints(ctx_(), "cnn-tiny", [3])


# --- the shared PGD -----------------------------------------------------------------------


def test_pgd_ensemble_and_augmentation_leave_the_single_model_step_unchanged():
    """A one-member list, a doubled member and an identity transform give the plain PGD's bytes
    (what errmax-pgd and the min-min loop call); a real transform changes the steps."""
    (w,) = _weights(1)
    model = _coarse_linear(w)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8)
    zero = torch.zeros_like(x)
    eps, cpu = 8 / 255, torch.device("cpu")
    plain = pgd(model, x, y, zero, eps, eps / 4, 5, descend=True, device=cpu)
    assert torch.equal(plain, pgd([model], x, y, zero, eps, eps / 4, 5, descend=True, device=cpu))
    assert torch.equal(plain, pgd([model, model], x, y, zero, eps, eps / 4, 5, descend=True, device=cpu))
    assert torch.equal(plain, pgd(model, x, y, zero, eps, eps / 4, 5, descend=True, device=cpu, augment=lambda t: t))
    shifted = pgd(model, x, y, zero, eps, eps / 4, 5, descend=True, device=cpu, augment=lambda t: t.roll(8, -1))
    assert not torch.equal(plain, shifted)
