"""One cell of the benchmark: attack × defenses × victim × seed on one dataset and protocol.

prepare (every name and option resolved, nothing computed) → craft (or load cached) noise →
release the poisoned training set (quantized uint8) → train the victim under the defenses →
measure clean test accuracy → a results row and the per-epoch curve, *returned*: the caller
that owns the results CSV (the CLI, a sweep driver) writes them with :func:`record`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from uebench import __version__
from uebench.atomic import check_writable_folder
from uebench.attacks.base import CraftContext
from uebench.cache import NoiseCache, noise_key
from uebench.cellkey import cell_key, config_key
from uebench.compute import check_compile_mode, device_label, pick_device, prepare_model
from uebench.datasets.base import DataUnavailableError
from uebench.defenses.compose import check_composition, composed_name
from uebench.failures import CellFailure, ComponentError, check_crafted
from uebench.numerics import Numerics, numerics_for
from uebench.options import OptionError, applied_options, build_options, canonical_json, option_fields, options_dict, options_json
from uebench.plugins import get_host
from uebench.poison import poison_mask, release, resolve_classes
from uebench.progress import NULL_REPORTER, Reporter
from uebench.protocols import Protocol, default_protocol_name, get_protocol, stratified_subset
from uebench.results import COLUMNS, append_row, git_sha
from uebench.seeds import seed_streams
from uebench.train import TrainData, Trainer

DEFAULT_OUT = Path("uebench-out")

# errors that already say what went wrong; anything else a component raises is wrapped with its name
PASS_THROUGH = (CellFailure, OptionError, DataUnavailableError, OSError)


@dataclass
class CellSpec:
    """What ``uebench run`` was asked to do (names and raw option strings, not yet validated)."""

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
    data_dir: str | None = None
    out: Path = DEFAULT_OUT
    cache_dir: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: str = "none"  # torch.compile mode for the victim (``compute.COMPILE_MODES``)
    threads: int | None = None  # CPU threads; None = the protocol's (``uebench.numerics``)
    plugins_dirs: tuple[str, ...] = ()

    def validate(self) -> None:
        if not 0 < self.eps <= 1:
            raise OptionError(f"eps {self.eps:g} is outside (0, 1]: it is on the [0, 1] pixel scale (e.g. 8/255)")
        if not 0 <= self.poison_rate <= 1:
            raise OptionError(f"poison rate {self.poison_rate:g} is outside [0, 1]")
        if self.seed < 0:
            raise OptionError(f"seed {self.seed} is negative; seeds are integers >= 0")
        if self.drop_poisoned and self.poison_rate >= 1 and not self.poison_classes:
            raise OptionError("--drop-poisoned with every sample poisoned leaves nothing to train on; give --poison-rate < 1 or --poison-classes")
        check_compile_mode(self.compile)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise OptionError(f"threads {self.threads!r}: give a whole number >= 1 (CPU threads a cell computes on)")


@dataclass
class Cell:
    """A validated cell: plugin instances built, protocol chosen."""

    spec: CellSpec
    protocol: Protocol
    attack: object
    defenses: list
    victim: object
    dataset: object
    attack_resolved: object
    poison_classes: tuple[int, ...] = ()
    numerics: Numerics | None = None  # known before any work: part of the keys
    data_digest: str = ""  # the dataset's content (``uebench.datasets.digest``)

    @property
    def provenance(self) -> dict:
        """What decides this cell's floats besides its settings: the data and the numerics."""
        return {"data_digest": self.data_digest, **(self.numerics.as_dict() if self.numerics else {})}

    @property
    def victim_name(self) -> str:
        return self.victim.label

    @property
    def defense_name(self) -> str:
        return composed_name(d.name for d in self.defenses)


def route_options(pairs: list[tuple[str, str]], host, attack: str, defenses, victim: str | None,
                  protocol: Protocol) -> tuple[dict, dict, dict]:
    """Send each ``-o key=value`` to the attack, the defense or the victim that declares ``key``.

    Returns (attack options, {defense name: options}, victim options).  A prefix addresses one
    component explicitly (needed when two declare the same name): ``attack.key``,
    ``victim.key``, ``<defense name>.key`` (``cutmix.alpha``), or ``defense.key`` when only one
    of the cell's defenses declares ``key``.
    """
    owners = {"attack": host.attacks.get(attack).cls}
    for name in defenses:
        owners[name] = host.defenses.get(name).cls
    owners["victim"] = host.victims.get(victim or protocol.victim).cls
    declared = {role: {f.name for f in option_fields(cls.Options)} for role, cls in owners.items()}
    kind = {role: role if role in ("attack", "victim") else "defense" for role in owners}
    routed = {role: {} for role in owners}

    def describe(role):
        return f"{kind[role]} {owners[role].name!r}"

    for key, value in pairs:
        prefix, dot, name = key.partition(".")
        if dot and prefix == "defense":
            holders = [r for r in owners if kind[r] == "defense" and name in declared[r]]
            if len(holders) != 1:
                listing = "; ".join(f"{describe(r)}: {', '.join(sorted(declared[r])) or '(none)'}" for r in owners if kind[r] == "defense")
                why = "no defense of this cell declares it" if not holders else f"{' and '.join(holders)} both declare it; write e.g. {holders[0]}.{name}=…"
                raise OptionError(f"option {name!r}: {why}. Defense options are — {listing}")
            routed[holders[0]][name] = value
            continue
        if dot and prefix in owners:
            if name not in declared[prefix]:
                allowed = ", ".join(sorted(declared[prefix])) or "(none)"
                raise OptionError(f"{describe(prefix)} has no option {name!r}; its options are: {allowed}")
            routed[prefix][name] = value
            continue
        roles = [r for r in owners if key in declared[r]]
        if not roles:
            listing = "; ".join(f"{describe(r)}: {', '.join(sorted(declared[r])) or '(none)'}" for r in owners)
            raise OptionError(f"no component declares option {key!r}. Options are — {listing}")
        if len(roles) > 1:
            raise OptionError(f"option {key!r} is declared by {' and '.join(roles)}; write e.g. {roles[0]}.{key}=…")
        routed[roles[0]][key] = value
    return routed["attack"], {r: routed[r] for r in owners if kind[r] == "defense"}, routed["victim"]


def prepare(spec: CellSpec, reporter: Reporter = NULL_REPORTER) -> Cell:
    """Resolve names and options; every user error surfaces here, before any work starts."""
    spec.validate()
    host = get_host(spec.plugins_dirs)
    protocol = get_protocol(spec.protocol or default_protocol_name()).for_dataset(spec.dataset)
    if spec.protocol is None:
        reporter.log(f"[dim]no --protocol given: using [bold]{protocol.name}[/] ({'CUDA found' if torch.cuda.is_available() else 'no GPU'})[/]")
    attack_entry = host.attacks.get(spec.attack)
    defense_entries = [host.defenses.get(name) for name in spec.defenses]
    stray = sorted(set(spec.defense_options) - {e.name for e in defense_entries} - set(spec.defenses))
    if stray:  # options for a defense the cell does not use would be dropped without a word
        raise OptionError(f"defense options for {', '.join(map(repr, stray))}, which the cell does not use "
                          f"(its defenses: {', '.join(spec.defenses)})")
    victim_entry, victim_arg = host.victims.resolve(spec.victim or protocol.victim)
    dataset_entry = host.datasets.get(spec.dataset)
    attack = attack_entry.cls(build_options(attack_entry.cls.Options, spec.attack_options, f"attack {spec.attack!r}"))
    defenses = [
        e.cls(build_options(e.cls.Options, spec.defense_options.get(e.name, {}), f"defense {e.name!r}")) for e in defense_entries
    ]
    check_composition(defenses)
    victim = victim_entry.cls(build_options(victim_entry.cls.Options, spec.victim_options, f"victim {victim_entry.name!r}"), victim_arg)
    dataset = dataset_entry.cls()
    poison_classes = resolve_classes(spec.poison_classes, dataset.classes) if spec.poison_classes else ()
    resolved = attack.resolve(protocol, spec.eps)
    source = getattr(resolved, "source", None)
    if source is not None:  # an unknown source model → an error now, not after loading data
        source_entry, source_arg = host.victims.resolve(source)
        source_entry.cls(None, source_arg).check()
    victim.check()
    device = pick_device(spec.device)  # an unavailable device fails here, before any work
    numerics = numerics_for(device, protocol.resolve_precision(spec.precision, device), spec.threads or protocol.cpu_threads)
    try:  # a results folder under a file, or without write permission, fails now, not after training
        check_writable_folder(spec.out, "results folder --out")
        check_writable_folder(NoiseCache(spec.cache_dir).folder, "noise cache --cache-dir")
    except OSError as exc:
        raise OptionError(str(exc)) from None
    # last: the digest reads the dataset once (then kept), or downloads it where it is missing
    data_digest = dataset.digest(spec.data_dir)
    return Cell(spec, protocol, attack, defenses, victim, dataset, resolved, poison_classes, numerics, data_digest)


def _build_model_factory(host, num_classes, image_shape, device, channels_last=True):
    def build(name: str) -> torch.nn.Module:
        entry, arg = host.victims.resolve(name)
        return prepare_model(entry.cls(None, arg).build(num_classes, image_shape), device, channels_last)

    return build


def identity_options(attack, resolved) -> dict:
    """The attack's applied options as its keys and row hold them: each option naming a file the
    attack reads (``Attack.input_files``) replaced by ``sha256:<digest of the content>``."""
    options = applied_options(resolved)
    for name, path in attack.input_files(resolved).items():
        options[name] = f"sha256:{_content_digest(str(path))}"
    return options


def input_locations(attack, resolved) -> str:
    """The row's ``inputs`` column: where those files were (information, not identity)."""
    files = attack.input_files(resolved)
    return canonical_json({name: str(Path(path).resolve()) for name, path in files.items()}) if files else ""


def _content_digest(path: str) -> str:
    stat = Path(path).stat()
    return _content_digest_memo(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _content_digest_memo(path: str, mtime_ns: int, size: int) -> str:
    from uebench.datasets.digest import path_digest

    return path_digest(Path(path))


def noise_fields(attack, resolved, dataset: str, protocol: Protocol, seed: int, eps: float, train_size: int | None,
                 provenance: dict | None) -> dict:
    """Everything that determines a cell's noise: hashed into its cache key.  ``provenance``
    (``Cell.provenance``): the data's digest and the numerics it is crafted with — a noise
    crafted on other pixels or on another thread count is another noise."""
    return key_fields(attack.name, attack.revision, identity_options(attack, resolved), dataset, protocol.name, protocol.version,
                      seed, eps, train_size, __version__, provenance)


def key_fields(attack: str, revision: int, options: dict, dataset: str, protocol: str, protocol_version: int, seed: int,
               eps: float, train_size: int | None, version: str, provenance: dict | None = None) -> dict:
    """:func:`noise_fields` from plain values (``uebench.migrate`` rebuilds older rows' keys with
    it: without ``provenance``, the key as it was before the data and numerics joined it)."""
    return {
        "attack": attack, "attack_revision": revision, "options": options, "dataset": dataset,
        "protocol": protocol, "protocol_version": protocol_version, "seed": seed, "eps": round(eps, 10),
        "uebench": version, "train_size": train_size, **(provenance or {}),
    }


def noise_key_of(attack, resolved, dataset: str, protocol: Protocol, seed: int, eps: float, train_size: int,
                 provenance: dict | None) -> str:
    """The noise-cache key."""
    return noise_key(noise_fields(attack, resolved, dataset, protocol, seed, eps, train_size, provenance))


def noise_identity(fields: dict) -> dict:
    """The part of :func:`noise_fields` stored in a noise file and checked on every read, beside
    the key: a file put under a name it does not belong to (copied, renamed, a colliding key) is
    never served to a cell it was not crafted for."""
    return {"attack": fields["attack"], "dataset": fields["dataset"], "protocol": fields["protocol"],
            "protocol_version": fields["protocol_version"], "cell_eps": fields["eps"], "seed": fields["seed"],
            "data_digest": fields.get("data_digest", ""), "threads": fields.get("threads")}


def craft_noise(attack, resolved, ctx: CraftContext, dataset: str, cache_dir: Path | None, reporter: Reporter = NULL_REPORTER):
    """``attack``'s noise for ``ctx`` (its seed, ε, protocol, data and numerics), from the cache
    when a valid entry exists: (noise, key, cached, seconds)."""
    fields = noise_fields(attack, resolved, dataset, ctx.protocol, ctx.seed, ctx.eps, len(ctx.y), ctx.provenance)
    key, identity = noise_key(fields), noise_identity(fields)
    if not attack.cacheable:
        start = time.perf_counter()
        noise = _craft_checked(attack, ctx)
        return noise, "", False, time.perf_counter() - start
    cache = NoiseCache(cache_dir)
    with cache.lock(key):
        cache.remove_orphans(key)
        noise, why = cache.get(key, tuple(ctx.x.shape), identity)
        if noise is not None:
            reporter.log(f"noise cache hit: {cache.path(key)}")
            return noise.to(ctx.device), key, True, float(noise.meta.get("craft_seconds", 0.0))  # what crafting it cost
        if why != "miss":
            reporter.log(f"[yellow]discarded invalid cached noise: {why}[/]")
        start = time.perf_counter()
        noise = _craft_checked(attack, ctx)
        seconds = time.perf_counter() - start
        if noise is not None:
            noise.meta.update(options=applied_options(resolved), craft_seconds=seconds, identity=identity)
            cache.put(key, noise)
    return noise, (key if noise is not None else ""), False, seconds


def _craft_checked(attack, ctx: CraftContext):
    """``attack.craft(ctx)``, its exceptions and unusable results named after the attack (a
    :class:`~uebench.failures.CellFailure`), so a broken plugin ends its cell with a clear message
    and nothing of it is cached."""
    try:
        noise = attack.craft(ctx)
    except PASS_THROUGH:
        raise
    except Exception as exc:
        raise ComponentError.wrap(f"attack {attack.name!r} (crafting)", exc) from exc
    check_crafted(noise, attack.name, ctx.x, ctx.num_classes, ctx.eps)
    return noise


def other_crafter(host, ctx: CraftContext, dataset: str, cache_dir: Path | None, reporter: Reporter):
    """``ctx.craft_other``: the noise of another attack at another seed, through the same cache,
    so a composed attack (``mix-or``) reuses noise other cells crafted."""

    def craft_other(name: str, options: dict, seed: int):
        entry = host.attacks.get(name)
        attack = entry.cls(build_options(entry.cls.Options, options, f"attack {name!r}"))
        streams = seed_streams(seed)
        torch.manual_seed(streams.craft)
        sub = dataclasses.replace(ctx, seed=seed, generator=streams.generator("craft"))
        return craft_noise(attack, attack.resolve(ctx.protocol, ctx.eps), sub, dataset, cache_dir, reporter)[0]

    return craft_other


@dataclass
class CellData:
    """A cell's tensors on its device, and the context its attack crafts in."""

    device: torch.device
    precision: str
    streams: object  # uebench.seeds.SeedStreams
    num_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ctx: CraftContext


def load_cell(cell: Cell, reporter: Reporter = NULL_REPORTER) -> CellData:
    """Load the protocol's train/test subsets onto the device and build the crafting context."""
    spec, protocol = cell.spec, cell.protocol
    device = pick_device(spec.device)
    precision = protocol.resolve_precision(spec.precision, device)
    cell.numerics.apply()  # the pinned CPU thread count, before any arithmetic
    host = get_host(spec.plugins_dirs)
    streams = seed_streams(spec.seed)
    data = cell.dataset.load(spec.data_dir)
    train_idx = stratified_subset(data.y_train, protocol.train_per_class, protocol.subset_seed)
    test_idx = stratified_subset(data.y_test, protocol.test_per_class, protocol.subset_seed)
    x_train, y_train = data.x_train[train_idx].to(device), data.y_train[train_idx].to(device)
    x_test, y_test = data.x_test[test_idx].to(device), data.y_test[test_idx].to(device)
    build_model = _build_model_factory(host, data.num_classes, tuple(x_train.shape[1:]), device)
    # the craft stream also seeds the source model's initial weights
    torch.manual_seed(streams.craft)
    ctx = CraftContext(x_train, y_train, data.num_classes, spec.eps, spec.seed, device, precision, True, protocol,
                       build_model, streams.generator("craft"), reporter, train_index=train_idx, cache_dir=spec.cache_dir,
                       provenance=cell.provenance)
    ctx.craft_other = other_crafter(host, ctx, cell.dataset.name, spec.cache_dir, reporter)
    return CellData(device, precision, streams, data.num_classes, x_train, y_train, x_test, y_test, ctx)


def cell_noise(cell: Cell, loaded: CellData, reporter: Reporter = NULL_REPORTER):
    """The cell's noise (cached): (noise, key, cached, seconds); none when poisoned samples are dropped."""
    if cell.spec.drop_poisoned:  # the poisoned samples are left out, so their noise is never needed
        return None, "", False, 0.0
    return craft_noise(cell.attack, cell.attack_resolved, loaded.ctx, cell.dataset.name, cell.spec.cache_dir, reporter)


def run_cell(cell: Cell, reporter: Reporter = NULL_REPORTER) -> tuple[dict, list[dict]]:
    """Run a prepared cell end to end; returns its results row and per-epoch curve (unwritten)."""
    spec, protocol = cell.spec, cell.protocol
    loaded = load_cell(cell, reporter)
    device, precision, streams = loaded.device, loaded.precision, loaded.streams
    x_train, y_train, x_test, y_test = loaded.x_train, loaded.y_train, loaded.x_test, loaded.y_test
    image_shape = tuple(x_train.shape[1:])

    # 1. noise
    noise, key, cached, craft_seconds = cell_noise(cell, loaded, reporter)

    # 2. the released training set: the scope's samples poisoned, quantized to uint8
    mask = None
    if noise is not None or spec.drop_poisoned:
        mask = poison_mask(y_train, spec.poison_rate, streams.generator("poison"), cell.poison_classes)
    if spec.drop_poisoned:
        keep = ~mask.to(device)
        if not bool(keep.any()):
            raise ValueError("--drop-poisoned left no training images")
        x_train, y_train = x_train[keep], y_train[keep]
    released = release(x_train, y_train, noise if spec.poison_rate > 0 else None, mask, spec.quantize)
    train_data = TrainData(released, y_train, loaded.num_classes, x_clean=x_train)

    # 3. train the victim under the defenses, measure clean test accuracy each epoch
    torch.manual_seed(streams.init)
    settings = dataclasses.replace(protocol.train_settings(precision, device=device), compile=spec.compile)
    try:
        model = prepare_model(cell.victim.build(loaded.num_classes, image_shape), device)
        trainer = Trainer(model, train_data, settings, cell.defenses, streams.generator("order"), streams.generator("augment"),
                          device, reporter, hflip=cell.dataset.hflip)
        result = trainer.fit(x_test, y_test)
    except PASS_THROUGH:
        raise
    except Exception as exc:
        raise ComponentError.wrap(f"training victim {cell.victim_name!r} under defense {cell.defense_name!r}", exc) from exc

    meta = noise.meta if noise is not None else {}
    l0 = noise is not None and noise.norm == "l0"
    oracle = result.oracle_best
    planned = planned_row(cell)
    row = {
        "run_id": dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
        "cell_key": cell_key(planned),
        "config_key": config_key(planned),
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        **planned,
        "l0_max_delta": noise.eps if l0 else "",  # an L0 attack ignores --eps: its largest |δ|
        "norm": f"l0:{noise.pixels}" if l0 else "linf",
        "epochs": settings.epochs,
        "final_test_acc": result.final_test_acc,
        "selected_epoch": result.selected_epoch,
        "oracle_best_test_acc": oracle["test_acc"],
        "oracle_best_epoch": oracle["epoch"],
        "final_train_acc": result.final["train_acc"],
        "train_size": len(trainer.data),
        "test_size": len(y_test),
        "craft_seconds": round(craft_seconds, 2),
        "train_seconds": round(result.seconds, 2),
        "device": device_label(device),
        "precision": planned["precision"],
        "noise_key": key,
        "noise_cached": cached,
        "craft_stop_reason": meta.get("stop_reason", ""),
        "craft_iterations": meta.get("iterations", ""),
        "craft_final_error": meta.get("final_error", ""),
        "compile": "" if spec.compile == "none" else spec.compile,
        "inputs": input_locations(cell.attack, cell.attack_resolved),
    }
    return {column: row[column] for column in COLUMNS}, result.history


def planned_row(cell: Cell) -> dict:
    """The row fields that define ``cell``, known before any work: what the sweep compares with
    the rows already written (``uebench.cellkey``), and the start of the row ``run_cell`` returns."""
    spec, protocol = cell.spec, cell.protocol
    return {
        "uebench_version": __version__,
        "protocol": protocol.name,
        "protocol_version": protocol.version,
        "dataset": cell.dataset.name,
        "attack": cell.attack.name,
        "attack_options": canonical_json(identity_options(cell.attack, cell.attack_resolved)),
        "eps": spec.eps,
        "poison_rate": spec.poison_rate,
        "poison_classes": ",".join(cell.dataset.classes[k] for k in cell.poison_classes),
        "drop_poisoned": spec.drop_poisoned,
        "quantized": spec.quantize,
        "defense": cell.defense_name,
        "defense_options": defense_options_json(cell.defenses),
        "victim": cell.victim_name,
        "victim_options": options_json(cell.victim.options),
        "seed": spec.seed,
        "data_digest": cell.data_digest,
        "torch_version": cell.numerics.torch_version,
        "device": numerics_device_label(cell.numerics, pick_device(spec.device)),
        "threads": "" if cell.numerics.threads is None else cell.numerics.threads,
        "precision": cell.numerics.precision,
    }


def numerics_device_label(numerics: Numerics, device) -> str:
    """The row's ``device`` as known before any work: ``cpu:1threads`` (the pinned count), or the
    accelerator's name."""
    return f"cpu:{numerics.threads}threads" if numerics.threads is not None else device_label(device)


def defense_options_json(defenses) -> str:
    """``{"cutmix": {"alpha": 1.0, ...}, "jpeg": {...}}``: each defense's options under its name."""
    return canonical_json({d.name: options_dict(d.options) for d in defenses})


def record(out: Path, row: dict, history: list[dict]) -> None:
    """Append ``row`` to ``out/results.csv`` and write its curve to ``out/curves/<run_id>.csv``."""
    out = Path(out)
    append_row(out / "results.csv", row, curve=(out / "curves" / f"{row['run_id']}.csv", history))
