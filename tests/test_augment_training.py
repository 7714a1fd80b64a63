"""Batched crop+flip, protocols and their subsets, and the training loop on synthetic data."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import synthetic_batch
from uebench.augment import random_crop_flip
from uebench.defenses.base import Defense
from uebench.noise import Noise
from uebench.protocols import PROTOCOLS, default_protocol_name, get_protocol, stratified_subset
from uebench.registry import UnknownNameError
from uebench.training import PoisonedSet, TrainSettings, evaluate, train_victim

# --- augment ------------------------------------------------------------------------------


def test_padding_zero_is_identity_or_hflip():
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    same = [torch.equal(out[i], x[i]) for i in range(len(x))]
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))]
    assert all(s or f for s, f in zip(same, flipped, strict=True))
    assert any(same) and any(flipped)  # both happen across 64 images


def _candidates(img, padding):
    padded = F.pad(img, (padding,) * 4)
    h, w = img.shape[1:]
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            yield crop
            yield crop.flip(-1)


def test_padded_output_is_a_crop_of_the_padded_image():
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    for i in range(len(x)):
        assert any(torch.equal(out[i], c) for c in _candidates(x[i], 2)), f"image {i} is no crop/flip"
    assert not all(torch.equal(out[i], x[i]) for i in range(len(x)))


def test_crop_flip_is_seeded_and_per_image():
    x = torch.rand(32, 3, 8, 8)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(5))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(5))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert random_crop_flip(x, generator=torch.Generator().manual_seed(5)).is_contiguous(memory_format=torch.channels_last)


# --- protocols ----------------------------------------------------------------------------


def test_protocols():
    assert set(PROTOCOLS) >= {"paper", "cpu", "smoke"}
    for name, p in PROTOCOLS.items():
        assert p.name == name and p.version >= 1
        assert p.epochs >= 1 and p.batch_size >= 1 and p.lr > 0
        s = p.train_settings("fp32")
        assert isinstance(s, TrainSettings) and s.epochs == p.epochs and s.lr == p.lr
        assert p.as_dict()["name"] == name
    paper = get_protocol("paper")
    assert (paper.epochs, paper.batch_size, paper.lr, paper.train_per_class) == (60, 128, 0.025, None)
    assert default_protocol_name() == ("paper" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UnknownNameError, match="Did you mean 'smoke'"):
        get_protocol("smok")


def test_protocols_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_protocol("smoke").epochs = 3


def test_stratified_subset():
    y = torch.arange(5).repeat(10)[torch.randperm(50, generator=torch.Generator().manual_seed(0))]
    idx = stratified_subset(y, 3, seed=1)
    assert torch.equal(idx, idx.sort().values)
    assert len(idx) == 15 and len(set(idx.tolist())) == 15
    assert torch.bincount(y[idx]).tolist() == [3] * 5
    assert torch.equal(idx, stratified_subset(y, 3, seed=1))
    assert not torch.equal(idx, stratified_subset(y, 3, seed=2))
    assert torch.equal(stratified_subset(y, None, 0), torch.arange(50))
    with pytest.raises(ValueError, match="asks for 11"):
        stratified_subset(y, 11, 0)


# --- training -----------------------------------------------------------------------------


def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))


def _train(noise=None, poisoned=None, epochs=2):
    x, y = synthetic_batch(n_per_class=8, num_classes=4, size=8)
    xt, yt = synthetic_batch(n_per_class=3, num_classes=4, size=8, seed=1)
    settings = TrainSettings(epochs=epochs, batch_size=8, lr=0.05, precision="fp32", channels_last=False, eval_batch_size=5)
    model = _tiny_model()
    result = train_victim(model, PoisonedSet(x, y, noise, poisoned), xt, yt, 4, settings, Defense(),
                          torch.Generator().manual_seed(0), torch.device("cpu"))
    return model, result


def test_train_victim_history():
    model, result = _train(epochs=3)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    for r in result.history:
        assert set(r) >= {"epoch", "train_loss", "train_acc", "test_acc", "lr", "seconds"}
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["train_acc"] <= 1
        assert r["train_loss"] > 0
    assert result.final == result.history[-1]
    assert result.best["test_acc"] == max(r["test_acc"] for r in result.history)
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine ends at 0
    assert model.training


def test_training_sees_the_noise():
    """The same seeds with and without δ must give different training curves."""
    n = 32
    delta = torch.full((4, 3, 8, 8), 8 / 255)
    delta[1::2] *= -1
    _, clean = _train()
    _, poisoned = _train(Noise(delta, "class", 8 / 255))
    _, masked = _train(Noise(delta, "class", 8 / 255), torch.zeros(n, dtype=torch.bool))
    assert clean.history[0]["train_loss"] != poisoned.history[0]["train_loss"]
    # a poison mask of all-False is exactly clean training
    assert [r["train_loss"] for r in masked.history] == [r["train_loss"] for r in clean.history]


def test_evaluate_counts_correct_predictions():
    class Fixed(nn.Module):
        def forward(self, x):
            return F.one_hot(torch.zeros(len(x), dtype=torch.long), 3).float()  # always class 0

    x = torch.zeros(7, 3, 4, 4, dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 2, 0, 1, 1])
    acc = evaluate(Fixed(), x, y, TrainSettings(1, 1, 0.1, eval_batch_size=3), torch.device("cpu"))
    assert acc == pytest.approx(3 / 7)
