"""Poison detectors on tiny synthetic poisoned-vs-clean pairs, their readers and the CLI.

The synthetic "clean" set has labels that no pixel predicts (random images, random labels): a
simple model cannot generalise on it, only memorise.  The poisoned copy adds a class-wise pattern
δ_k — the shortcut an availability poison plants.  A detector that scores fit instead of held-out
accuracy, ignores the labels, or always answers "poisoned" fails one of these tests.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_clean_error, require_data
from uebench.detectors.base import SuspectSet
from uebench.detectors.linear_separability import LinearSeparability
from uebench.detectors.simple_networks import SimpleNetworks
from uebench.detectors.suspect_files import read_suspect

K, N, SHAPE = 4, 400, (3, 8, 8)


def pair(n: int = N, strength: float = 0.15, seed: int = 0) -> tuple[SuspectSet, SuspectSet]:
    """(clean, class-wise poisoned) tiny sets with the same images and labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=g) * 0.7 + 0.15
    y = torch.arange(n) % K
    pattern = (torch.rand(K, *SHAPE, generator=g) * 2 - 1).sign() * strength
    poisoned = (x + pattern[y]).clamp(0, 1)
    return SuspectSet(x, y, K), SuspectSet(poisoned, y, K, x_clean=x)


def run(detector, suspect, seed: int = 0):
    return detector.detect(suspect, torch.Generator().manual_seed(seed), torch.device("cpu"))


def udp(**kw):
    return SimpleNetworks(SimpleNetworks.Options(**{"hidden": 64, "epochs": 30, **kw}))


def test_simple_networks_flags_a_classwise_poison_and_not_the_clean_set():
    clean, poisoned = pair()
    on_clean, on_poison = run(udp(), clean), run(udp(), poisoned)
    assert on_poison.flagged and on_poison.score > 0.95, on_poison
    assert not on_clean.flagged and on_clean.score < 0.45, on_clean  # chance is 0.25


def test_simple_networks_scores_held_out_accuracy_not_the_fit():
    """The MLP memorises the clean set's random labels (fit near 1) and still must not flag it:
    a detector scoring the fit would."""
    clean, _ = pair()
    verdict = run(udp(epochs=200, lr=3e-3), clean)
    assert verdict.details["mlp_fit_acc"] > 0.9, verdict.details
    assert verdict.score == max(verdict.details["linear_held_out_acc"], verdict.details["mlp_held_out_acc"])
    assert not verdict.flagged, verdict


def test_simple_networks_is_deterministic_and_seeded():
    _, poisoned = pair(strength=0.03)
    first, again = run(udp(), poisoned, seed=3), run(udp(), poisoned, seed=3)
    assert first.score == again.score and first.details == again.details


def test_linear_separability_on_images_flags_the_shortcut():
    clean, poisoned = pair(n=2000)  # n ≫ 2d: random labels are not linearly separable
    detector = LinearSeparability(LinearSeparability.Options(threshold=0.6))
    assert run(detector, poisoned).score > 0.95
    assert run(detector, clean).score < 0.45


def test_linear_separability_on_perturbations_needs_originals_and_separates_classwise_noise():
    clean, poisoned = pair()
    detector = LinearSeparability(LinearSeparability.Options(inputs="perturbation"))
    verdict = run(detector, poisoned)
    assert verdict.inputs == "perturbation" and verdict.threshold == 0.5 and verdict.flagged
    noise = 0.1 * torch.randn(clean.x.shape, generator=torch.Generator().manual_seed(1))
    random_delta = SuspectSet((clean.x + noise).clamp(0, 1), clean.y, K, x_clean=clean.x)
    assert not run(detector, random_delta).flagged  # i.i.d. noise carries no class
    with pytest.raises(ValueError, match="clean originals"):
        run(detector, clean)


def test_options_are_checked():
    with pytest.raises(ValueError, match="held_out"):
        SimpleNetworks.Options(held_out=1.5).validate()
    with pytest.raises(ValueError, match="inputs"):
        LinearSeparability.Options(inputs="labels").validate()


# --- reading a user's dataset --------------------------------------------------------------


def write_class_folders(root, x: torch.Tensor, y: torch.Tensor):
    from torchvision.io import write_png

    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / f"class{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        write_png(img, str(folder / f"{i:04d}.png"))


def test_reads_class_folders_and_npz(tmp_path):
    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(12) % 3
    write_class_folders(tmp_path / "folder", x, y)
    suspect, names = read_suspect(tmp_path / "folder")
    assert names == ["class0", "class1", "class2"] and suspect.num_classes == 3
    assert sorted(map(tuple, suspect.x.flatten(1).tolist())) == sorted(map(tuple, x.flatten(1).tolist()))
    np.savez(tmp_path / "set.npz", x=x.permute(0, 2, 3, 1).numpy(), y=y.numpy())
    from_npz, _ = read_suspect(tmp_path / "set.npz")
    assert torch.equal(from_npz.x, x) and torch.equal(from_npz.y, y)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "no class folders"),
    (lambda p: (p.mkdir(), (p / "0.png").write_bytes(b"x")), "labels are missing"),
    (lambda p: (p.mkdir(), (p / "cat").mkdir()), "hold no images"),
    (lambda p: p.with_suffix(".txt").write_text("hi"), "cannot read"),
    (lambda p: np.savez(p.with_suffix(".npz"), images=np.zeros((2, 4, 4, 3), np.uint8)), "no label array"),
    (lambda p: np.savez(p.with_suffix(".npz"), x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, np.int64)), "never unpickles"),
])
def test_unreadable_sets_fail_clearly(tmp_path, invoke, make, message):
    target = tmp_path / "suspect"
    make(target)
    path = next(p for p in tmp_path.iterdir())
    result = invoke("detect", path, "--out", tmp_path / "out")
    out = assert_clean_error(result)
    assert str(path.name) in out and message in out, out


def test_detect_path_writes_rows_and_flags_the_poison(tmp_path, invoke):
    clean, poisoned = pair(n=600)
    for name, s in (("clean", clean), ("poisoned", poisoned)):
        x = (s.x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.savez(tmp_path / f"{name}.npz", x=x, y=s.y.numpy())
    verdicts = {}
    for name in ("clean", "poisoned"):
        result = invoke("detect", tmp_path / f"{name}.npz", "--detector", "simple-networks", "-o", "simple-networks.hidden=64",
                        "-o", "simple-networks.epochs=30", "--out", tmp_path / "out", "--json")
        assert result.exit_code == 0, result.output
        verdicts[name] = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdicts["poisoned"]["flagged"] and not verdicts["clean"]["flagged"]
    rows = pd.read_csv(tmp_path / "out" / "detections.csv")
    assert len(rows) == 2 and set(rows["detector"]) == {"simple-networks"}
    assert rows["data_digest"].nunique() == 2 and rows["calibration"].str.contains("CIFAR-10").all()


def test_detect_usage_errors(tmp_path, invoke):
    assert "PATH" in assert_clean_error(invoke("detect", "--out", tmp_path))
    assert "not both" in assert_clean_error(invoke("detect", tmp_path, "--attack", "random", "--out", tmp_path))
    out = assert_clean_error(invoke("detect", "--attack", "random", "--detector", "simple-netwroks", "--out", tmp_path))
    assert "simple-networks" in out  # did you mean
    out = assert_clean_error(invoke("detect", "--attack", "random", "-o", "linear-separability.inputs=labels", "--out", tmp_path))
    assert "labels" in out


def test_detectors_list_shows_both(invoke):
    result = invoke("detectors", "list", "--json")
    assert result.exit_code == 0, result.output
    names = {r["name"] for r in json.loads(result.stdout)}
    assert {"simple-networks", "linear-separability"} <= names


@pytest.mark.slow
def test_detect_a_cell_and_skip_it_when_scored(tmp_path, invoke):
    require_data()
    args = ("detect", "--attack", "random", "-o", "form=class", "--protocol", "smoke", "--seed", "0", "--seed", "1",
            "-o", "simple-networks.epochs=3", "--out", tmp_path, "--json")
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    rows = pd.read_csv(tmp_path / "detections.csv")
    assert len(rows) == 4 and set(rows["seed"]) == {0, 1} and rows["set_key"].nunique() == 2
    assert (rows["attack"] == "random").all() and "defense" not in rows and (rows["protocol"] == "smoke").all()
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert len(pd.read_csv(tmp_path / "detections.csv")) == 4  # nothing scored twice


@pytest.mark.slow
def test_a_sweep_scores_each_released_set_once(tmp_path, invoke):
    require_data()
    matrix = tmp_path / "m.toml"
    matrix.write_text('protocol = "smoke"\nseeds = [0]\ndefenses = ["none", "cutout"]\ndetectors = ["linear-separability"]\n'
                      '[[attacks]]\nname = "random"\noptions = {form = "class"}\n'
                      '[[cells]]\nattack = "none"\nseeds = [0, 1]\n')
    dry = invoke("sweep", matrix, "--out", tmp_path / "out", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "detection: 3 released set(s) to score" in dry.output  # random s0 (two defenses, one set), none s0, none s1
    result = invoke("sweep", matrix, "--out", tmp_path / "out", "--detect-only")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out" / "results.csv").exists()  # --detect-only trains nothing
    rows = pd.read_csv(tmp_path / "out" / "detections.csv")
    assert len(rows) == 3 and rows.groupby("attack").size().to_dict() == {"none": 2, "random": 1}
    again = invoke("sweep", matrix, "--out", tmp_path / "out", "--detect-only")
    assert again.exit_code == 0 and "0 detection verdict(s) written, 3 already there" in again.output, again.output
    bad = tmp_path / "bad.toml"
    bad.write_text('protocol = "smoke"\n[[attacks]]\nname = "random"\n')
    assert "names no detectors" in assert_clean_error(invoke("sweep", bad, "--out", tmp_path / "o2", "--detect-only"))


def test_the_board_table_counts_flags_per_attack_and_rate():
    from uebench.detection_board import detection_table

    def row(attack, rate, seed, score, flagged, detector="simple-networks", version="3"):
        return {"protocol": "cpu", "protocol_version": version, "attack": attack, "attack_options": "{}", "poison_rate": rate,
                "seed": seed, "detector": detector, "score": score, "threshold": 0.6, "flagged": flagged}

    rows = [row("none", "1.0", s, 0.40 + s / 100, False) for s in range(3)]
    rows += [row("lsp", "1.0", s, 0.9, True) for s in range(3)] + [row("lsp", "0.2", 0, 0.5, False)]
    rows += [row("lsp", "1.0", 0, 0.1, False, version="2")]  # an older protocol version: not shown
    rows += [{**row("", "0.0", 0, 0.99, True), "protocol": ""}]  # a user's file: not a board row
    lines = detection_table(pd.DataFrame(rows).astype(str))
    body = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert body == ["| none | 1 | 0.410 ± 0.010 | 0/3 |", "| lsp | 1 | 0.900 ± 0.000 | 3/3 |", "| lsp | 0.2 | 0.500 | 0/1 |"]
    assert detection_table(None) == [] and detection_table(pd.DataFrame(rows[-1:]).astype(str)) == []
