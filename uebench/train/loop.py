"""The one training loop: a victim trained on released data under a list of defenses.

The loop owns the data (on the compute device), model, optimizer, schedule, epoch loop and
evaluation; defenses are callbacks on its events (``uebench.defenses.base.Defense`` lists them),
in the order given.  Per epoch it measures clean test accuracy, so every run has a curve, but
the row's ``final_test_acc`` is what training *ends* with — after a defense such as early
stopping restored the weights it chose; the test-set maximum is kept only as an oracle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from uebench.compute import autocast, compile_model
from uebench.defenses.base import Defense, loss_owner
from uebench.failures import TrainingDiverged
from uebench.progress import NULL_REPORTER, Reporter
from uebench.train.augment import random_crop_flip
from uebench.train.data import TrainData, as_float
from uebench.train.events import TrainControl, TrainState
from uebench.train.step import SGDStep


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
    compile: str = "none"  # a ``compute.COMPILE_MODES`` mode for the victim (numerics within float tolerance of eager)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    final_test_acc: float = math.nan  # of the weights training ended with (after any restore)
    selected_epoch: int = 0  # whose weights those are

    @property
    def final(self) -> dict:
        return self.history[-1]

    @property
    def oracle_best(self) -> dict:
        """The epoch with the highest *test* accuracy: what a defender holding the test labels
        could pick.  Not a defense; shown beside the real ones to mark the ceiling."""
        return max(self.history, key=lambda r: r["test_acc"])


@torch.no_grad()
def predict_correct(model, x, y, settings: TrainSettings, device, transform=None) -> torch.Tensor:
    """Bool N: which of the images ``x`` (uint8 or float) ``model`` classifies correctly, in eval mode."""
    was_training = model.training
    model.eval()
    hits = []
    for start in range(0, len(y), settings.eval_batch_size):
        xb = as_float(x[start : start + settings.eval_batch_size])
        if transform is not None:
            xb = transform(xb)
        if settings.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(device, settings.precision):
            logits = model(xb)
        hits.append(logits.argmax(1) == y[start : start + settings.eval_batch_size])
    model.train(was_training)
    return torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool, device=y.device)


def evaluate(model, x, y, settings: TrainSettings, device, transform=None) -> float:
    """Top-1 accuracy (in [0, 1]) on the images ``x``."""
    return predict_correct(model, x, y, settings, device, transform).float().sum().item() / max(len(y), 1)


def crop_generator(augment: torch.Generator, device: torch.device) -> torch.Generator:
    """Where crop offsets and flips are drawn: on the CPU, the run's ``augment`` stream itself (as
    every CPU row was made); on an accelerator, a generator on that device seeded from it, so a
    step draws its augmentation without a host-to-device copy (GPU runs draw a different stream
    than CPU runs; their float numerics differ anyway)."""
    if device.type == "cpu":
        return augment
    seed = int(torch.randint(0, 2**62, (1,), generator=augment))
    return torch.Generator(device=device).manual_seed(seed)


class Trainer:
    """Train ``model`` on ``data`` under ``defenses`` (composition checked by the caller, see
    ``uebench.defenses.compose``); ``fit`` runs the events in this order::

        prepare (each defense, in order) → for each epoch: [for each batch: crop+flip → augment
        (each defense) → loss (the one defense that owns it) → SGD step] → test evaluation →
        after_epoch (each defense) → stop? → after_fit (each defense) → final test evaluation

    Every evaluation — the test set each epoch and at the end, and whatever a defense scores
    through ``TrainState.evaluate`` (early stopping's validation split) — sees the images as
    every defense's ``eval_images`` makes them (``correctly_classified``, ``accuracy``).
    """

    def __init__(self, model: torch.nn.Module, data: TrainData, settings: TrainSettings, defenses: Sequence[Defense],
                 order: torch.Generator, augment: torch.Generator, device: torch.device,
                 reporter: Reporter = NULL_REPORTER, hflip: bool = True):
        self.model, self.settings, self.device, self.reporter = model, settings, device, reporter
        self.defenses = list(defenses) or [Defense()]
        self.order, self.augment, self.hflip = order, augment, hflip
        self.crop_generator = crop_generator(augment, device)
        for d in self.defenses:
            d.reporter = reporter  # a long prepare (purification, a fitted projection) shows a bar
            data = d.prepare(data, augment)
        self.data = data
        if len(data) == 0:
            raise ValueError("no training images left after the defenses' prepare step")
        self.loss_fn = loss_owner(self.defenses).loss

    def eval_transform(self, x: torch.Tensor) -> torch.Tensor:
        for d in self.defenses:
            x = d.eval_images(x)
        return x

    def correctly_classified(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Bool N: which of the images ``x`` ``model`` classifies correctly once every defense's
        ``eval_images`` has run on them — the one way this loop evaluates."""
        return predict_correct(model, x, y, self.settings, self.device, self.eval_transform)

    def accuracy(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 accuracy (in [0, 1]) as :meth:`correctly_classified` measures it (``TrainState.evaluate``)."""
        return evaluate(model, x, y, self.settings, self.device, self.eval_transform)

    def fit(self, x_test: torch.Tensor, y_test: torch.Tensor) -> TrainResult:
        s, data, model = self.settings, self.data, compile_model(self.model, self.settings.compile)
        steps_per_epoch = math.ceil(len(data) / s.batch_size)
        step = SGDStep(model, s.lr, momentum=s.momentum, weight_decay=s.weight_decay, device_type=self.device.type,
                       precision=s.precision, steps_total=s.epochs * steps_per_epoch)
        state = TrainState(model, data, s.epochs, self.device, lambda x, y: self.accuracy(model, x, y))
        control = TrainControl()
        result, start = TrainResult(history=state.history), time.perf_counter()
        bar = self.reporter.task("training", total=s.epochs)
        for epoch in range(1, s.epochs + 1):
            state.epoch = epoch
            model.train()
            order = torch.randperm(len(data), generator=self.order).to(data.y.device)
            # summed on the device: one host sync per epoch, not per step
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), dtype=torch.long, device=self.device)
            for first in range(0, len(data), s.batch_size):
                index = order[first : first + s.batch_size]
                xb = data.batch(index)
                xb = random_crop_flip(xb, generator=self.crop_generator, hflip=self.hflip)
                target = F.one_hot(data.y[index], data.num_classes).float()
                for d in self.defenses:
                    xb, target = d.augment(xb, target, self.augment)
                if s.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with autocast(self.device, s.precision):
                    loss, logits = self.loss_fn(model, xb, target, self.augment)
                step(loss)
                loss_sum += loss.detach().float() * len(index)
                correct += (logits.argmax(1) == target.argmax(1)).sum()
            hits = self.correctly_classified(model, x_test, y_test)
            row = {
                "epoch": epoch,
                "train_loss": loss_sum.item() / len(data),
                "train_acc": correct.item() / len(data),
                "test_acc": hits.float().mean().item() if len(hits) else 0.0,
                "lr": step.lr,
                "seconds": time.perf_counter() - start,
            }
            if not math.isfinite(row["train_loss"]):
                raise TrainingDiverged(
                    f"training loss became {row['train_loss']} in epoch {epoch} (victim under defense "
                    f"{'+'.join(d.name or 'none' for d in self.defenses)!r}, lr {step.lr:g}); no row was written"
                )
            row.update(class_accuracy(hits, y_test, data.num_classes))
            state.history.append(row)
            for d in self.defenses:
                d.after_epoch(state, control)
            bar.update(1, loss=row["train_loss"], train_acc=row["train_acc"], test_acc=row["test_acc"],
                       **{k: v for k, v in row.items() if k == "val_acc"})
            if control.stop:
                break
        bar.close()
        for d in self.defenses:
            d.after_fit(state, control)
        if control.selected_epoch is None:
            result.selected_epoch, result.final_test_acc = state.history[-1]["epoch"], state.history[-1]["test_acc"]
        else:  # weights were restored: measure what the model now holds
            result.selected_epoch = control.selected_epoch
            result.final_test_acc = self.accuracy(model, x_test, y_test)
        result.seconds = time.perf_counter() - start
        return result


def class_accuracy(hits: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict:
    """``test_acc_c<k>``: accuracy on the test images of class k (a one-class poison shows here)."""
    if not len(y):
        return {}
    total = torch.bincount(y, minlength=num_classes).clamp_(min=1)
    right = torch.bincount(y, weights=hits.float(), minlength=num_classes)
    return {f"test_acc_c{k}": v for k, v in enumerate((right / total).tolist())}
