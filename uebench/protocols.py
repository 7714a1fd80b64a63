"""Protocols: named, versioned experiment scales.  Rows are comparable only within one protocol.

``paper`` is the paper's setting (a GPU); ``cpu`` keeps the paper's effects visible on two CPU
cores in minutes; ``smoke`` is for tests.  Changing any number of a protocol means bumping its
``version`` (it is part of every cache key and results row).

Every protocol's version went up together when (a) the victim's weight decay became the seed
paper's (every parameter, as crafting's source already had), (b) a cell's seeds became
independent ``SeedSequence`` streams and (c) the released training set became quantized uint8:
rows of older versions are not comparable with newer ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from uebench.train.loop import TrainSettings


@dataclass(frozen=True)
class CraftSettings:
    """Algorithm 1's scale knobs for one noise form.

    What matters is how much the source model trains between perturbation passes relative to
    the crafting set (the paper: M·batch = 10·512 ≈ half an epoch of its 10k-50k images): a
    source that sees each image many times per pass memorises the content, λ is met without
    the noise becoming a shortcut, and the noise is weak.
    """

    model_steps: int  # M
    lr: float
    batch_size: int
    max_iters: int


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    description: str
    # data
    train_per_class: int | None  # stratified subset of the training set; None = all of it
    test_per_class: int | None
    # victim training (paper: SGD, momentum 0.9, lr 0.025, cosine, 60 epochs, batch 128)
    victim: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 5e-4
    # Algorithm 1 knobs the paper fixes only for its own scale (ε, α = ε/10, T, λ stay the paper's)
    source: str = "resnet18"
    craft_sample: CraftSettings = CraftSettings(model_steps=10, lr=0.1, batch_size=512, max_iters=100)
    craft_class: CraftSettings = CraftSettings(model_steps=10, lr=0.1, batch_size=512, max_iters=100)
    subset_seed: int = 0  # the subset is fixed by the protocol, not by the run's seed
    # what --precision auto means here: None = bf16 where the hardware has it (GPUs), else fp32;
    # the CPU protocols say fp32, so a row reproduces on any CPU, with or without native bf16
    precision: str | None = None
    # CPU threads every cell computes on (pinned: a row then reproduces bit for bit on another
    # machine; ``uebench.numerics``); ``uebench sweep --jobs N`` runs N such cells side by side
    cpu_threads: int = 1
    # dataset name → the fields that differ for it (the paper trains SVHN 30 epochs, CIFAR-100 100
    # with M = 20, ...); a dataset not named uses the numbers above.  See :meth:`for_dataset`.
    per_dataset: dict = field(default_factory=dict, compare=False)

    def for_dataset(self, dataset: str) -> Protocol:
        """This protocol with ``dataset``'s own numbers (same name and version: the version covers
        every dataset's numbers)."""
        overrides = self.per_dataset.get(dataset)
        return dataclasses.replace(self, **overrides) if overrides else self

    def train_settings(self, precision: str, channels_last: bool = True, device: torch.device | str = "cpu") -> TrainSettings:
        """The victim's training settings; evaluation batches are larger on an accelerator, where
        per-batch launch cost dominates (no effect on accuracy: BN is in eval mode)."""
        return TrainSettings(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            weight_decay=self.weight_decay, precision=precision, channels_last=channels_last,
            eval_batch_size=TrainSettings.eval_batch_size if torch.device(device).type == "cpu" else ACCELERATOR_EVAL_BATCH,
        )

    def resolve_precision(self, requested: str, device) -> str:
        """``requested`` (``--precision``), with ``auto`` meaning this protocol's precision."""
        from uebench.compute import resolve_precision

        return resolve_precision(self.precision if requested == "auto" and self.precision else requested, device)

    def craft(self, form: str) -> CraftSettings:
        """The crafting settings for ``form`` (``sample`` or ``class``)."""
        return self.craft_class if form == "class" else self.craft_sample

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


ACCELERATOR_EVAL_BATCH = 1024

# Shared by ``cpu`` and ``cpu-full``: a change to these numbers bumps both versions.  The same
# numbers for every dataset (a scale for 2 CPU cores, not the paper's per-dataset schedule).
_CPU = Protocol(
    # 2: Δc M 4 → 10 (the paper's), with θ trained on the whole set; 3: see the module docstring
    name="cpu", version=3,
    description="2 CPU cores: stratified 5k-image CIFAR-10 train subset, full test set, cnn-small source and victim",
    train_per_class=500, test_per_class=None, victim="cnn-small",
    epochs=24, batch_size=128, lr=0.05,
    source="cnn-small",
    craft_sample=CraftSettings(model_steps=40, lr=0.1, batch_size=256, max_iters=20),
    craft_class=CraftSettings(model_steps=10, lr=0.1, batch_size=128, max_iters=200),
    precision="fp32",
)

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="paper", version=2,
            description="Huang et al. 2021: the full dataset, ResNet-18 source and victim, "
                        "the paper's epochs and M per dataset (GPU)",
            train_per_class=None, test_per_class=None, victim="resnet18",
            epochs=60, batch_size=128, lr=0.025,
            source="resnet18",
            # the paper's dataset-specific numbers (epochs; M, the source model's steps between
            # passes); added without changing any CIFAR-10 number, so version 2 stands
            per_dataset={
                "svhn": {"epochs": 30},
                "cifar100": {"epochs": 100,
                             "craft_sample": CraftSettings(model_steps=20, lr=0.1, batch_size=512, max_iters=100),
                             "craft_class": CraftSettings(model_steps=20, lr=0.1, batch_size=512, max_iters=100)},
                "imagenet-subset": {"epochs": 100,
                                    "craft_sample": CraftSettings(model_steps=100, lr=0.1, batch_size=512, max_iters=100),
                                    "craft_class": CraftSettings(model_steps=100, lr=0.1, batch_size=512, max_iters=100)},
            },
        ),
        _CPU,
        # the same settings on the whole training set: how the cpu protocol's effects scale with data
        dataclasses.replace(
            _CPU, name="cpu-full", version=2, train_per_class=None,
            description="the cpu protocol on the whole 50k CIFAR-10 training set: "
                        "~27 min of victim training a cell on 2 CPU cores",
        ),
        Protocol(
            name="smoke", version=2,
            description="seconds per cell, for tests: 500 training images, cnn-tiny, 2 epochs",
            train_per_class=50, test_per_class=20, victim="cnn-tiny",
            epochs=2, batch_size=128, lr=0.05,
            source="cnn-tiny",
            craft_sample=CraftSettings(model_steps=2, lr=0.1, batch_size=250, max_iters=2),
            craft_class=CraftSettings(model_steps=2, lr=0.1, batch_size=250, max_iters=2),
            precision="fp32",
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    from uebench.registry import UnknownNameError

    if name not in PROTOCOLS:
        raise UnknownNameError("protocol", name, sorted(PROTOCOLS))
    return PROTOCOLS[name]


def default_protocol_name() -> str:
    """``paper`` where a GPU is available, ``cpu`` otherwise."""
    return "paper" if torch.cuda.is_available() else "cpu"


def stratified_subset(y: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` samples of each class, drawn with ``seed`` (sorted); all if None."""
    if per_class is None:
        return torch.arange(len(y))
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for k in torch.unique(y).tolist():
        members = torch.nonzero(y == k).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {k} has {len(members)} samples, protocol asks for {per_class}")
        picks.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(picks).sort().values
