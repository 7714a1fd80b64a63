"""Each defense does what its paper says, composition rules hold, and every defense (and a
composition) trains a ``smoke`` cell end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_clean_error, json_out, require_data, synthetic_batch
from uebench.defenses.compose import check_composition
from uebench.options import OptionError
from uebench.plugins import get_host
from uebench.train import TrainData, Trainer, TrainSettings

DEFENSES = ["adv-train", "autoaugment", "bit-depth", "cutmix", "cutout", "early-stop", "gaussian", "gaussian-noise", "grayscale",
            "jpeg", "mixup", "none", "orthogonal-projection", "ueraser"]


def make(name, **options):
    cls = get_host().defenses.get(name).cls
    return cls(cls.Options(**options) if cls.Options else None)


def _model(num_classes=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))


def test_every_defense_the_issue_names_is_registered():
    assert set(DEFENSES) <= set(get_host().defenses.names())


# --- composition ---------------------------------------------------------------------------


@pytest.mark.parametrize(("names", "message"), [
    (["none", "cutmix"], "`none` means standard training"),
    (["jpeg", "jpeg"], "'jpeg' is listed 2 times"),
    (["mixup", "cutmix"], "mixup and cutmix do not compose"),
    (["adv-train", "ueraser"], "adv-train and ueraser both replace the training loss"),
    ([], "at least one defense"),
])
def test_bad_compositions_are_rejected(names, message):
    with pytest.raises(OptionError, match=message):
        check_composition([make(n) for n in names])


def test_good_compositions_pass():
    for names in (["jpeg", "cutmix"], ["early-stop", "adv-train"], ["grayscale", "autoaugment", "cutout"], ["none"]):
        check_composition([make(n) for n in names])


# --- the augmentations ---------------------------------------------------------------------


def test_cutout_zeroes_one_square_per_image_at_its_own_place():
    x = torch.ones(64, 3, 32, 32)
    xa, _ = make("cutout").augment(x, torch.eye(64), torch.Generator().manual_seed(0))
    zero = xa[:, 0] == 0
    assert torch.equal(zero, (xa == 0).all(1))  # all channels of a pixel together
    for i in range(64):
        rows, cols = torch.nonzero(zero[i], as_tuple=True)
        assert 0 < len(rows) <= 16 * 16
        # a (border-clipped) axis-aligned rectangle: every pixel of its bounding box is zero
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert rows.max() - rows.min() < 16 and cols.max() - cols.min() < 16
    assert len({tuple(torch.nonzero(zero[i])[0].tolist()) for i in range(64)}) > 20  # per image, not per batch


def test_mixup_blends_images_and_labels_in_one_ratio():
    n = 8
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 4, 4) / n
    target = torch.eye(n)
    xa, ta = make("mixup").augment(x, target, torch.Generator().manual_seed(3))
    for i in range(n):
        # image i became λ·x_i + (1-λ)·x_j; its target holds λ on i and 1-λ on j
        (nonzero,) = torch.nonzero(ta[i] > 1e-9, as_tuple=True)
        expected = sum(ta[i, j] * x[j] for j in nonzero.tolist())
        assert torch.allclose(xa[i], expected, atol=1e-6)
    assert not torch.equal(xa, x)


def test_autoaugment_draws_per_image_and_is_seeded():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).expand(64, 3, 32, 32).contiguous()
    aa = make("autoaugment")
    a, _ = aa.augment(x, torch.eye(64), torch.Generator().manual_seed(1))
    b, _ = aa.augment(x, torch.eye(64), torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    distinct = {a[i].sum().item() for i in range(64)}
    assert len(distinct) > 10  # identical inputs, many different outputs: choices are per image
    assert 0 <= a.min() and a.max() <= 1


def test_ueraser_takes_the_worst_view_and_leaves_the_global_rng_alone():
    ue = make("ueraser", repeats=3)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    target = F.one_hot(torch.arange(6) % 4, 4).float()
    state = torch.get_rng_state()
    v1 = ue.views(x, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(v1, ue.views(x, torch.Generator().manual_seed(5)))
    assert v1.shape == x.shape and 0 <= v1.min() and v1.max() <= 1 and not torch.equal(v1, x)
    model = _model()
    model.eval()
    loss, logits = ue.loss(model, x, target, torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    per_view = torch.stack([F.cross_entropy(model(ue.views(x, gen)), target, reduction="none") for _ in range(3)])
    assert loss.item() == pytest.approx(per_view.max(0).values.mean().item(), rel=1e-5)
    assert logits.shape == (6, 4)


# --- adversarial training ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_adv_train_examples_stay_in_the_ball_raise_the_loss_and_keep_bn_stats(mode):
    adv = make("adv-train", attack_mode=mode)
    model = _model()
    model.train()
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    target = F.one_hot(torch.arange(16) % 4, 4).float()
    stats = [b.clone() for b in model.buffers()]
    x_adv = adv.perturb(model, x, target, torch.Generator().manual_seed(1))
    assert model.training  # mode restored
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))  # BN running stats untouched
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    with torch.no_grad():
        model.eval()
        assert F.cross_entropy(model(x_adv), target) > F.cross_entropy(model(x), target)


# --- early stopping ------------------------------------------------------------------------

SETTINGS = TrainSettings(epochs=4, batch_size=8, lr=0.1, precision="fp32", channels_last=False, eval_batch_size=16)


def _fit(defenses, released=None):
    x, y = synthetic_batch(n_per_class=10, num_classes=4, size=8)
    xt, yt = synthetic_batch(n_per_class=4, num_classes=4, size=8, seed=1)
    data = TrainData(released if released is not None else x, y, 4, x_clean=x)
    trainer = Trainer(_model(), data, SETTINGS, defenses, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1),
                      torch.device("cpu"))
    return trainer, trainer.fit(xt, yt), (x, y, xt, yt)


@pytest.mark.parametrize("clean_val", [False, True])
def test_early_stop_carves_validation_before_training_and_restores_the_best_epoch(clean_val):
    x, _ = synthetic_batch(n_per_class=10, num_classes=4, size=8)
    released = (x.int() + 8).clamp(max=255).to(torch.uint8)  # "poisoned": every pixel shifted
    stop = make("early-stop", val_fraction=0.25, clean_val=clean_val)
    trainer, result, (_, y, xt, yt) = _fit([stop], released)
    data = trainer.data
    assert len(data) == 30 and len(data.y_val) == 10  # carved out of the 40 training images
    # the held-out images are training images (released or clean), and no longer trained on
    source = x if clean_val else released
    pool = {bytes(img.numpy()) for img in source}
    assert all(bytes(img.numpy()) in pool for img in data.x_val)
    assert not {bytes(img.numpy()) for img in data.x} & {bytes(img.numpy()) for img in data.x_val}
    # the epoch with the best validation accuracy was selected, and the row measures its weights
    val = [r["val_acc"] for r in result.history]
    assert result.selected_epoch == 1 + val.index(max(val))
    assert result.final_test_acc == pytest.approx(result.history[result.selected_epoch - 1]["test_acc"])
    assert "val_acc" in result.history[0]


def test_early_stop_patience_stops_training():
    stop = make("early-stop", val_fraction=0.25, patience=1)
    _, result, _ = _fit([stop])
    val = [r["val_acc"] for r in result.history]
    best = val.index(max(val))
    assert len(result.history) == min(SETTINGS.epochs, best + 2)  # one epoch without improvement, then stop


# --- squeezing -----------------------------------------------------------------------------


def test_squeezes_transform_the_training_set_once_and_grayscale_the_test_images():
    x, y = synthetic_batch(n_per_class=4, num_classes=4, size=16)
    data = TrainData(x, y, 4, x_clean=x)
    gen = torch.Generator()
    gray = make("grayscale").prepare(data, gen)
    assert gray.x.dtype == torch.uint8 and torch.equal(gray.x[:, 0], gray.x[:, 1]) and torch.equal(gray.x[:, 1], gray.x[:, 2])
    assert torch.equal(gray.x_clean, gray.x)  # the defender squeezes all the data they hold
    test = make("grayscale").eval_images(x.float() / 255)
    assert torch.allclose(test[:, 0], test[:, 2])
    bits = make("bit-depth", bits=3).prepare(data, gen).x
    assert torch.equal(bits % 32, torch.zeros_like(bits)) and (bits.int() - x.int()).abs().max() < 32
    lossy = make("jpeg", quality=10).prepare(data, gen).x
    near = make("jpeg", quality=100).prepare(data, gen).x
    assert lossy.dtype == torch.uint8 and lossy.shape == x.shape
    assert (near.float() - x.float()).abs().mean() < (lossy.float() - x.float()).abs().mean()
    # float (un-quantized) releases are rounded to 8 bits first, as saving an image would
    assert torch.equal(make("bit-depth", bits=3).prepare(TrainData(x.float() / 255, y, 4), gen).x, bits)


# --- end to end: every defense and a composition trains a smoke cell ---------------------


@pytest.mark.slow
@pytest.mark.parametrize("defenses", [[d] for d in DEFENSES] + [["jpeg", "early-stop", "cutmix"]], ids="+".join)
def test_every_defense_trains_a_smoke_cell(invoke, tmp_path, defenses):
    require_data()
    args = ["run", "--protocol", "smoke", "--json", "--attack", "random", "-o", "form=class", "--out", tmp_path / "out"]
    for d in defenses:
        args += ["--defense", d]
    row = json_out(invoke(*args))
    assert row["defense"] == "+".join(defenses)
    assert list(json.loads(row["defense_options"])) == sorted(defenses)
    for key in ("final_test_acc", "oracle_best_test_acc", "final_train_acc"):
        assert 0 <= row[key] <= 1
    assert 1 <= row["selected_epoch"] <= row["epochs"]
    if "early-stop" in defenses:
        assert row["train_size"] == 450  # 10% of the 500 smoke images held out
    curve = (tmp_path / "out" / "curves" / f"{row['run_id']}.csv").read_text().splitlines()
    assert len(curve) == 1 + row["epochs"] and "test_acc_c9" in curve[0]


def test_bad_composition_on_the_command_line_exits_2_before_any_work(invoke, tmp_path):
    result = invoke("run", "--protocol", "smoke", "--attack", "none", "--defense", "mixup", "--defense", "cutmix",
                    "--out", tmp_path / "out")
    assert "mixup and cutmix do not compose" in assert_clean_error(result, 2)
    assert not (tmp_path / "out").exists()
