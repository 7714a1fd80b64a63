"""errmin-pgd (Huang et al. 2021, Algorithm 1): PGD *descends* the loss, δ stays in the ε-ball,
and ``resolve`` fills the paper's defaults and the protocol's values."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from conftest import make_ctx
from uebench.attacks.errmin_pgd import PAPER_DEFAULTS, ErrMinPGD
from uebench.craft.solvers import MinMinCrafter
from uebench.noise import to_unit_float
from uebench.options import OptionError, build_options
from uebench.protocols import get_protocol

EPS = 8 / 255


def _crafter(form="sample", eps=EPS, **opts):
    ctx = make_ctx(n_per_class=4, eps=eps)
    options = build_options(ErrMinPGD.Options, dict(form=form, **opts))
    resolved = ErrMinPGD(options).resolve(ctx.protocol, eps)
    crafter = MinMinCrafter(resolved, ctx)
    crafter.freeze()
    return crafter, ctx


def _loss(model, x, delta, y):
    with torch.no_grad():
        return F.cross_entropy(model((x + delta).clamp(0, 1)), y).item()


def test_pgd_descends_the_loss_and_stays_in_the_ball():
    crafter, ctx = _crafter(steps=10)
    x, y = to_unit_float(ctx.x), ctx.y
    start = crafter.delta.clone()
    before = _loss(crafter.frozen, x, start, y)
    delta = crafter.inner(x, y, start.clone())
    after = _loss(crafter.frozen, x, delta, y)
    assert after < before, (before, after)
    assert delta.shape == start.shape
    assert delta.abs().max().item() <= EPS + 1e-7
    assert not torch.equal(delta, start)
    # PGD starts from clip(x + δ) and each step moves by α at most: T steps stay within T·α of it
    effective_start = (x + start).clamp(0, 1) - x
    assert (delta - effective_start).abs().max().item() <= 10 * EPS / 10 + 1e-6


def test_pgd_each_extra_step_keeps_descending_on_average():
    crafter, ctx = _crafter(steps=1)
    x, y = to_unit_float(ctx.x), ctx.y
    delta = crafter.delta.clone()
    losses = [_loss(crafter.frozen, x, delta, y)]
    for _ in range(5):
        delta = crafter.inner(x, y, delta)
        assert delta.abs().max().item() <= EPS + 1e-7
        losses.append(_loss(crafter.frozen, x, delta, y))
    assert losses[-1] < losses[0]


def test_negated_step_would_ascend():
    """Contrast: the same update with the sign flipped (error-maximising) raises the loss."""
    crafter, ctx = _crafter(steps=10)
    x, y = to_unit_float(ctx.x), ctx.y
    start = crafter.delta.clone()
    crafter.o = replace(crafter.o, step_size=-crafter.o.step_size)
    ascended = crafter.inner(x, y, start.clone())
    assert _loss(crafter.frozen, x, ascended, y) > _loss(crafter.frozen, x, start, y)
    assert ascended.abs().max().item() <= EPS + 1e-7


def test_initial_delta_is_uniform_in_the_ball():
    crafter, ctx = _crafter()
    assert crafter.delta.shape == ctx.x.shape
    assert crafter.delta.abs().max().item() <= EPS
    assert crafter.delta.min().item() < -EPS / 2 and crafter.delta.max().item() > EPS / 2


def test_samplewise_pass_updates_every_row_within_eps():
    crafter, ctx = _crafter(steps=2, batch_size=16)
    before = crafter.delta.clone()
    error = crafter.perturbation_pass()
    assert 0.0 <= error <= 1.0
    assert crafter.delta.abs().max().item() <= EPS + 1e-7
    changed = (crafter.delta != before).flatten(1).any(1)
    assert changed.all()


def test_classwise_pass_keeps_one_delta_per_class():
    crafter, ctx = _crafter(form="class", batch_size=8, class_subset=0.5)
    assert crafter.delta.shape == (ctx.num_classes, *ctx.x.shape[1:])
    # stratified crafting subset: class_subset · N / K = 2 images per class
    assert torch.bincount(ctx.y[crafter.index], minlength=ctx.num_classes).tolist() == [2] * ctx.num_classes
    error = crafter.perturbation_pass()
    assert 0.0 <= error <= 1.0
    assert crafter.delta.abs().max().item() <= EPS + 1e-7


@pytest.mark.parametrize("form", ["sample", "class"])
def test_run_returns_noise_with_craft_metadata(form):
    crafter, ctx = _crafter(form=form, max_iters=2, stop_error=0.0, model_steps=1, steps=2, batch_size=20)
    noise = crafter.run()
    assert noise.form == form and noise.eps == EPS
    assert noise.delta.abs().max().item() <= EPS + 1e-7
    meta = noise.meta
    assert meta["attack"] == "errmin-pgd" and meta["source"] == "cnn-tiny"
    assert meta["stop_reason"] == "max_iters" and meta["iterations"] == 2  # error < 0 never happens
    assert [h["iteration"] for h in meta["history"]] == [1, 2]
    assert 0 <= meta["final_error"] <= 1 and not math.isnan(meta["final_error"])


def test_run_stops_at_stop_error():
    crafter, _ = _crafter(max_iters=5, stop_error=1.0, model_steps=1, steps=1, batch_size=40)
    noise = crafter.run()
    # λ = 1: any error below 100% (one correct image of 40 suffices) stops after the first pass
    assert noise.meta["final_error"] < 1.0
    assert noise.meta["stop_reason"] == "stop_error" and noise.meta["iterations"] == 1


# --- resolve ------------------------------------------------------------------------------


@pytest.mark.parametrize("form, steps, stop", [("sample", 20, 0.01), ("class", 1, 0.1)])
@pytest.mark.parametrize("protocol", ["smoke", "cpu", "paper"])
def test_resolve_fills_paper_defaults_and_protocol_values(form, steps, stop, protocol):
    proto = get_protocol(protocol)
    eps = 16 / 255
    attack = ErrMinPGD(build_options(ErrMinPGD.Options, {"form": form}))
    r = attack.resolve(proto, eps)
    assert (r.steps, r.stop_error) == (steps, stop) == (PAPER_DEFAULTS[form]["steps"], PAPER_DEFAULTS[form]["stop_error"])
    assert r.step_size == pytest.approx(eps / 10)
    scale = proto.craft(form)
    assert r.model_steps == scale.model_steps
    assert r.source == proto.source
    assert r.source_lr == scale.lr
    assert r.batch_size == scale.batch_size
    assert r.max_iters == scale.max_iters
    assert r.class_subset == (0.2 if form == "class" else None)  # Δc only
    assert attack.options.steps is None  # resolve does not mutate the declared options


@pytest.mark.parametrize("cls_name", ["errmin-pgd", "errmin-adam"])
def test_class_subset_enters_the_key_and_row_of_classwise_noise_only(cls_name):
    """Δs never reads ``class_subset``: it must not split cache keys or rows (issue 9)."""
    from uebench.options import applied_options
    from uebench.plugins import get_host

    cls = get_host().attacks.get(cls_name).cls
    sample = applied_options(cls(build_options(cls.Options, {"form": "sample"})).resolve(get_protocol("cpu"), EPS))
    klass = applied_options(cls(build_options(cls.Options, {"form": "class"})).resolve(get_protocol("cpu"), EPS))
    assert "class_subset" not in sample
    assert klass["class_subset"] == 0.2


def test_resolve_keeps_explicit_values():
    opts = build_options(ErrMinPGD.Options, {"steps": "3", "step_size": "1/255", "stop_error": "0.5",
                                             "model_steps": "4", "source": "resnet18", "source_lr": "0.2",
                                             "batch_size": "64", "max_iters": "7"})
    r = ErrMinPGD(opts).resolve(get_protocol("smoke"), EPS)
    assert (r.steps, r.stop_error, r.model_steps, r.source, r.source_lr, r.batch_size, r.max_iters) == (
        3, 0.5, 4, "resnet18", 0.2, 64, 7)
    assert r.step_size == pytest.approx(1 / 255)


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"steps": "0"}, "steps must be >= 1"),
        ({"max_iters": "-1"}, "max_iters must be >= 1"),
        ({"step_size": "0"}, "step_size must be > 0"),
        ({"stop_error": "1.5"}, "stop_error must be in [0, 1]"),
        ({"class_subset": "0"}, "class_subset must be in (0, 1]"),
        ({"class_subset": "0.5"}, "class_subset applies to class-wise noise only (form=class), got form=sample"),
        ({"form": "pixel"}, "must be one of sample, class"),
    ],
)
def test_invalid_options(values, fragment):
    with pytest.raises(OptionError) as info:
        build_options(ErrMinPGD.Options, values, "attack 'errmin-pgd'")
    assert fragment in str(info.value)


def test_cpu_chunked_pgd_matches_whole_batch_pgd(monkeypatch):
    """Chunking PGD on CPU (for speed) must not change δ beyond rare float-rounding sign flips."""
    import uebench.craft.solvers as solvers

    crafter, ctx = _crafter(steps=3)
    x, y = to_unit_float(ctx.x), ctx.y
    start = crafter.delta.clone()
    monkeypatch.setattr(solvers, "CPU_PGD_CHUNK", 7)  # several chunks, the last one partial
    chunked = crafter.inner(x, y, start.clone())
    monkeypatch.setattr(solvers, "CPU_PGD_CHUNK", 10**9)
    whole = crafter.inner(x, y, start.clone())
    assert len(y) > 7 and chunked.shape == whole.shape
    assert (chunked == whole).float().mean().item() > 0.999


def test_frozen_copy_folds_batchnorm_without_changing_the_function():
    """PGD runs on a BN-folded eval copy (faster); it must compute what the eval model computes
    and leave the trained model untouched (still training, still trainable)."""
    from uebench.compute import frozen_copy
    from uebench.victims.cifar import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN().build(10, (3, 32, 32))
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        model(x)  # non-trivial running statistics
    frozen = frozen_copy(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(frozen(x), model(x), atol=1e-5)


def test_frozen_copy_of_an_untraceable_model_is_a_plain_copy():
    from uebench.compute import frozen_copy

    class DataDependent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

        def forward(self, x):
            h = self.bn(self.conv(x))
            return h if h.sum() > 0 else -h  # torch.fx cannot trace this branch

    model = DataDependent()
    frozen = frozen_copy(model, channels_last=False)
    assert isinstance(frozen, DataDependent) and frozen is not model
    x = torch.rand(2, 3, 8, 8)
    model.eval()
    with torch.no_grad():
        assert torch.equal(frozen(x), model(x))


def test_pgd_on_the_folded_model_matches_the_unfolded_one():
    crafter, ctx = _crafter(steps=3, source="cnn-small", batch_size=20)
    crafter.model_steps()  # non-trivial BatchNorm statistics
    crafter.freeze()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in crafter.frozen.modules())
    x, y = to_unit_float(ctx.x), ctx.y
    start = crafter.delta.clone()
    folded = crafter.inner(x, y, start.clone())
    crafter.frozen = crafter.model.eval()  # the unfolded eval model
    plain = crafter.inner(x, y, start.clone())
    assert (folded == plain).float().mean().item() > 0.999


def test_classwise_source_model_trains_on_the_whole_set():
    """As in the reference code, θ's model steps sweep all training images; only δ's updates
    and the stop error use the class subset."""
    crafter, ctx = _crafter(form="class", batch_size=8, class_subset=0.5)
    seen = torch.cat([crafter._next_batch() for _ in range(len(ctx.y) // 8)])
    assert sorted(seen.tolist()) == list(range(len(ctx.y)))
    assert len(crafter.index) == len(ctx.y) // 2


# --- the defining choices of Algorithm 1, each of which could break without another test failing


@pytest.mark.parametrize("solver", ["errmin-pgd", "errmin-adam"])
def test_classwise_update_is_the_clipped_mean_of_each_batchs_class_updates(monkeypatch, solver):
    """δ_k ← clip(mean of the batch's class-k updates); a class absent from a batch keeps δ_k.
    A sum, a last-sample rule or an update of absent classes all give other numbers here."""
    from uebench.attacks.errmin_adam import AdamCrafter, ErrMinAdam

    ctx = make_ctx(n_per_class=4, num_classes=3)
    cls, crafter_cls = (ErrMinPGD, MinMinCrafter) if solver == "errmin-pgd" else (ErrMinAdam, AdamCrafter)
    resolved = cls(build_options(cls.Options, {"form": "class", "batch_size": 2, "class_subset": 1.0})).resolve(ctx.protocol, EPS)
    crafter = crafter_cls(resolved, ctx)
    crafter.freeze()
    start = crafter.delta.clone()
    batches = []

    def fake_inner(x, y, delta, mask=None):
        # per-sample updates of ±0.8ε around a sample-specific level: means and sums differ,
        # and two same-class samples in one batch add past ε (a sum would clip)
        eta = torch.stack([torch.full_like(x[0], (0.8 if int(i) % 3 else -0.3) * EPS) for i in range(len(y))])
        batches.append((y.clone(), eta))
        return eta

    monkeypatch.setattr(crafter, "inner", fake_inner)
    crafter.perturbation_pass()
    expected = start.clone()
    for y, eta in batches:
        for k in torch.unique(y).tolist():
            expected[k] = eta[y == k].mean(0).clamp(-EPS, EPS)
    assert len(batches) == 6  # 12 subset images, batch 2
    assert torch.allclose(crafter.delta, expected)
    assert any(len(torch.unique(y)) < 3 for y, _ in batches)  # some class was absent from every batch


def test_stop_error_is_measured_on_the_crafting_set_with_the_noise_applied():
    """The error a pass returns is the frozen model's error on x + δ over the crafting subset —
    not on clean images, not over the whole training set."""
    crafter, ctx = _crafter(form="class", batch_size=8, class_subset=0.5, steps=3, step_size=EPS)
    torch.manual_seed(0)  # a linear source whose predictions vary from image to image
    crafter.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, ctx.num_classes))
    error = crafter.perturbation_pass()
    index = crafter.index
    assert len(index) < len(ctx.y)  # the crafting subset is a strict part of the set
    x = to_unit_float(ctx.x[index])
    with torch.no_grad():
        noisy = (crafter.frozen((x + crafter.delta[ctx.y[index]]).clamp(0, 1)).argmax(1) != ctx.y[index]).float().mean().item()
        clean = (crafter.frozen(x).argmax(1) != ctx.y[index]).float().mean().item()
        whole = (crafter.frozen((to_unit_float(ctx.x) + crafter.delta[ctx.y]).clamp(0, 1)).argmax(1)
                 != ctx.y).float().mean().item()
    assert error == pytest.approx(noisy)
    assert noisy != clean and noisy != whole  # the setup tells the three apart
