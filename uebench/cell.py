"""A cell, prepared: what was asked (:class:`CellSpec`), where and how it runs
(:class:`RunSettings`), and :func:`prepare`, which turns both into a frozen :class:`Cell` —
every name looked up, every option built and checked, the protocol chosen for the dataset, the
numerics fixed, and the noise the cell needs named (:class:`~uebench.craft.NoiseRequest`).

Every user error surfaces in :func:`prepare`, before any data is loaded or any noise crafted.
Its only reads are the data's content digest (kept once per dataset folder:
``uebench.datasets.digest``; a dataset that is missing is downloaded here, as loading would, so
preparing — a sweep's dry run too — needs the data present or reachable), the training set's
size (its labels counted: the noise request's ``train_size``) and the files an attack names
(hashed into its keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from uebench import __version__
from uebench.atomic import check_writable_folder
from uebench.compute import check_compile_mode, pick_device
from uebench.craft.cache import NoiseCache
from uebench.craft.identity import identity_options
from uebench.craft.request import NoiseRequest
from uebench.defenses.compose import check_composition, composed_name
from uebench.numerics import Numerics, numerics_for
from uebench.options import OptionError, build_options
from uebench.plugins import PluginHost, get_host
from uebench.poison import resolve_classes
from uebench.progress import NULL_REPORTER, Reporter
from uebench.protocols import Protocol, default_protocol_name, get_protocol

DEFAULT_OUT = Path("uebench-out")


@dataclass
class CellSpec:
    """What a cell is (names and raw option values, not yet validated): everything here is part
    of the cell's key."""

    attack: str = "errmin-pgd"
    defenses: tuple[str, ...] = ("none",)  # applied in this order
    victim: str | None = None  # None = the protocol's victim
    dataset: str = "cifar10"
    protocol: str | None = None  # None = paper on a GPU, cpu otherwise
    seed: int = 0
    eps: float = 8 / 255
    poison_rate: float = 1.0
    poison_classes: tuple[str, ...] = ()  # names or indices; empty = every class
    drop_poisoned: bool = False  # train on the clean remainder alone (the paper's Table 2 "Dc")
    quantize: bool = True  # release the poisoned images as uint8 (what a data owner publishes)
    attack_options: dict = field(default_factory=dict)
    defense_options: dict = field(default_factory=dict)  # defense name → {option: value}
    victim_options: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not 0 < self.eps <= 1:
            raise OptionError(f"eps {self.eps:g} is outside (0, 1]: it is on the [0, 1] pixel scale (e.g. 8/255)")
        if not 0 <= self.poison_rate <= 1:
            raise OptionError(f"poison rate {self.poison_rate:g} is outside [0, 1]")
        if self.seed < 0:
            raise OptionError(f"seed {self.seed} is negative; seeds are integers >= 0")
        if self.drop_poisoned and self.poison_rate >= 1 and not self.poison_classes:
            raise OptionError("--drop-poisoned with every sample poisoned leaves nothing to train on; "
                              "give --poison-rate < 1 or --poison-classes")


@dataclass
class RunSettings:
    """Where and how a cell runs.  ``device``'s type, ``precision`` and ``threads`` decide the
    floats, so they enter the keys (as the cell's :class:`~uebench.numerics.Numerics`); the
    folders, the compile mode and the plugin folders do not."""

    data_dir: str | None = None
    out: Path = DEFAULT_OUT
    cache_dir: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: str = "none"  # torch.compile mode for the victim (``compute.COMPILE_MODES``)
    threads: int | None = None  # CPU threads; None = the protocol's (``uebench.numerics``)
    plugins_dirs: tuple[str, ...] = ()

    def validate(self) -> None:
        check_compile_mode(self.compile)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise OptionError(f"threads {self.threads!r}: give a whole number >= 1 (CPU threads a cell computes on)")


@dataclass(frozen=True)
class Cell:
    """A prepared cell: the plugin instances built, the protocol chosen, the keys' inputs known."""

    spec: CellSpec
    settings: RunSettings
    host: PluginHost
    protocol: Protocol
    attack: object
    resolved: object  # the attack's options, resolved once for this protocol and ε
    defenses: tuple
    victim: object
    dataset: object
    device: torch.device
    numerics: Numerics
    data_digest: str  # the dataset's content (``uebench.datasets.digest``)
    poison_classes: tuple[int, ...] = ()
    noise: NoiseRequest | None = None  # None: the cell trains on no noise (clean remainder only)

    @property
    def provenance(self) -> dict:
        """What decides this cell's floats besides its settings: the data and the numerics."""
        return {"data_digest": self.data_digest, **self.numerics.as_dict()}

    @property
    def victim_name(self) -> str:
        return self.victim.label

    @property
    def defense_name(self) -> str:
        return composed_name(d.name for d in self.defenses)

    @property
    def label(self) -> str:
        """How messages name the cell, e.g. ``errmin-pgd×cutmix s1``."""
        return f"{self.attack.name}×{self.defense_name} s{self.spec.seed}"


def prepare(spec: CellSpec, settings: RunSettings | None = None, host: PluginHost | None = None,
            reporter: Reporter = NULL_REPORTER) -> Cell:
    """Resolve names and options; every user error surfaces here, before any work starts."""
    settings = settings or RunSettings()
    spec.validate()
    settings.validate()
    host = host or get_host(settings.plugins_dirs)
    protocol = get_protocol(spec.protocol or default_protocol_name()).for_dataset(spec.dataset)
    if spec.protocol is None:
        reporter.log(f"[dim]no --protocol given: using [bold]{protocol.name}[/] "
                     f"({'CUDA found' if torch.cuda.is_available() else 'no GPU'})[/]")
    attack_entry = host.attacks.get(spec.attack)
    defense_entries = [host.defenses.get(name) for name in spec.defenses]
    stray = sorted(set(spec.defense_options) - {e.name for e in defense_entries} - set(spec.defenses))
    if stray:  # options for a defense the cell does not use would be dropped without a word
        raise OptionError(f"defense options for {', '.join(map(repr, stray))}, which the cell does not use "
                          f"(its defenses: {', '.join(spec.defenses)})")
    victim_entry, victim_arg = host.victims.resolve(spec.victim or protocol.victim)
    dataset_entry = host.datasets.get(spec.dataset)
    attack = attack_entry.cls(build_options(attack_entry.cls.Options, spec.attack_options, f"attack {spec.attack!r}"))
    defenses = tuple(
        e.cls(build_options(e.cls.Options, spec.defense_options.get(e.name, {}), f"defense {e.name!r}")) for e in defense_entries
    )
    check_composition(defenses)
    victim = victim_entry.cls(build_options(victim_entry.cls.Options, spec.victim_options, f"victim {victim_entry.name!r}"),
                              victim_arg)
    dataset = dataset_entry.cls(build_options(dataset_entry.cls.Options, {}, f"dataset {dataset_entry.name!r}"))
    poison_classes = resolve_classes(spec.poison_classes, dataset.classes) if spec.poison_classes else ()
    resolved = attack.resolve(protocol, spec.eps)
    attack.check(resolved, host)  # e.g. a composed attack's component: unknown → an error now, not after loading data
    source = getattr(resolved, "source", None)
    if source is not None:  # an unknown source model → an error now, not after loading data
        source_victim(host, source).check()
    victim.check()
    device = pick_device(settings.device)  # an unavailable device fails here, before any work
    numerics = numerics_for(device, protocol.resolve_precision(settings.precision, device),
                            settings.threads or protocol.cpu_threads)
    try:  # a results folder under a file, or without write permission, fails now, not after training
        check_writable_folder(settings.out, "results folder --out")
        check_writable_folder(NoiseCache(settings.cache_dir).folder, "noise cache --cache-dir")
    except OSError as exc:
        raise OptionError(str(exc)) from None
    # last: the digest reads the dataset once (then kept), or downloads it where it is missing
    data_digest = dataset.digest(settings.data_dir)
    cell = Cell(spec, settings, host, protocol, attack, resolved, defenses, victim, dataset, device, numerics, data_digest,
                poison_classes)
    if spec.drop_poisoned:  # the poisoned samples are left out, so their noise is never needed
        return cell
    from dataclasses import replace

    return replace(cell, noise=noise_request(attack, resolved, cell, spec.seed,
                                             crafting_set_size(protocol, dataset, settings.data_dir)))


def source_victim(host: PluginHost, name: str):
    """The victim an attack trains as its source model, with its declared default options."""
    entry, argument = host.victims.resolve(name)
    return entry.cls(build_options(entry.cls.Options, {}, f"victim {entry.name!r}"), argument)


def crafting_set_size(protocol: Protocol, dataset, data_dir) -> int:
    """How many training images the protocol crafts on: its per-class count times the dataset's
    classes, or the whole training set (its declared size, else counted from its files)."""
    if protocol.train_per_class is not None:
        return protocol.train_per_class * len(dataset.classes)
    return dataset.train_count(data_dir)


def noise_request(attack, resolved, cell: Cell, seed: int, train_size: int | None) -> NoiseRequest:
    """The request for ``attack``'s noise at ``seed`` on ``cell``'s data, protocol, ε and numerics."""
    protocol = cell.protocol
    return NoiseRequest(
        attack=attack.name, attack_revision=attack.revision, options=identity_options(attack, resolved),
        dataset=cell.dataset.name, protocol=protocol.name, protocol_version=protocol.version, seed=seed, eps=cell.spec.eps,
        train_size=train_size, uebench_version=__version__, provenance=cell.provenance, attack_impl=attack, resolved=resolved,
    )
