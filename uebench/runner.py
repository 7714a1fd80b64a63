"""One cell end to end: load → craft → release → train → row.

The cell arrives prepared (``uebench.cell.prepare``: every name, option and key known); this
module only does the work, in order, and *returns* the row and the per-epoch curve: the caller
that owns the results CSV (the CLI, a sweep driver) writes them (``uebench.record.record``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from uebench.attacks.base import CraftContext
from uebench.cell import Cell, noise_request, source_victim
from uebench.compute import prepare_model
from uebench.craft.crafting import PASS_THROUGH, Crafted, craft, other_crafter
from uebench.failures import ComponentError
from uebench.imperceptibility import measure_released, unavailable
from uebench.poison import release_scope
from uebench.progress import NULL_REPORTER, Reporter
from uebench.protocols import stratified_subset
from uebench.record import result_row
from uebench.seeds import seed_global, seed_streams
from uebench.train import TrainData, Trainer


@dataclass
class CellData:
    """A cell's tensors on its device, and the context its attack crafts in."""

    streams: object  # uebench.seeds.SeedStreams
    num_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ctx: CraftContext


def load_cell(cell: Cell, reporter: Reporter = NULL_REPORTER) -> CellData:
    """Load the protocol's train/test subsets onto the device and build the crafting context."""
    protocol, device = cell.protocol, cell.device
    cell.numerics.apply()  # the pinned CPU thread count, before any arithmetic
    streams = seed_streams(cell.spec.seed)
    data = cell.dataset.load(cell.settings.data_dir)
    train_idx = stratified_subset(data.y_train, protocol.train_per_class, protocol.subset_seed)
    test_idx = stratified_subset(data.y_test, protocol.test_per_class, protocol.subset_seed)
    x_train, y_train = data.x_train[train_idx].to(device), data.y_train[train_idx].to(device)
    x_test, y_test = data.x_test[test_idx].to(device), data.y_test[test_idx].to(device)
    image_shape = tuple(x_train.shape[1:])

    def build_model(name: str) -> torch.nn.Module:
        return prepare_model(source_victim(cell.host, name).build(data.num_classes, image_shape), device)

    seed_global(streams.craft)  # the craft stream also seeds the source model's initial weights
    ctx = CraftContext(x=x_train, y=y_train, num_classes=data.num_classes, eps=cell.spec.eps, seed=cell.spec.seed,
                       device=device, precision=cell.numerics.precision, channels_last=True, protocol=protocol,
                       build_model=build_model, generator=streams.generator("craft"), reporter=reporter,
                       train_index=train_idx, cache_dir=cell.settings.cache_dir, provenance=cell.provenance,
                       options=cell.resolved, host=cell.host, hflip=cell.dataset.hflip)

    def request_of(attack, resolved, seed):
        return noise_request(attack, resolved, cell, seed, len(y_train))

    ctx.craft_other = other_crafter(cell.host, request_of, ctx, cell.settings.cache_dir, reporter)
    return CellData(streams, data.num_classes, x_train, y_train, x_test, y_test, ctx)


def cell_noise(cell: Cell, loaded: CellData, reporter: Reporter = NULL_REPORTER) -> Crafted:
    """The cell's noise (cached); none when poisoned samples are dropped."""
    if cell.noise is None:
        return Crafted(None, "", False, 0.0)
    return craft(cell.noise, loaded.ctx, cell.settings.cache_dir, reporter)


def release_cell(cell: Cell, loaded: CellData, crafted: Crafted):
    """The training set the cell releases (``poison.release_scope`` with the cell's scope): what
    the victim trains on and what ``uebench detect`` scores."""
    spec = cell.spec
    return release_scope(loaded.x_train, loaded.y_train, crafted.noise, rate=spec.poison_rate, classes=cell.poison_classes,
                         drop=spec.drop_poisoned, quantize=spec.quantize, generator=loaded.streams.generator("poison"))


def run_cell(cell: Cell, reporter: Reporter = NULL_REPORTER) -> tuple[dict, list[dict]]:
    """Run a prepared cell end to end; returns its results row and per-epoch curve (unwritten)."""
    device = cell.device
    loaded = load_cell(cell, reporter)
    crafted = cell_noise(cell, loaded, reporter)
    released = release_cell(cell, loaded, crafted)
    imperceptibility = measure_imperceptibility(released)
    train_data = TrainData(released.images, released.labels, loaded.num_classes, x_clean=released.clean)

    seed_global(loaded.streams.init)
    settings = dataclasses.replace(cell.protocol.train_settings(cell.numerics.precision, device=device),
                                   compile=cell.settings.compile)
    try:
        model = prepare_model(cell.victim.build(loaded.num_classes, tuple(loaded.x_train.shape[1:])), device)
        trainer = Trainer(model, train_data, settings, list(cell.defenses), loaded.streams.generator("order"),
                          loaded.streams.generator("augment"), device, reporter, hflip=cell.dataset.hflip)
        result = trainer.fit(loaded.x_test, loaded.y_test)
    except PASS_THROUGH:
        raise
    except Exception as exc:
        raise ComponentError.wrap(f"training victim {cell.victim_name!r} under defense {cell.defense_name!r}", exc) from exc
    row = result_row(cell, crafted, result, settings, len(trainer.data), len(loaded.y_test), imperceptibility)
    return row, result.history


def measure_imperceptibility(released) -> dict:
    """The row's imperceptibility columns of the released set (``uebench.imperceptibility``).  A
    failure to measure is said in the row's note and never ends the cell: the training run is
    worth more than its visibility numbers, which ``leaderboard imperceptibility`` can fill later."""
    try:
        return measure_released(released)
    except Exception as exc:  # noqa: BLE001 — any failure of the metrics: recorded, not raised
        return unavailable(f"measuring failed: {type(exc).__name__}: {exc}")
