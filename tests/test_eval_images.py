"""``eval_images`` runs before every evaluation the training loop makes: the test set each epoch,
the test set again after early stopping restored weights, and a validation split scored through
``TrainState.evaluate`` (issue 17: early stopping's validation skipped it)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from conftest import synthetic_batch
from uebench.defenses.base import Defense
from uebench.defenses.early_stop import EarlyStop
from uebench.train import TrainData, Trainer, TrainSettings, evaluate
from uebench.train.data import as_float

SETTINGS = TrainSettings(epochs=2, batch_size=8, lr=0.05, precision="fp32", channels_last=False, eval_batch_size=5)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))


def _fit(defenses):
    x, y = synthetic_batch(n_per_class=8, num_classes=4, size=8)
    xt, yt = synthetic_batch(n_per_class=3, num_classes=4, size=8, seed=1)
    trainer = Trainer(_model(), TrainData(x, y, 4, x_clean=x), SETTINGS, defenses, torch.Generator().manual_seed(0),
                      torch.Generator().manual_seed(1), torch.device("cpu"))
    return trainer, trainer.fit(xt, yt), xt


class Seen(Defense):
    """Keeps every batch ``eval_images`` is given, unchanged."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def eval_images(self, x):
        self.batches.append(x.clone())
        return x


@pytest.mark.parametrize("first", [True, False], ids=["seen-first", "early-stop-first"])
def test_validation_and_every_test_evaluation_pass_through_eval_images(first):
    seen, stop = Seen(), EarlyStop(EarlyStop.Options(val_fraction=0.25))
    trainer, result, xt = _fit([seen, stop] if first else [stop, seen])
    test, val = as_float(xt), as_float(trainer.data.x_val)
    assert len(val) == 8 and result.selected_epoch is not None
    # each epoch: the test set, then early stopping's validation (after_epoch); at the end the
    # test set once more, on the restored weights
    expected = torch.cat([test, val] * SETTINGS.epochs + [test])
    assert torch.equal(torch.cat(seen.batches), expected)


def test_validation_accuracy_is_measured_on_the_images_eval_images_makes():
    """White images, all of class 0, and a fixed model that calls bright images class 1: scored
    as they are, validation is 0 % right; a defense whose eval_images blacks every image makes
    it 100 %, as it does the test set."""

    class Brightness(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))  # lr 0: never moves

        def forward(self, x):
            m = x.mean((1, 2, 3)) * self.w
            return torch.stack([0.5 - m, m - 0.5], 1)

    class Black(Defense):
        def eval_images(self, x):
            return torch.zeros_like(x)

    x, y = torch.full((16, 3, 8, 8), 255, dtype=torch.uint8), torch.zeros(16, dtype=torch.long)
    settings = dataclasses.replace(SETTINGS, lr=0.0)
    for defenses, expected in (([], 0.0), ([Black()], 1.0)):
        stop = EarlyStop(EarlyStop.Options(val_fraction=0.25))
        trainer = Trainer(Brightness(), TrainData(x, y, 2), settings, [*defenses, stop], torch.Generator().manual_seed(0),
                          torch.Generator().manual_seed(1), torch.device("cpu"))
        result = trainer.fit(x[:4], y[:4])
        assert [r["val_acc"] for r in result.history] == [expected] * SETTINGS.epochs
        assert [r["test_acc"] for r in result.history] == [expected] * SETTINGS.epochs


def test_without_eval_images_validation_scores_as_before():
    """Early stopping alone (identity ``eval_images``): val_acc is exactly the plain accuracy on
    the held-out images, so the committed early-stop rows reproduce bit for bit."""
    plain = []

    class Probe(Defense):
        def after_epoch(self, state, control):
            plain.append(evaluate(state.model, state.data.x_val, state.data.y_val, SETTINGS, torch.device("cpu")))

    _, result, _ = _fit([EarlyStop(EarlyStop.Options(val_fraction=0.25)), Probe()])
    assert [r["val_acc"] for r in result.history] == plain
