"""Batched crop+flip, protocols and their subsets, seed streams, and the training loop with its
events on synthetic data."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import synthetic_batch
from uebench.defenses.base import Defense
from uebench.protocols import PROTOCOLS, default_protocol_name, get_protocol, stratified_subset
from uebench.registry import UnknownNameError
from uebench.seeds import STREAMS, seed_streams
from uebench.train import TrainData, Trainer, TrainSettings, evaluate
from uebench.train.augment import random_crop_flip
from uebench.train.step import SGDStep

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


SETTINGS = TrainSettings(epochs=2, batch_size=8, lr=0.05, precision="fp32", channels_last=False, eval_batch_size=5)


def _data(x=None):
    x0, y = synthetic_batch(n_per_class=8, num_classes=4, size=8)
    return TrainData(x0 if x is None else x, y, 4, x_clean=x0)


def _test_set():
    return synthetic_batch(n_per_class=3, num_classes=4, size=8, seed=1)


def _train(data=None, defenses=(), epochs=2, model=None):
    model = model or _tiny_model()
    settings = dataclasses.replace(SETTINGS, epochs=epochs)
    trainer = Trainer(model, data or _data(), settings, defenses, torch.Generator().manual_seed(0),
                      torch.Generator().manual_seed(1), torch.device("cpu"))
    return model, trainer.fit(*_test_set())


def test_trainer_history():
    model, result = _train(epochs=3)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    for r in result.history:
        assert set(r) >= {"epoch", "train_loss", "train_acc", "test_acc", "lr", "seconds"} | {f"test_acc_c{k}" for k in range(4)}
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["train_acc"] <= 1
        assert r["train_loss"] > 0
        # 3 test images per class: the class accuracies average to the overall one
        assert sum(r[f"test_acc_c{k}"] for k in range(4)) / 4 == pytest.approx(r["test_acc"])
    assert result.final == result.history[-1]
    assert result.final_test_acc == result.history[-1]["test_acc"] and result.selected_epoch == 3
    assert result.oracle_best["test_acc"] == max(r["test_acc"] for r in result.history)
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine ends at 0
    assert model.training


def test_training_reads_the_released_images():
    """The same seeds on other released bytes give other curves; the same bytes, the same curves."""
    x, _ = synthetic_batch(n_per_class=8, num_classes=4, size=8)
    _, clean = _train()
    _, again = _train(_data(x.clone()))
    _, shifted = _train(_data((x.int() + 8).clamp(max=255).to(torch.uint8)))
    assert [r["train_loss"] for r in again.history] == [r["train_loss"] for r in clean.history]
    assert clean.history[0]["train_loss"] != shifted.history[0]["train_loss"]
    # float release: the same pixels as floats train exactly like the uint8 ones
    _, as_float = _train(_data(x.float() / 255))
    assert [r["train_loss"] for r in as_float.history] == [r["train_loss"] for r in clean.history]


class Recorder(Defense):
    """Logs every event the loop calls, and asks to stop after ``stop_at`` epochs."""

    name = "recorder"

    def __init__(self, stop_at=None):
        super().__init__()
        self.calls, self.stop_at = [], stop_at

    def prepare(self, data, generator):
        self.calls.append("prepare")
        return data

    def augment(self, x, target, generator):
        self.calls.append("augment")
        assert x.dtype == torch.float32 and target.shape == (len(x), 4)
        return x, target

    def loss(self, model, x, target, generator=None):
        self.calls.append("loss")
        return super().loss(model, x, target, generator)

    def after_epoch(self, state, control):
        self.calls.append(f"after_epoch {state.epoch}")
        state.log(recorded=state.epoch * 10)
        control.stop = state.epoch == self.stop_at

    def after_fit(self, state, control):
        self.calls.append("after_fit")

    def eval_images(self, x):
        self.calls.append("eval")
        return x


def test_events_run_in_order_and_stop_ends_training():
    rec = Recorder(stop_at=2)
    _, result = _train(defenses=[rec], epochs=4)
    per_epoch = ["augment", "loss"] * 4 + ["eval"] * 3  # 32 images / batch 8; 12 test images / eval batch 5
    assert rec.calls == ["prepare", *per_epoch, "after_epoch 1", *per_epoch, "after_epoch 2", "after_fit"]
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert [r["recorded"] for r in result.history] == [10, 20]  # state.log lands in the curve


def test_defenses_augment_in_the_order_given():
    class Add(Defense):
        def __init__(self, value):
            super().__init__()
            self.value, self.seen = value, []

        def augment(self, x, target, generator):
            self.seen.append(float(x.max()))
            return torch.full_like(x, self.value), target

    first, second = Add(0.25), Add(0.75)
    _train(defenses=[first, second], epochs=1)
    assert second.seen and all(v == 0.25 for v in second.seen)  # second sees what first produced


def test_weight_decay_covers_every_parameter():
    """The seed paper's rule (its code's SGD over model.parameters()), for crafting and training alike."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    step = SGDStep(model, 0.1)
    groups = step.optimizer.param_groups
    assert len(groups) == 1 and groups[0]["weight_decay"] == 5e-4 and groups[0]["momentum"] == 0.9
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.parameters()}
    # a zero loss still moves BatchNorm's weight: decay applies to it
    before = model[1].weight.detach().clone()
    step((model(torch.rand(2, 3, 5, 5)) * 0).sum())
    assert not torch.equal(model[1].weight, before)


def test_seed_streams_are_independent_and_stable():
    a, b = seed_streams(0), seed_streams(2)
    values = [getattr(a, s) for s in STREAMS]
    assert len(set(values)) == len(STREAMS)
    assert a == seed_streams(0)
    # seed s's victim init must not be seed s+k's craft stream (the old seed + k scheme did that)
    assert not {getattr(a, s) for s in STREAMS} & {getattr(b, s) for s in STREAMS}
    assert all(0 <= v < 2**63 for v in values)
    g1, g2 = a.generator("order"), a.generator("order")
    assert torch.equal(torch.randperm(10, generator=g1), torch.randperm(10, generator=g2))
    with pytest.raises(ValueError, match="seed must be >= 0"):
        seed_streams(-1)


def test_evaluate_counts_correct_predictions():
    class Fixed(nn.Module):
        def forward(self, x):
            return F.one_hot(torch.zeros(len(x), dtype=torch.long), 3).float()  # always class 0

    x = torch.zeros(7, 3, 4, 4, dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 2, 0, 1, 1])
    acc = evaluate(Fixed(), x, y, TrainSettings(1, 1, 0.1, eval_batch_size=3), torch.device("cpu"))
    assert acc == pytest.approx(3 / 7)


def test_no_hflip_keeps_orientation_and_the_same_crops():
    x = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    flipped = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(1))
    kept = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(1), hflip=False)
    assert torch.equal(kept, x) and not torch.equal(flipped, x)
    padded = random_crop_flip(x, generator=torch.Generator().manual_seed(2), hflip=False)
    for i in range(len(x)):  # a crop of the padded image, never a mirrored one
        assert any(torch.equal(padded[i], c) for c in list(_candidates(x[i], 4))[0::2])


def test_cpu_protocols_mean_fp32_by_auto_so_rows_reproduce_on_any_cpu():
    cpu = torch.device("cpu")
    for name in ("cpu", "cpu-full", "smoke"):
        assert get_protocol(name).resolve_precision("auto", cpu) == "fp32"
        assert get_protocol(name).resolve_precision("bf16", cpu) == "bf16"  # an explicit choice wins
    assert get_protocol("paper").precision is None  # auto: the hardware's best


def test_bf16_on_a_gpu_without_it_is_refused_before_any_work(monkeypatch):
    """A pre-Ampere GPU cannot run bf16: --precision bf16 there is bad input, not a slow crash."""
    from uebench.compute import resolve_precision
    from uebench.options import OptionError

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    with pytest.raises(OptionError, match="precision bf16: cuda:Tesla V100 has no bf16 support"):
        resolve_precision("bf16", torch.device("cuda"))
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert resolve_precision("fp16", torch.device("cuda")) == "fp16"


def test_on_the_cpu_crops_are_drawn_from_the_runs_augment_stream_itself():
    """CPU rows were made with crops drawn from ``augment``: that stream must not change."""
    from uebench.train.loop import crop_generator

    g = torch.Generator().manual_seed(5)
    assert crop_generator(g, torch.device("cpu")) is g


def test_a_compiled_victim_trains_like_the_eager_one():
    """``--compile``: torch.compile changes kernels, not the training — the same per-epoch losses
    and accuracies within float tolerance, state_dict keys unchanged (early stopping restores them)."""
    eager_model, eager = _train(epochs=2)
    compiled = _tiny_model()
    keys = list(compiled.state_dict())
    settings = dataclasses.replace(SETTINGS, epochs=2, compile="default")
    trainer = Trainer(compiled, _data(), settings, [], torch.Generator().manual_seed(0), torch.Generator().manual_seed(1),
                      torch.device("cpu"))
    result = trainer.fit(*_test_set())
    for a, b in zip(eager.history, result.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["test_acc"] == pytest.approx(a["test_acc"], abs=1e-6)
    assert list(compiled.state_dict()) == keys


def test_an_unknown_compile_mode_is_refused():
    from uebench.compute import compile_model

    with pytest.raises(ValueError, match="compile mode 'fast' is not one of none, default"):
        compile_model(_tiny_model(), "fast")
