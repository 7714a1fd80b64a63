"""One cell of the benchmark: attack × defense × victim × seed on one dataset and protocol.

craft (or load cached) noise → poison the training set → train the victim under the defense →
evaluate on clean test data → append a results row and the per-epoch curve.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from uebench import __version__
from uebench.attacks.base import CraftContext
from uebench.cache import NoiseCache, noise_key
from uebench.compute import device_label, pick_device, prepare_model, resolve_precision, seed_everything
from uebench.options import OptionError, build_options, options_dict, options_json
from uebench.plugins import get_host
from uebench.progress import NULL_REPORTER, Reporter
from uebench.protocols import Protocol, default_protocol_name, get_protocol, stratified_subset
from uebench.results import append_row, git_sha, write_curve
from uebench.training import PoisonedSet, train_victim

DEFAULT_OUT = Path("uebench-out")


@dataclass
class CellSpec:
    """What ``uebench run`` was asked to do (names and raw option strings, not yet validated)."""

    attack: str = "errmin-pgd"
    defense: str = "none"
    victim: str | None = None  # None = the protocol's victim
    dataset: str = "cifar10"
    protocol: str | None = None  # None = paper on a GPU, cpu otherwise
    seed: int = 0
    eps: float = 8 / 255
    poison_rate: float = 1.0
    attack_options: dict = field(default_factory=dict)
    defense_options: dict = field(default_factory=dict)
    victim_options: dict = field(default_factory=dict)
    data_dir: str | None = None
    out: Path = DEFAULT_OUT
    cache_dir: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    plugins_dirs: tuple[str, ...] = ()

    def validate(self) -> None:
        if not 0 < self.eps <= 1:
            raise OptionError(f"eps {self.eps:g} is outside (0, 1]: it is on the [0, 1] pixel scale (e.g. 8/255)")
        if not 0 <= self.poison_rate <= 1:
            raise OptionError(f"poison rate {self.poison_rate:g} is outside [0, 1]")


@dataclass
class Cell:
    """A validated cell: plugin instances built, protocol chosen."""

    spec: CellSpec
    protocol: Protocol
    attack: object
    defense: object
    victim: object
    dataset: object
    attack_resolved: object

    @property
    def victim_name(self) -> str:
        return self.victim.label


def route_options(pairs: list[tuple[str, str]], host, attack: str, defense: str, victim: str | None, protocol: Protocol) -> tuple[dict, dict, dict]:
    """Send each ``-o key=value`` to the attack, defense or victim that declares ``key``.

    ``attack.key=…``, ``defense.key=…`` and ``victim.key=…`` address one explicitly (needed
    when two declare the same name).
    """
    from uebench.options import option_fields

    owners = {
        "attack": host.attacks.get(attack).cls,
        "defense": host.defenses.get(defense).cls,
        "victim": host.victims.get(victim or protocol.victim).cls,
    }
    declared = {role: {f.name for f in option_fields(cls.Options)} for role, cls in owners.items()}
    routed = {"attack": {}, "defense": {}, "victim": {}}
    for key, value in pairs:
        role, dot, name = key.partition(".")
        if dot and role in routed:
            if name not in declared[role]:
                allowed = ", ".join(sorted(declared[role])) or "(none)"
                raise OptionError(f"{role} {owners[role].name!r} has no option {name!r}; its options are: {allowed}")
            routed[role][name] = value
            continue
        roles = [r for r in routed if key in declared[r]]
        if not roles:
            listing = "; ".join(f"{r} {owners[r].name!r}: {', '.join(sorted(declared[r])) or '(none)'}" for r in routed)
            raise OptionError(f"no component declares option {key!r}. Options are — {listing}")
        if len(roles) > 1:
            raise OptionError(f"option {key!r} is declared by {' and '.join(roles)}; write e.g. {roles[0]}.{key}=…")
        routed[roles[0]][key] = value
    return routed["attack"], routed["defense"], routed["victim"]


def prepare(spec: CellSpec, reporter: Reporter = NULL_REPORTER) -> Cell:
    """Resolve names and options; every user error surfaces here, before any work starts."""
    spec.validate()
    host = get_host(spec.plugins_dirs)
    protocol = get_protocol(spec.protocol or default_protocol_name())
    if spec.protocol is None:
        reporter.log(f"[dim]no --protocol given: using [bold]{protocol.name}[/] ({'CUDA found' if torch.cuda.is_available() else 'no GPU'})[/]")
    attack_entry = host.attacks.get(spec.attack)
    defense_entry = host.defenses.get(spec.defense)
    victim_entry, victim_arg = host.victims.resolve(spec.victim or protocol.victim)
    dataset_entry = host.datasets.get(spec.dataset)
    attack = attack_entry.cls(build_options(attack_entry.cls.Options, spec.attack_options, f"attack {spec.attack!r}"))
    defense = defense_entry.cls(build_options(defense_entry.cls.Options, spec.defense_options, f"defense {spec.defense!r}"))
    victim = victim_entry.cls(build_options(victim_entry.cls.Options, spec.victim_options, f"victim {victim_entry.name!r}"), victim_arg)
    dataset = dataset_entry.cls()
    resolved = attack.resolve(protocol, spec.eps)
    source = getattr(resolved, "source", None)
    if source is not None:
        host.victims.resolve(source)  # unknown source model → error now, not after loading data
    return Cell(spec, protocol, attack, defense, victim, dataset, resolved)


def _build_model_factory(host, num_classes, image_shape, device, channels_last=True):
    def build(name: str) -> torch.nn.Module:
        entry, arg = host.victims.resolve(name)
        return prepare_model(entry.cls(None, arg).build(num_classes, image_shape), device, channels_last)

    return build


def run_cell(cell: Cell, reporter: Reporter = NULL_REPORTER) -> dict:
    """Run a prepared cell end to end and return its results row (also appended to the CSV)."""
    spec, protocol = cell.spec, cell.protocol
    device = pick_device(spec.device)
    precision = resolve_precision(spec.precision, device)
    host = get_host(spec.plugins_dirs)

    data = cell.dataset.load(spec.data_dir)
    train_idx = stratified_subset(data.y_train, protocol.train_per_class, protocol.subset_seed)
    test_idx = stratified_subset(data.y_test, protocol.test_per_class, protocol.subset_seed)
    x_train, y_train = data.x_train[train_idx].to(device), data.y_train[train_idx].to(device)
    x_test, y_test = data.x_test[test_idx].to(device), data.y_test[test_idx].to(device)
    image_shape = tuple(x_train.shape[1:])
    build_model = _build_model_factory(host, data.num_classes, image_shape, device)

    # 1. noise: cached by everything that determines it
    key_fields = {
        "attack": cell.attack.name, "attack_revision": cell.attack.revision,
        "options": options_dict(cell.attack_resolved), "dataset": cell.dataset.name,
        "protocol": protocol.name, "protocol_version": protocol.version, "seed": spec.seed, "eps": round(spec.eps, 10),
        "uebench": __version__, "train_size": len(y_train),
    }
    key = noise_key(key_fields)
    cache = NoiseCache(spec.cache_dir)
    gen = seed_everything(spec.seed)
    craft_seconds, cached, noise = 0.0, False, None
    ctx = CraftContext(x_train, y_train, data.num_classes, spec.eps, spec.seed, device, precision, True, protocol, build_model, gen, reporter)
    if cell.attack.cacheable:
        with cache.lock(key):
            noise, why = cache.get(key, tuple(x_train.shape))
            if noise is not None:
                cached = True
                noise = noise.to(device)
                craft_seconds = float(noise.meta.get("craft_seconds", 0.0))  # what crafting it cost
                reporter.log(f"noise cache hit: {cache.path(key)}")
            else:
                if why != "miss":
                    reporter.log(f"[yellow]discarded invalid cached noise: {why}[/]")
                start = time.perf_counter()
                noise = cell.attack.craft(ctx)
                craft_seconds = time.perf_counter() - start
                if noise is not None:
                    noise.meta.update(options=options_dict(cell.attack_resolved), seed=spec.seed, craft_seconds=craft_seconds)
                    cache.put(key, noise)
    else:
        start = time.perf_counter()
        noise = cell.attack.craft(ctx)
        craft_seconds = time.perf_counter() - start

    # 2. poison a fraction of the training set (always the same fraction for a seed)
    poisoned = None
    if noise is not None and spec.poison_rate < 1:
        count = int(round(spec.poison_rate * len(y_train)))
        chosen = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(spec.seed + 1))[:count]
        poisoned = torch.zeros(len(y_train), dtype=torch.bool)
        poisoned[chosen] = True
        poisoned = poisoned.to(device)
    train_set = PoisonedSet(x_train, y_train, noise if spec.poison_rate > 0 else None, poisoned)

    # 3. train the victim under the defense, measure clean test accuracy each epoch
    seed_everything(spec.seed + 2)
    model = prepare_model(cell.victim.build(data.num_classes, image_shape), device)
    settings = protocol.train_settings(precision)
    result = train_victim(model, train_set, x_test, y_test, data.num_classes, settings, cell.defense, torch.Generator().manual_seed(spec.seed + 3), device, reporter)

    meta = noise.meta if noise is not None else {}
    best = result.best
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    row = {
        "run_id": run_id,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "uebench_version": __version__,
        "git_sha": git_sha(),
        "protocol": protocol.name,
        "protocol_version": protocol.version,
        "dataset": cell.dataset.name,
        "attack": cell.attack.name,
        "attack_options": options_json(cell.attack_resolved),
        "eps": spec.eps,
        "poison_rate": spec.poison_rate,
        "defense": cell.defense.name,
        "defense_options": options_json(cell.defense.options),
        "victim": cell.victim_name,
        "victim_options": options_json(cell.victim.options),
        "epochs": settings.epochs,
        "seed": spec.seed,
        "final_test_acc": result.final["test_acc"],
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "final_train_acc": result.final["train_acc"],
        "craft_seconds": round(craft_seconds, 2),
        "train_seconds": round(result.seconds, 2),
        "device": device_label(device),
        "precision": precision,
        "noise_key": key if cell.attack.cacheable and noise is not None else "",
        "noise_cached": cached,
        "craft_stop_reason": meta.get("stop_reason", ""),
        "craft_iterations": meta.get("iterations", ""),
        "craft_final_error": meta.get("final_error", ""),
        "train_size": len(y_train),
        "test_size": len(y_test),
    }
    out = Path(spec.out)
    append_row(out / "results.csv", row)
    write_curve(out / "curves" / f"{run_id}.csv", result.history)
    return row
