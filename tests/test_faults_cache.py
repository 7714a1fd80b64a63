"""The noise cache under damage (``pytest -m faults``): every kind of bad file is detected,
reported, removed and re-crafted, and noise is never served to a cell it was not crafted for.

Each case crafts a ``smoke`` class-wise noise through the runner (the path every cell takes),
damages the cached file, asks again and checks the answer: re-crafted (``cached`` False), the
reason logged, and the new file valid again.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from conftest import require_data
from uebench.cell import CellSpec, RunSettings, prepare
from uebench.craft.cache import NoiseCache
from uebench.craft.crafting import craft as craft_request
from uebench.noise import save_noise
from uebench.progress import Reporter
from uebench.runner import load_cell

pytestmark = [pytest.mark.faults, pytest.mark.slow]


class Recorder(Reporter):
    """A quiet reporter that keeps its log lines."""

    def __init__(self):
        super().__init__(quiet=True)
        self.lines = []

    def log(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def crafted(tmp_path):
    """A smoke cell's noise, crafted into a fresh cache: (cell, loaded data, cache, key, noise)."""
    require_data()
    spec = CellSpec(attack="errmin-pgd", protocol="smoke", attack_options={"form": "class", "max_iters": "1"})
    settings = RunSettings(out=tmp_path / "out", cache_dir=tmp_path / "cache")
    cell = prepare(spec, settings)
    loaded = load_cell(cell)
    noise, key, cached, _ = craft(cell, loaded.ctx)
    assert not cached and NoiseCache(settings.cache_dir).path(key).is_file()
    return cell, loaded, NoiseCache(settings.cache_dir), key, noise


def craft(cell, ctx, reporter=None):
    crafted = craft_request(cell.noise, ctx, cell.settings.cache_dir, reporter or Recorder())
    return crafted.noise, crafted.key, crafted.cached, crafted.seconds


def _rewrite(path, change):
    """Load the raw payload, let ``change(delta, meta)`` edit it, save it back (as a Noise would)."""
    payload = torch.load(path, weights_only=True)
    delta, meta = payload["delta"], json.loads(payload["meta"])
    delta = change(delta, meta) if change else delta
    torch.save({"delta": delta, "meta": json.dumps(meta)}, path)


DAMAGE = {
    "garbage-bytes": lambda path: path.write_bytes(b"\x00not a torch file at all" * 10),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "empty-file": lambda path: path.write_bytes(b""),
    "pickled-code": lambda path: path.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR."),
    "wrong-shape": lambda path: _rewrite(path, lambda d, m: (m.update(shape=[10, 3, 16, 16]), torch.zeros(10, 3, 16, 16))[1]),
    "nan": lambda path: _rewrite(path, lambda d, m: d.index_put_((torch.tensor([0]),), torch.tensor(float("nan")))),
    "outside-eps": lambda path: _rewrite(path, lambda d, m: d * 3),
    "wrong-key": lambda path: _rewrite(path, lambda d, m: (m.update(key="0" * 20), d)[1]),
    "meta-not-json": lambda path: torch.save({"delta": torch.zeros(1), "meta": "{not json"}, path),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_cache_file_is_reported_removed_and_recrafted(crafted, damage):
    cell, loaded, cache, key, original = crafted
    DAMAGE[damage](cache.path(key))
    recorder = Recorder()
    fresh = load_cell(cell)  # as a new cell would: fresh seed streams
    noise, again_key, cached, _ = craft(cell, fresh.ctx, reporter=recorder)
    assert again_key == key and not cached, "a damaged file was served"
    assert any("discarded invalid cached noise" in line for line in recorder.lines), recorder.lines
    assert torch.equal(noise.delta.cpu(), original.delta.cpu())  # re-crafted: same seed, same noise
    assert cache.get(key, tuple(loaded.x_train.shape))[0] is not None  # and the file is whole again


def test_a_file_of_another_eps_dataset_or_protocol_version_is_never_served(crafted, tmp_path):
    """The key covers ε, dataset and protocol version, so their files live under other names; a
    file copied (or forged) under this cell's name is refused by the key *and* the identity
    stored inside it."""
    cell, loaded, cache, key, _ = crafted
    ctx = loaded.ctx
    protocol = dataclasses.replace(ctx.protocol, version=ctx.protocol.version + 1)
    others = {  # (the other cell's noise request, the context it crafts in)
        "eps": (cell.noise.at(eps=4 / 255), dataclasses.replace(ctx, eps=4 / 255)),
        "protocol_version": (cell.noise.at(protocol_version=protocol.version), dataclasses.replace(ctx, protocol=protocol)),
        "dataset": (cell.noise.at(dataset="cifar10-copy"), ctx),
    }
    for what, (request, other_ctx) in others.items():
        other = dataclasses.replace(cell, noise=request)
        # another cell: it crafts its own noise under its own key
        other_noise, other_key, cached, _ = craft(other, other_ctx)
        assert other_key != key and not cached, what
        # the original file copied under the other cell's name: refused (wrong key)
        cache.path(other_key).write_bytes(cache.path(key).read_bytes())
        recorder = Recorder()
        _, _, cached, _ = craft(other, other_ctx, reporter=recorder)
        assert not cached and any(f"key={key!r}" in line for line in recorder.lines), (what, recorder.lines)
        # forged: the original noise saved with the other key in its metadata — the identity inside refuses it
        forged = dataclasses.replace(loaded_noise := cache.get(key)[0], meta={**loaded_noise.meta, "key": other_key})
        save_noise(forged, cache.path(other_key))
        recorder = Recorder()
        _, _, cached, _ = craft(other, other_ctx, reporter=recorder)
        assert not cached and any("identity=" in line for line in recorder.lines), (what, recorder.lines)
