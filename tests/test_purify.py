"""``uebench.api.Purifier``: a defense plugin that brings its own model (AVATAR's diffusion model, here
a toy 2× downsample-upsample) loads it once, applies it to every image the defender holds in
batches, and gets its output clamped to [0, 1]."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from conftest import json_out, require_data
from uebench.api import Purifier
from uebench.plugins import get_host
from uebench.train import TrainData

PLUGIN = '''
"""A toy purifier plugin: its "model" is a 2x average-pool then nearest upsample."""
import torch.nn.functional as F

from uebench.api import Purifier, hookimpl


class Blocky(Purifier):
    """2x downsample-upsample purifier (test plugin)."""

    name = "blocky"
    batch_size = 7
    loads = 0  # how many times a model was loaded (class-wide, for the test)
    seen = []  # the batches purify was handed

    def load(self, device):
        type(self).loads += 1
        return lambda x: F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest") * self.gain

    gain = 1.0

    def purify(self, model, x, generator):
        type(self).seen.append((x.dtype, float(x.min()), float(x.max()), len(x)))
        return model(x)


@hookimpl
def register_defenses(register):
    register(Blocky)
'''


@pytest.fixture
def blocky(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "blocky.py").write_text(textwrap.dedent(PLUGIN))
    cls = get_host((str(folder),)).defenses.get("blocky").cls
    cls.loads, cls.seen, cls.gain = 0, [], 1.0
    return cls, folder


def _is_blocky(x):
    return all(torch.equal(x[..., i::2, j::2], x[..., ::2, ::2]) for i in (0, 1) for j in (0, 1))


def test_a_plugin_purifier_loads_its_model_once_and_purifies_every_held_image(blocky):
    cls, _ = blocky
    assert issubclass(cls, Purifier)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (20, 3, 8, 8), generator=g, dtype=torch.uint8)
    clean, val = torch.randint(0, 256, x.shape, generator=g, dtype=torch.uint8), x[:5].clone()
    data = TrainData(x, torch.arange(20) % 4, 4, x_clean=clean, x_val=val, y_val=torch.arange(5) % 4)
    out = cls().prepare(data, torch.Generator())
    assert cls.loads == 1  # once per run, not per tensor or batch
    for got, source in ((out.x, x), (out.x_clean, clean), (out.x_val, val)):
        assert got.dtype == torch.float32 and got.shape == source.shape
        assert _is_blocky(got) and not _is_blocky(source.float())
        expected = torch.nn.functional.avg_pool2d(source.float() / 255, 2).repeat_interleave(2, -1).repeat_interleave(2, -2)
        assert torch.allclose(got, expected, atol=1e-6)
    # batched, float pixels in [0, 1]: 20 → 7+7+6, 20 → 7+7+6, 5 → 5
    assert sorted(n for *_, n in cls.seen) == sorted([7, 7, 6, 7, 7, 6, 5])
    assert all(dtype == torch.float32 and 0 <= lo and hi <= 1 for dtype, lo, hi, _ in cls.seen)
    assert torch.equal(out.y, data.y)


def test_purified_images_are_clamped_and_test_images_untouched(blocky):
    cls, _ = blocky
    cls.gain = 3.0  # a purifier that overshoots the pixel range
    x = torch.full((4, 3, 8, 8), 200, dtype=torch.uint8)
    out = cls().prepare(TrainData(x, torch.arange(4), 4), torch.Generator()).x
    assert out.max() == 1 and 0 <= out.min()
    test = torch.rand(2, 3, 8, 8)
    assert torch.equal(cls().eval_images(test), test)


def test_a_purifier_that_changes_the_shape_or_returns_nan_is_refused():
    class Shrink(Purifier):
        name = "shrink"

        def load(self, device):
            return None

        def purify(self, model, x, generator):
            return x[..., :4, :4]

    class Broken(Shrink):
        def purify(self, model, x, generator):
            return x * float("nan")

    data = TrainData(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.arange(2), 2)
    with pytest.raises(ValueError, match="keep the shape"):
        Shrink().prepare(data, torch.Generator())
    with pytest.raises(ValueError, match="non-finite"):
        Broken().prepare(data, torch.Generator())
    with pytest.raises(NotImplementedError, match="load"):
        Purifier().prepare(data, torch.Generator())


@pytest.mark.slow
def test_a_plugin_purifier_trains_a_smoke_cell(invoke, tmp_path, blocky):
    require_data()
    _, folder = blocky
    row = json_out(invoke("--plugins-dir", folder, "run", "--protocol", "smoke", "--json", "--attack", "random",
                          "-o", "form=class", "--defense", "blocky", "--out", tmp_path / "out"))
    assert row["defense"] == "blocky" and json.loads(row["defense_options"]) == {"blocky": {}}
    assert 0 <= row["final_test_acc"] <= 1
