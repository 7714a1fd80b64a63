"""Error-maximizing baselines and the clean-trained source model they attack (cached artifact)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_ctx
from uebench.attacks.errmax import deepfool_linf
from uebench.craft.solvers import pgd
from uebench.craft.source_models import clean_source

EPS = 8 / 255


def _linear(num_classes=10, size=32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, num_classes)).eval()


def test_clean_source_is_trained_once_cached_as_safetensors_and_revalidated(tmp_path):
    from safetensors.torch import load_file

    ctx = make_ctx(n_per_class=2)
    ctx.cache_dir = tmp_path
    first, info = clean_source(ctx, "cnn-tiny")
    assert info["cached"] is False and 0 <= info["train_acc"] <= 1
    (path,) = tmp_path.glob("source-*.safetensors")
    assert set(load_file(str(path))) == set(first.state_dict())  # plain tensors, no pickle
    fresh = make_ctx(n_per_class=2)  # the same data and seed in a new context
    fresh.cache_dir = tmp_path
    again, info2 = clean_source(fresh, "cnn-tiny")
    assert info2["cached"] is True and info2["key"] == info["key"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))
    # other training data → another key; a corrupted file is discarded and trained again
    other = make_ctx(n_per_class=2, seed=1)
    other.cache_dir = tmp_path
    assert clean_source(other, "cnn-tiny")[1]["key"] != info["key"]
    path.write_bytes(path.read_bytes()[:50])
    ctx.generator = torch.Generator().manual_seed(0)
    _, info3 = clean_source(ctx, "cnn-tiny")
    assert info3["cached"] is False and info3["key"] == info["key"]


def test_pgd_ascends_for_errmax_and_descends_for_errmin():
    model = _linear()
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8)
    zero = torch.zeros_like(x)
    up = pgd(model, x, y, zero, EPS, EPS / 4, 10, descend=False, device=torch.device("cpu"))
    down = pgd(model, x, y, zero, EPS, EPS / 4, 10, descend=True, device=torch.device("cpu"))
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y)
        assert F.cross_entropy(model((x + up).clamp(0, 1)), y) > clean > F.cross_entropy(model((x + down).clamp(0, 1)), y)
    assert up.abs().max() <= EPS + 1e-7 and down.abs().max() <= EPS + 1e-7


def test_deepfool_crosses_the_nearest_boundary_of_a_linear_model():
    model = _linear(num_classes=4, size=8)
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.25
    with torch.no_grad():
        y = model(x).argmax(1)  # every image correctly classified by construction
    r = deepfool_linf(model, x, y, 4, overshoot=0.02, steps=5)
    with torch.no_grad():
        assert bool((model((x + r).clamp(0, 1)).argmax(1) != y).all())
    # minimal: a third of the step never crosses
    with torch.no_grad():
        assert bool((model(x + r / 3).argmax(1) == y).float().mean() > 0.5)


@pytest.mark.parametrize("name", ["errmax-pgd", "errmax-universal"])
def test_errmax_noise_raises_the_source_models_error(name, monkeypatch):
    """Against a source that classifies every clean image correctly, the noise makes it err."""
    from uebench.attacks import errmax
    from uebench.plugins import get_host

    ctx = make_ctx(n_per_class=3)
    source = _linear()
    with torch.no_grad():  # images the source classifies right, every class present: a small step along its own weights
        w = source[1].weight.view(10, 3, 32, 32)
        x = (ctx.x.float() / 255 * 0.2 + 0.4 + 0.03 * w[ctx.y].sign()).clamp(0, 1)
        ctx.x = (x * 255).round().to(torch.uint8)
        assert torch.equal(source(ctx.x.float() / 255).argmax(1), ctx.y)
    monkeypatch.setattr(errmax, "clean_source", lambda ctx, name: (source, {"key": "test"}))
    cls = get_host().attacks.get(name).cls
    noise = cls().craft(ctx)
    meta = noise.meta
    assert meta["source_error_clean"] == 0 and meta["source_error_poisoned"] > 0.5
    assert noise.delta.abs().max() <= ctx.eps + 1e-6
    if name == "errmax-universal":
        assert len(meta["fooling_rates"]) == ctx.num_classes and all(0 <= r <= 1 for r in meta["fooling_rates"])
