"""UEraser's schedule (Qin et al. 2023): ``adversarial_epochs=E`` runs the max-over-``repeats`` loss
for the first E epochs and one augmented view a batch after; unset (the default, UEraser-Max)
every epoch, as before the option existed — with the cell keys of rows written then."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from conftest import synthetic_batch
from uebench.cellkey import identity
from uebench.defenses.base import Defense
from uebench.options import options_json
from uebench.plugins import get_host
from uebench.train import TrainData, Trainer, TrainSettings

STEPS = 2  # 16 images, batch 8


def make(**options):
    cls = get_host().defenses.get("ueraser").cls
    return cls(cls.Options(**options))


class Counting(nn.Module):
    """Counts the forward passes made in training mode (the test evaluations run in eval mode)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(4, 4))
        self.calls = 0

    def forward(self, x):
        self.calls += self.training
        return self.net(x)


class Probe(Defense):
    """Records the model's training-mode calls after each epoch."""

    name = "probe"

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def after_epoch(self, state, control):
        self.seen.append(self.model.calls)


def calls_per_epoch(ueraser, epochs=3):
    x, y = synthetic_batch(n_per_class=4, num_classes=4, size=32)
    model = Counting()
    probe = Probe(model)
    settings = TrainSettings(epochs=epochs, batch_size=8, lr=0.05, channels_last=False, eval_batch_size=16)
    trainer = Trainer(model, TrainData(x, y, 4), settings, [ueraser, probe], torch.Generator().manual_seed(0),
                      torch.Generator().manual_seed(1), torch.device("cpu"))
    result = trainer.fit(x[:8], y[:8])
    seen = [0, *probe.seen]
    return [b - a for a, b in zip(seen, seen[1:], strict=False)], result


def test_adversarial_epochs_then_one_view_a_batch():
    per_epoch, result = calls_per_epoch(make(repeats=3, adversarial_epochs=1))
    assert per_epoch == [3 * STEPS, STEPS, STEPS]
    assert [r["ueraser_views"] for r in result.history] == [3, 1, 1]  # the curve shows the schedule


def test_default_is_ueraser_max_every_epoch_and_lite_is_one_view_throughout():
    per_epoch, _ = calls_per_epoch(make(repeats=3))
    assert per_epoch == [3 * STEPS] * 3
    lite, _ = calls_per_epoch(make(repeats=3, adversarial_epochs=0))
    assert lite == [STEPS] * 3


def test_a_second_run_with_the_same_defense_starts_the_schedule_again():
    ue = make(repeats=2, adversarial_epochs=1)
    first, _ = calls_per_epoch(ue, epochs=2)
    second, _ = calls_per_epoch(ue, epochs=2)
    assert first == second == [2 * STEPS, STEPS]


def test_after_the_adversarial_epochs_the_loss_is_plain_cross_entropy_on_one_view():
    ue = make(repeats=4, adversarial_epochs=0)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    target = F.one_hot(torch.arange(6) % 4, 4).float()
    model = Counting().eval()
    loss, logits = ue.loss(model, x, target, torch.Generator().manual_seed(9))
    view = ue.views(x, torch.Generator().manual_seed(9))
    assert loss.item() == torch.nn.functional.cross_entropy(model(view), target).item()
    assert torch.equal(logits, model(view))


def test_the_default_keeps_the_cell_key_of_rows_written_before_the_option_and_the_row_names_the_variant():
    default = make()
    assert default.options.adversarial_epochs is None and default.options.repeats == 5
    written = json.dumps({"ueraser": json.loads(options_json(default.options))})
    assert json.loads(written)["ueraser"] == {"adversarial_epochs": None, "repeats": 5}  # the row: null = every epoch
    before = json.dumps({"ueraser": {"repeats": 5}})  # a row of before the option
    assert identity({"defense_options": written}, ("defense_options",)) == identity({"defense_options": before},
                                                                                      ("defense_options",))
    scheduled = json.dumps({"ueraser": json.loads(options_json(make(adversarial_epochs=6).options))})
    assert identity({"defense_options": scheduled}, ("defense_options",)) != identity({"defense_options": before},
                                                                                        ("defense_options",))
