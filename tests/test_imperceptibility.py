"""Imperceptibility columns (``uebench.imperceptibility``): the metrics against known values and
an independent float64 computation, poisoned-only averaging, clean cells, the row, the backfill
of rows written before the columns, and the leaderboard's table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from uebench.imperceptibility import COLUMNS, METRICS, measure, measure_released
from uebench.poison import release_scope

SHIFT = 8 / 255


def _constant(n=4, value=128, shape=(3, 32, 32)):
    return torch.full((n, *shape), value, dtype=torch.uint8)


def test_a_uniform_shift_of_8_over_255_on_a_constant_image_has_the_known_values():
    clean = _constant()
    out = measure(clean, clean + 8)
    assert set(out) == set(COLUMNS) and out["poisoned_images"] == 4
    assert out["psnr_mean"] == pytest.approx(20 * math.log10(255 / 8), abs=1e-3)  # 30.069 dB
    assert out["psnr_worst"] == pytest.approx(out["psnr_mean"])
    assert out["linf_max"] == pytest.approx(SHIFT, abs=1e-8)
    assert out["l2_mean"] == pytest.approx(SHIFT * math.sqrt(3 * 32 * 32), rel=1e-6)
    assert out["l0_values_mean"] == 3 * 32 * 32
    # a constant image has no variance: SSIM is its luminance term alone
    mu1, mu2, c1 = 136 / 255, 128 / 255, 0.01**2
    assert out["ssim_mean"] == pytest.approx((2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1), abs=2e-4)
    assert out["ssim_mean"] < 1 and out["imperceptibility_note"] == ""


def test_identical_images_have_ssim_1_no_change_and_an_infinite_psnr_said_in_the_note():
    clean = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = measure(clean, clean.clone())
    assert out["ssim_mean"] == pytest.approx(1, abs=1e-6) and out["ssim_worst"] == pytest.approx(1, abs=1e-6)
    assert out["psnr_mean"] == math.inf and out["psnr_worst"] == math.inf
    assert out["linf_max"] == 0 and out["l2_mean"] == 0 and out["l0_values_mean"] == 0
    assert "3 of 3 poisoned images unchanged" in out["imperceptibility_note"]


def _ssim_float64(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s SSIM of one C×H×W image pair in [0, 1], written from the paper with scipy
    (11-tap Gaussian, σ = 1.5, whole-sample mirrored borders), averaged over channels and pixels."""
    from scipy.ndimage import gaussian_filter

    def blur(x):
        return gaussian_filter(x, sigma=1.5, truncate=5 / 1.5, mode="mirror")

    c1, c2, maps = 0.01**2, 0.03**2, []
    for x, y in zip(a, b, strict=True):
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        maps.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(maps))


def test_psnr_and_ssim_agree_with_an_independent_float64_computation_per_image():
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=g)
    strength = torch.tensor([1, 2, 4, 8, 16]).view(-1, 1, 1, 1)  # one image per noise level: mean ≠ worst
    noise = torch.randint(-1, 2, clean.shape, generator=g) * strength
    released = (clean.int() + noise).clamp(0, 255).to(torch.uint8)
    out = measure(clean, released)
    a, b = released.double().numpy() / 255, clean.double().numpy() / 255
    psnr = [10 * math.log10(1 / np.mean((x - y) ** 2)) for x, y in zip(a, b, strict=True)]
    ssim = [_ssim_float64(x, y) for x, y in zip(a, b, strict=True)]
    assert out["psnr_mean"] == pytest.approx(np.mean(psnr), abs=1e-3) and out["psnr_worst"] == pytest.approx(min(psnr), abs=1e-3)
    assert out["ssim_mean"] == pytest.approx(np.mean(ssim), abs=2e-4) and out["ssim_worst"] == pytest.approx(min(ssim), abs=2e-4)
    assert out["ssim_worst"] < out["ssim_mean"] < 1
    diff = a - b
    assert out["linf_max"] == pytest.approx(np.abs(diff).max(), abs=1e-8)
    assert out["l2_mean"] == pytest.approx(np.mean([np.linalg.norm(d) for d in diff]), rel=1e-5)
    assert out["l0_values_mean"] == pytest.approx(np.mean([(d != 0).sum() for d in diff]), abs=1e-3)


def test_only_the_poisoned_images_are_averaged_at_a_poison_rate_below_1():
    from uebench.noise import Noise

    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(40) % 4
    delta = (torch.rand(x.shape, generator=g) * 2 - 1) * SHIFT
    released = release_scope(x, y, Noise(delta, "sample", SHIFT), rate=0.25, classes=(), drop=False, quantize=True,
                             generator=torch.Generator().manual_seed(3))
    mask = released.poisoned
    assert int(mask.sum()) == 10
    out = measure_released(released)
    alone = measure(x[mask], released.images[mask])
    assert out == alone and out["poisoned_images"] == 10
    assert math.isfinite(out["psnr_mean"]) and out["imperceptibility_note"] == "" and out["linf_max"] <= SHIFT + 1e-9
    diluted = measure(x, released.images)  # what averaging over every image would report
    assert diluted["l2_mean"] == pytest.approx(out["l2_mean"] * 10 / 40, rel=1e-5)
    assert "30 of 40 poisoned images unchanged" in diluted["imperceptibility_note"]


@pytest.mark.parametrize("case", ["no noise", "rate 0", "dropped"])
def test_a_clean_cell_says_so_with_no_made_up_value(case):
    from uebench.noise import Noise

    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    y = torch.arange(12) % 3
    noise = None if case == "no noise" else Noise(torch.full((12, 3, 8, 8), SHIFT), "sample", SHIFT)
    released = release_scope(x, y, noise, rate={"rate 0": 0.0, "dropped": 0.5}.get(case, 1.0), classes=(),
                             drop=case == "dropped", quantize=True, generator=torch.Generator().manual_seed(5))
    out = measure_released(released)
    assert out["poisoned_images"] == 0 and all(out[m] == "" for m in METRICS)
    assert out["imperceptibility_note"].startswith("clean")


# --- the row and the backfill (real CIFAR-10 at the smoke scale: 500 images) ----------------------


def _run(invoke, out, cache, *args):
    from conftest import json_out, require_data

    require_data()
    return json_out(invoke("run", "--protocol", "smoke", "--json", "--out", out, "--cache-dir", cache, *args))


def _strip(csv, columns=COLUMNS):
    """The results file as an uebench from before the columns wrote it."""
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame.drop(columns=[c for c in columns if c in frame]).to_csv(csv, index=False)


def test_a_row_has_the_columns_and_the_backfill_gives_the_same_values_from_the_cache_or_by_regenerating(invoke, tmp_path):
    from uebench.results import COLUMNS as ROW

    out, cache = tmp_path / "out", tmp_path / "cache"
    errmin = _run(invoke, out, cache, "--attack", "errmin-pgd", "-o", "form=class", "-o", "attack.max_iters=1")
    lsp = _run(invoke, out, cache, "--attack", "lsp")
    clean = _run(invoke, out, cache, "--attack", "none")
    for row in (errmin, lsp):
        assert list(row) == list(ROW) and row["poisoned_images"] == 500
        assert 20 < row["psnr_worst"] <= row["psnr_mean"] < math.inf and 0 < row["ssim_worst"] <= row["ssim_mean"] < 1
        assert 0 < row["l2_mean"] and 0 < row["l0_values_mean"] <= 3 * 32 * 32
    assert errmin["linf_max"] <= 8 / 255 + 1e-6 and errmin["imperceptibility_note"] == ""
    assert clean["poisoned_images"] == 0 and clean["psnr_mean"] == ""

    csv = out / "results.csv"
    _strip(csv)
    result = invoke("leaderboard", "imperceptibility", out, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert "2 row(s) measured, 1 clean, 0 unavailable" in result.output
    rows = pd.read_csv(csv, keep_default_na=False).set_index("attack")
    for row in (errmin, lsp):
        filled = rows.loc[row["attack"]]
        for metric in METRICS:
            assert float(filled[metric]) == pytest.approx(float(row[metric]), rel=1e-6), metric
        assert filled["imperceptibility_note"].startswith("backfilled")
    assert "cached noise" in rows.loc["errmin-pgd", "imperceptibility_note"]
    assert "regenerated" in rows.loc["lsp", "imperceptibility_note"]
    assert int(rows.loc["none", "poisoned_images"]) == 0

    # a measured row is left alone; an errmin row whose noise is gone is marked, never estimated
    again = invoke("leaderboard", "imperceptibility", csv, "--cache-dir", cache)
    assert "0 row(s) measured, 0 clean, 0 unavailable" in again.output
    _strip(csv)
    (cache / f"{errmin['noise_key']}.pt").unlink()
    gone = invoke("leaderboard", "imperceptibility", csv, "--cache-dir", cache)
    assert "1 row(s) measured, 1 clean, 1 unavailable" in gone.output, gone.output
    rows = pd.read_csv(csv, keep_default_na=False).set_index("attack")
    assert all(rows.loc["errmin-pgd", m] == "" for m in ("poisoned_images", *METRICS))
    note = rows.loc["errmin-pgd", "imperceptibility_note"]
    assert f"noise {errmin['noise_key']} not in the noise cache" in note and "uebench run --attack errmin-pgd" in note


def test_the_backfill_refuses_a_row_that_todays_code_names_otherwise(tmp_path):
    from conftest import require_data
    from uebench.imperceptibility import Backfill

    require_data()
    row = {"run_id": "r", "cell_key": "0" * 20, "attack": "random", "attack_options": '{"form":"sample"}', "dataset": "cifar10",
           "protocol": "smoke", "protocol_version": "1", "seed": "0", "eps": str(8 / 255), "poison_rate": "1.0",
           "poison_classes": "", "drop_poisoned": "False", "quantized": "True", "defense": "none", "defense_options": "{}",
           "victim": "cnn-tiny", "victim_options": "{}", "uebench_version": "0.1.0", "device": "cpu:1threads",
           "precision": "fp32", "threads": "1", "data_digest": "x", "torch_version": torch.__version__.split("+")[0],
           "noise_key": "", "inputs": ""}
    values = Backfill(tmp_path / "cache").values(row)
    assert values["poisoned_images"] == "" and all(values[m] == "" for m in METRICS)
    assert "does not name this cell as the row did" in values["imperceptibility_note"]
    assert "protocol_version (row 1" in values["imperceptibility_note"]


# --- the leaderboard ----------------------------------------------------------------------------


def test_the_board_shows_psnr_ssim_and_linf_beside_accuracy_only_once_rows_have_them():
    from test_leaderboard import _row

    from uebench.leaderboard import render

    rows = [_row(1, attack="none", acc=0.9), _row(2, attack="random", form="sample", acc=0.85),
            _row(3, attack="random", form="sample", seed=1, acc=0.87)]
    assert "Imperceptibility" not in render(pd.DataFrame(rows), "cpu")  # boards from before: unchanged
    rows[0].update(poisoned_images=0, imperceptibility_note="clean: no image of the released set is poisoned")
    for row, psnr in ((rows[1], 30.0), (rows[2], 32.0)):
        row.update(poisoned_images=1000, psnr_mean=psnr, psnr_worst=psnr - 1, ssim_mean=0.95, ssim_worst=0.9,
                   linf_max=8 / 255, l2_mean=1.5, l0_values_mean=3000.0)
    text = render(pd.DataFrame(rows), "cpu")
    assert "| attack | acc. no defense (%) | PSNR mean | PSNR worst | SSIM mean | SSIM worst | L∞ |" in text
    assert "| random form=sample | 86.00 | 31.00 | 30.00 | 0.9500 | 0.9000 | 8.00/255 | 1.500 | 3000 | 2/2 |" in text
    assert "| none | 90.00 | clean |" in text
