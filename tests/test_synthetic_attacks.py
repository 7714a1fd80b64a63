"""LSP and AR (``uebench.attacks.synthetic``): the properties that define them, on tiny synthetic data.

LSP: the noise alone is linearly separable by class — a logistic regression on δ (flattened)
fits it and, the stronger claim, classifies *held-out* images' δ as well (at 10 × 20 images in
3,072 dimensions every labelling is linearly separable on the training images, i.i.d. noise
included, so training accuracy alone would pass a wrong implementation; the held-out accuracy
and an i.i.d.-noise control make the test bite).

AR: the noise is not linearly separable in pixel space (its class distributions are symmetric
about 0: a linear model on held-out AR δ scores ~25%); what separates it is a one-layer CNN —
each class's AR filter sends its own class's δ to 0 and the others' to large responses, and a
one-layer CNN *learned* from the noise alone (filters not given) classifies held-out δ.  With
100 classes every process is stable (the published CIFAR-100 file's class 9 was not) and the
noise finite.  Both: the L2 budget held and spent, same seed → same bytes.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from uebench.attacks import synthetic
from uebench.attacks.base import CraftContext
from uebench.attacks.synthetic import (
    AR_MAX_RMS,
    LSP_RADIUS,
    Autoregressive,
    LinearSeparableSynthetic,
    ar_fill,
    ar_filters,
    ar_response,
)
from uebench.protocols import get_protocol


def _ctx(n_per_class: int, num_classes: int = 10, size: int = 32, seed: int = 0) -> CraftContext:
    g = torch.Generator().manual_seed(1000 + seed)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = torch.randint(0, 256, (len(y), 3, size, size), generator=g, dtype=torch.uint8)

    def no_model(name):
        raise AssertionError("a synthetic attack builds no model")

    return CraftContext(x=x, y=y, num_classes=num_classes, eps=8 / 255, seed=seed, device=torch.device("cpu"), precision="fp32",
                        channels_last=False, protocol=get_protocol("smoke"), build_model=no_model,
                        generator=torch.Generator().manual_seed(seed))


def _lsp(ctx, **options):
    return LinearSeparableSynthetic(LinearSeparableSynthetic.Options(**options)).craft(ctx)


def _ar(ctx, **options):
    return Autoregressive(Autoregressive.Options(**options)).craft(ctx)


def _split(y: torch.Tensor, n_train: int) -> torch.Tensor:
    """True for the first ``n_train`` images of every class (labels grouped by class)."""
    rank = torch.cat([torch.arange(int((y == k).sum())) for k in torch.unique(y)])
    return rank < n_train


def _linear_probe(delta: torch.Tensor, y: torch.Tensor, train: torch.Tensor, steps: int = 300) -> tuple[float, float]:
    """Train and held-out accuracy of a logistic regression on δ alone (flattened, standardised)."""
    torch.manual_seed(0)
    x = delta.flatten(1)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    x = (x - mean) / std
    model = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    fit_x, fit_y = x[train], y[train]
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(fit_x), fit_y).backward()
        opt.step()
    with torch.no_grad():
        right = model(x).argmax(1) == y
    return right[train].float().mean().item(), right[~train].float().mean().item()


def _cnn_probe(delta: torch.Tensor, y: torch.Tensor, train: torch.Tensor, steps: int = 200) -> float:
    """Held-out accuracy of a one-layer CNN learned on δ alone: K free 3×3 filters, the log of
    each one's mean squared response, a linear layer (an AR filter's response to its own process is 0)."""
    torch.manual_seed(0)
    classes = int(y.max()) + 1
    conv, head = torch.nn.Conv2d(delta.shape[1], classes, 3, bias=False), torch.nn.Linear(classes, classes)
    opt = torch.optim.Adam([*conv.parameters(), *head.parameters()], lr=3e-2)
    x = delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * math.sqrt(delta[0].numel())

    def logits(v):
        return head(torch.log(conv(v).pow(2).mean((2, 3)) + 1e-6))

    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(logits(x[train]), y[train]).backward()
        opt.step()
    with torch.no_grad():
        return (logits(x[~train]).argmax(1) == y[~train]).float().mean().item()


def _iid_like(delta: torch.Tensor) -> torch.Tensor:
    """The control: Gaussian noise with δ's shape and per-image norms, no class structure."""
    noise = torch.randn(delta.shape, generator=torch.Generator().manual_seed(99))
    return noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _norms(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).double().norm(dim=1)


# --- LSP --------------------------------------------------------------------------------------


def test_lsp_noise_alone_is_linearly_separable_by_class():
    ctx = _ctx(40)  # 10 classes × (20 to fit, 20 held out)
    noise = _lsp(ctx)
    assert noise.form == "sample" and noise.delta.shape == ctx.x.shape
    train = _split(ctx.y, 20)
    fit, held_out = _linear_probe(noise.delta, ctx.y, train)
    assert fit > 0.95 and held_out > 0.95, (fit, held_out)
    _, control = _linear_probe(_iid_like(noise.delta), ctx.y, train)
    assert control < 0.3, control  # the held-out test tells structure from noise


def test_lsp_is_patch_noise_around_one_centre_per_class():
    """Constant over each patch × patch square; sample-wise draws differ within a class, but an
    image is closer to its own class's centre (form=class) than to any other's."""
    ctx = _ctx(5)
    delta = _lsp(ctx, patch=8).delta
    squares = delta.unfold(2, 8, 8).unfold(3, 8, 8)  # N×C×4×4×8×8
    assert torch.allclose(squares, squares[..., :1, :1].expand_as(squares))
    assert not torch.equal(delta[0], delta[1])  # two images of class 0: two draws
    centres = _lsp(_ctx(5), form="class").delta  # the same seed: the same centres
    assert centres.shape == (10, 3, 32, 32)
    cosine = F.normalize(delta.flatten(1), dim=1) @ F.normalize(centres.flatten(1), dim=1).t()
    assert torch.equal(cosine.argmax(1), ctx.y)
    # a 5-pixel patch on 32 pixels: 7 squares a side, the last one cut at the edge
    edge = _lsp(_ctx(2), patch=5).delta
    assert torch.equal(edge[:, :, 30:, 30:], edge[:, :, 30:31, 30:31].expand(-1, -1, 2, 2))


@pytest.mark.parametrize("options", [{}, {"radius": 1.0}, {"radius": 0.5, "form": "class"}])
def test_lsp_holds_and_spends_its_l2_budget(options):
    noise = _lsp(_ctx(4), **options)
    radius = options.get("radius", LSP_RADIUS)
    assert (noise.norm, noise.radius) == ("l2", radius) and noise.violation() is None
    norms = _norms(noise.delta)
    assert (norms <= radius * (1 + 1e-5)).all() and (norms >= radius * (1 - 1e-5)).all()  # float32 rounding
    assert noise.eps == pytest.approx(noise.delta.abs().max().item()) and noise.eps < 1
    assert LSP_RADIUS == pytest.approx(1.3041, abs=1e-4)  # the reference's 6/255·√3072


def test_lsp_refuses_more_classes_than_patch_patterns():
    ctx = _ctx(1, num_classes=10, size=8)  # one 8×8 square × 3 channels: 2³ = 8 patterns
    with pytest.raises(ValueError, match="smaller patch"):
        _lsp(ctx)


# --- AR ---------------------------------------------------------------------------------------


def _per_pixel_ar(start: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The recurrence written the slow, obvious way: raster order, one pixel at a time."""
    x = start.clone()
    channels, h, w = x.shape
    for r in range(2, h):
        for col in range(2, w):
            for ch in range(channels):
                window = [(u, v) for u in range(3) for v in range(3) if (u, v) != (2, 2)]
                x[ch, r, col] = sum(b[ch, u, v] * x[ch, r - 2 + u, col - 2 + v] for u, v in window)
    return x


def test_ar_fill_is_the_raster_order_recurrence():
    g = torch.Generator().manual_seed(0)
    b = synthetic._draw_coefficients(2, 3, g)
    start = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    fast = ar_fill(start, b.double())
    for i in range(2):
        assert torch.allclose(fast[i], _per_pixel_ar(start[i], b[i].double()), rtol=1e-9, atol=1e-9)
    assert torch.equal(fast[:, :, :2], start[:, :, :2]) and torch.equal(fast[:, :, :, :2], start[:, :, :, :2])


def test_ar_noise_is_separated_by_its_class_filters():
    ctx = _ctx(20)
    noise = _ar(ctx)
    assert noise.form == "sample" and noise.delta.shape == ctx.x.shape
    coefficients = torch.tensor(noise.meta["coefficients"])
    assert coefficients.shape == (10, 3, 3, 3) and (coefficients[:, :, 2, 2] == 0).all()
    response = ar_response(noise.delta, ar_filters(coefficients))  # N×K
    own = response[torch.arange(len(ctx.y)), ctx.y]
    others = response.masked_fill(F.one_hot(ctx.y, 10).bool(), math.inf).amin(1)
    assert (own < 1e-3).all() and (others > 100 * own.max()).all(), (own.max(), others.min())
    assert torch.equal(response.argmin(1), ctx.y)  # the filter model classifies every image
    assert not torch.equal(noise.delta[0], noise.delta[1])  # a fresh sample per image


def test_ar_noise_is_learnable_by_a_one_layer_cnn_but_not_a_linear_model():
    """Without being given the filters, a one-layer CNN learns to classify held-out AR noise;
    i.i.d. noise stays at chance, and so does a pixel-space linear model on AR noise."""
    ctx = _ctx(20, size=16)
    delta = _ar(ctx).delta
    train = _split(ctx.y, 10)
    assert _cnn_probe(delta, ctx.y, train) > 0.95
    assert _cnn_probe(_iid_like(delta), ctx.y, train) < 0.3
    assert _linear_probe(delta, ctx.y, train)[1] < 0.6


@pytest.mark.parametrize("radius", [1.0, 0.25])
def test_ar_holds_and_spends_its_l2_budget(radius):
    noise = _ar(_ctx(3), radius=radius)
    assert (noise.norm, noise.radius) == ("l2", radius) and noise.violation() is None
    norms = _norms(noise.delta)
    assert (norms <= radius * (1 + 1e-5)).all() and (norms >= radius * (1 - 1e-5)).all()  # float32 rounding
    assert noise.eps == pytest.approx(noise.delta.abs().max().item()) and noise.eps < 1


def _worst_gains(coefficients: torch.Tensor, size: int, crop: int) -> torch.Tensor:
    """Per process (K×C×3×3), a bound on the factor by which it can scale *any* start: the output
    is linear in the start and reads only its first two rows and columns, so the map from those
    to the cropped output (one matrix per channel) is built column by column; its Frobenius
    norm bounds its spectral norm, the worst-case gain."""
    boundary = [(r, c) for r in range(size) for c in range(size) if r < 2 or c < 2]
    basis = torch.zeros(len(boundary), coefficients.shape[1], size, size)
    for i, (r, c) in enumerate(boundary):
        basis[i, :, r, c] = 1
    gains = []
    for b in coefficients.float():
        out = ar_fill(basis, b.expand(len(boundary), -1, -1, -1))[:, :, crop:, crop:]  # boundary × C × output
        gains.append(out.transpose(0, 1).flatten(1).norm(dim=1).max())
    return torch.stack(gains)


def test_ar_with_100_classes_every_process_is_stable_and_the_noise_finite():
    ctx = _ctx(1, num_classes=100)
    noise = _ar(ctx)
    delta = noise.delta
    assert torch.isfinite(delta).all() and noise.violation() is None
    assert (_norms(delta) >= 1 - 1e-5).all()  # no class black or blank (the published class 9's NaN)
    coefficients = torch.tensor(noise.meta["coefficients"])
    assert coefficients.shape == (100, 3, 3, 3) and torch.isfinite(coefficients).all()
    # fresh samples of every process stay finite and bounded ...
    g = torch.Generator().manual_seed(7)
    samples = ar_fill(torch.randn(100 * 8, 3, 36, 36, generator=g), coefficients.repeat_interleave(8, 0))[:, :, 4:, 4:]
    rms = samples.flatten(1).pow(2).mean(1).sqrt()
    assert torch.isfinite(samples).all() and (rms < 10 * AR_MAX_RMS).all(), rms.max()
    # ... and not by luck: no start at all is amplified by more than 10³ (a diverging process: by
    # > 10⁶, see below; the search's 3 trials leave heavy-tailed but bounded processes, gain ~10²)
    gains = _worst_gains(coefficients, 36, 4)
    assert (gains < 1e3).all(), gains.max()
    # the 100 filters tell the 100 classes apart
    assert torch.equal(ar_response(delta, ar_filters(coefficients)).argmin(1), ctx.y)


def test_ar_search_rejects_diverging_and_non_finite_processes(monkeypatch):
    """Candidates whose output grows without bound or is not finite (a zero coefficient sum) are
    redrawn, never used, whatever the stream offers first."""
    real = synthetic._draw_coefficients
    diverging = torch.zeros(3, 3, 3)
    diverging[:, 2, 1] = 2.0  # x[r, c] = 2·x[r, c−1]: doubles along every row
    not_finite = torch.full((3, 3, 3), float("nan"))
    bad = [diverging, not_finite]

    def draws(n, channels, g):
        batch = real(n, channels, g)
        batch[0::2] = torch.stack(bad * (n // 4 + 1))[: len(batch[0::2])]  # every other candidate bad
        return batch

    monkeypatch.setattr(synthetic, "_draw_coefficients", draws)
    assert _worst_gains(diverging[None], 36, 4).item() > 1e6
    noise = _ar(_ctx(1))
    coefficients = torch.tensor(noise.meta["coefficients"])
    for b in coefficients:
        assert not torch.equal(b, diverging) and torch.isfinite(b).all()
    assert torch.isfinite(noise.delta).all()


def test_ar_search_gives_up_with_a_hint(monkeypatch):
    monkeypatch.setattr(synthetic, "MAX_AR_DRAWS", 2 * synthetic.AR_BATCH)
    with pytest.raises(RuntimeError, match="lower min_response"):
        _ar(_ctx(1), min_response=1e9)


# --- both -------------------------------------------------------------------------------------


@pytest.mark.parametrize("craft", [_lsp, lambda ctx: _lsp(ctx, form="class"), _ar], ids=["lsp", "lsp-class", "ar"])
def test_same_seed_same_bytes_another_seed_other_noise(craft):
    first, again, other = craft(_ctx(2, seed=0)), craft(_ctx(2, seed=0)), craft(_ctx(2, seed=1))
    assert torch.equal(first.delta, again.delta)
    assert not torch.equal(first.delta, other.delta)


@pytest.mark.parametrize("craft", [_lsp, _ar], ids=["lsp", "ar"])
def test_poisoned_pixels_stay_in_range(craft):
    from uebench.poison import release

    ctx = _ctx(2)
    poisoned = release(ctx.x, ctx.y, craft(ctx), quantize=False)
    assert 0 <= poisoned.min() and poisoned.max() <= 1
