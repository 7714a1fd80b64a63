"""``orthogonal-projection`` (Sandoval-Segura et al. 2023): the fitted linear model's directions are
gone from every held image, a class-wise additive poison stops being linearly learnable, the
result is a function of the generator, and a projected (off-range float) set trains end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from uebench.defenses.orthogonal_projection import fit_linear, orthonormal_basis, project_out
from uebench.plugins import get_host
from uebench.train import TrainData, Trainer, TrainSettings

K, N_PER_CLASS, SHAPE = 4, 100, (3, 4, 4)  # D = 48 < N = 400: a linear model cannot memorise noise


def make(**options):
    cls = get_host().defenses.get("orthogonal-projection").cls
    return cls(cls.Options(**options))


def classwise_poisoned(seed=0, strength=0.15):
    """Random images (no class signal) plus a per-class constant pattern δ_k: a class-wise poison."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(K).repeat_interleave(N_PER_CLASS)
    clean = torch.rand(len(y), *SHAPE, generator=g) * 0.5 + 0.25
    delta = (torch.rand(K, *SHAPE, generator=g) * 2 - 1) * strength
    return clean + delta[y], clean, y, delta  # in [0.1, 0.9]: no clamping blurs the poison


def train_accuracy(x, y):
    """Training accuracy of a fresh, long-trained linear model: how linearly learnable the labels are."""
    w = fit_linear(x, y, K, torch.Generator().manual_seed(123), epochs=200, lr=0.5, batch_size=100)
    return ((x.flatten(1) @ w.T).argmax(1) == y).float().mean().item()


def test_projected_images_have_no_component_along_the_fitted_directions():
    x, clean, y, _ = classwise_poisoned()
    val = x[:20].clone()
    defense = make()
    out = defense.prepare(TrainData(x, y, K, x_clean=clean, x_val=val, y_val=y[:20]), torch.Generator().manual_seed(0))
    w = defense.weight / defense.weight.norm(dim=1, keepdim=True)
    assert w.shape == (K, 48)
    before = (x.flatten(1) @ w.T).abs().max().item()
    for images in (out.x, out.x_clean, out.x_val):  # the defender projects every image they hold
        assert images.dtype == torch.float32 and images.shape[1:] == SHAPE
        assert (images.flatten(1) @ w.T).abs().max().item() < 1e-4 * before
    # only those directions are removed: the rest of each image is untouched
    residual = x.flatten(1) - out.x.flatten(1)
    basis = defense.basis
    assert torch.allclose(residual, (x.flatten(1) @ basis) @ basis.T, atol=1e-5)
    assert basis.shape[1] == K - 1  # a zero-start softmax model's K weights sum to zero: K-1 directions
    assert torch.allclose(basis.T @ basis, torch.eye(K - 1), atol=1e-5)


def test_a_classwise_poison_is_no_longer_linearly_learnable_after_projection():
    x, _, y, delta = classwise_poisoned()
    out = make().prepare(TrainData(x, y, K), torch.Generator().manual_seed(0)).x
    assert train_accuracy(x, y) > 0.95  # the poison is a linear shortcut
    assert train_accuracy(out, y) < 0.6  # after projection the labels are close to noise (chance 0.25)
    # the class-mean differences (what a class-wise δ adds) are almost gone
    means = torch.stack([x[y == k].mean(0) for k in range(K)]).flatten(1)
    means_after = torch.stack([out[y == k].mean(0) for k in range(K)]).flatten(1)
    spread = (means - means.mean(0)).norm()
    assert (means_after - means_after.mean(0)).norm() < 0.2 * spread
    assert spread > 0.5 * (delta - delta.mean(0)).flatten(1).norm()  # the means did carry the poison


def test_deterministic_under_the_same_generator_seed():
    x, _, y, _ = classwise_poisoned()
    data = TrainData((x * 255).round().to(torch.uint8), y, K)  # the usual uint8 release
    a = make().prepare(data, torch.Generator().manual_seed(7)).x
    b = make().prepare(data, torch.Generator().manual_seed(7)).x
    c = make().prepare(data, torch.Generator().manual_seed(8)).x
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # the generator decides the visiting order of the fit


def test_projection_is_not_clamped_and_test_images_are_projected_only_on_request():
    x, _, y, _ = classwise_poisoned(strength=0.4)
    default = make()
    out = default.prepare(TrainData(x, y, K), torch.Generator().manual_seed(0)).x
    assert out.min() < 0 or out.max() > 1  # the paper trains on the raw projection
    test = torch.rand(8, *SHAPE)
    assert torch.equal(default.eval_images(test), test)
    on = make(project_test=True)
    on.prepare(TrainData(x, y, K), torch.Generator().manual_seed(0))
    projected = on.eval_images(test)
    assert torch.allclose(projected, project_out(test, on.basis), atol=1e-6)
    assert torch.allclose(on.eval_images(projected), projected, atol=1e-5)  # a projection: idempotent


def test_orthonormal_basis_drops_dependent_directions():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 20, generator=g)
    w = torch.cat([w, (w[0] + 2 * w[1])[None], torch.zeros(1, 20)])
    q = orthonormal_basis(w)
    assert q.shape == (20, 3)
    assert torch.allclose(w - (w @ q) @ q.T, torch.zeros_like(w), atol=1e-5)


@pytest.mark.parametrize("then", [[], ["early-stop"], ["jpeg"]])
def test_a_projected_set_trains_end_to_end(then):
    x, _, y, _ = classwise_poisoned()
    x8 = (x * 255).round().to(torch.uint8)
    host = get_host()
    defenses = [make()] + [host.defenses.get(n).cls() for n in then]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, K))
    settings = TrainSettings(epochs=2, batch_size=64, lr=0.05, channels_last=False, eval_batch_size=64)
    trainer = Trainer(model, TrainData(x8, y, K, x_clean=x8), settings, defenses, torch.Generator().manual_seed(0),
                      torch.Generator().manual_seed(1), torch.device("cpu"))
    result = trainer.fit(x8[:40], y[:40])
    assert len(result.history) == 2 and 0 <= result.final_test_acc <= 1
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in result.history)
