"""Training a victim on a (poisoned) training set and measuring clean test accuracy.

The whole training set stays on the compute device as one uint8 tensor; each batch is turned
into float pixels, poisoned (δ added, then clamped), crop+flipped and handed to the defense —
all on batched tensors, so throughput is the model's, not a data loader's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from uebench.augment import random_crop_flip
from uebench.compute import autocast
from uebench.defenses.base import Defense
from uebench.noise import Noise, apply_noise, to_unit_float
from uebench.progress import NULL_REPORTER, Reporter


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    precision: str = "fp32"
    channels_last: bool = True
    # Small on purpose: on CPU a no-grad forward over 10k images took 6.6 s at batch 1000 and
    # 3.3 s at batch 128 (cnn-small, 2 cores) — large activations cost more than they save.
    eval_batch_size: int = 128


@dataclass
class PoisonedSet:
    """A training set, its noise and which samples carry it."""

    x: torch.Tensor  # uint8 N×C×H×W, on the compute device
    y: torch.Tensor  # int64 N
    noise: Noise | None = None
    poisoned: torch.Tensor | None = None  # bool N; None = all samples poisoned

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Float pixels in [0, 1] of samples ``index``, with their noise applied."""
        x = to_unit_float(self.x[index])
        if self.noise is None:
            return x
        delta = self.noise.for_batch(index, self.y[index])
        if self.poisoned is not None:
            delta = delta * self.poisoned[index].view(-1, 1, 1, 1).to(delta.dtype)
        return apply_noise(x, delta)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict:
        return self.history[-1]

    @property
    def best(self) -> dict:
        return max(self.history, key=lambda r: r["test_acc"])


@torch.no_grad()
def evaluate(model, x_uint8, y, settings: TrainSettings, device) -> float:
    """Top-1 accuracy (in [0, 1]) on clean uint8 images."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(y), settings.eval_batch_size):
        xb = to_unit_float(x_uint8[start : start + settings.eval_batch_size])
        if settings.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(device, settings.precision):
            logits = model(xb)
        correct += (logits.argmax(1) == y[start : start + settings.eval_batch_size]).sum().item()
    model.train(was_training)
    return correct / max(len(y), 1)


def train_victim(
    model: torch.nn.Module,
    train: PoisonedSet,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
    settings: TrainSettings,
    defense: Defense,
    generator: torch.Generator,
    device: torch.device,
    reporter: Reporter = NULL_REPORTER,
    augment: bool = True,
) -> TrainResult:
    """SGD + momentum, cosine schedule without restart, evaluated on clean test data every epoch."""
    params_decay = [p for p in model.parameters() if p.ndim > 1]
    params_plain = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": params_decay, "weight_decay": settings.weight_decay}, {"params": params_plain, "weight_decay": 0.0}],
        lr=settings.lr,
        momentum=settings.momentum,
        nesterov=False,
    )
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs * steps_per_epoch)
    # fp16 needs loss scaling so small gradients do not flush to zero; bf16 and fp32 do not
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    result, start = TrainResult(), time.perf_counter()
    bar = reporter.task("training", total=settings.epochs)
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=generator).to(train.x.device)
        loss_sum, correct, seen = 0.0, 0, 0
        for start_i in range(0, len(train), settings.batch_size):
            index = order[start_i : start_i + settings.batch_size]
            xb = train.batch(index)
            if augment:
                xb = random_crop_flip(xb, generator=generator)
            target = F.one_hot(train.y[index], num_classes).float()
            xb, target = defense.augment(xb, target, generator)
            if settings.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(device, settings.precision):
                loss, logits = defense.loss(model, xb, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.item() * len(index)
            correct += (logits.argmax(1) == target.argmax(1)).sum().item()
            seen += len(index)
        test_acc = evaluate(model, x_test, y_test, settings, device)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "test_acc": test_acc,
            "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - start,
        }
        result.history.append(row)
        bar.update(1, loss=row["train_loss"], train_acc=row["train_acc"], test_acc=test_acc)
    bar.close()
    result.seconds = time.perf_counter() - start
    return result
