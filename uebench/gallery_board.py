"""The committed gallery: every attack of a board's main table, shown on the same ten images.

``uebench leaderboard gallery`` writes, under ``ROOT/gallery/<protocol>/<dataset>/``:

- ``clean/<k>.png`` — the k-th chosen training image (one per class, ``uebench.gallery.choose``);
- ``<slug>/poisoned-<k>.png`` and ``<slug>/delta-<k>.png`` per attack: the released image and
  its amplified noise, 32×32 at native resolution (a few KB each);
- ``gallery.json`` — per attack label of the board: attack, options, seed, form, norm, noise
  key, the chosen training indices, class names, PSNR per image and over the whole released set,
  the files, and the ``uebench noise show`` command that shows it; for an attack that could not
  be shown (not in the noise cache under ``--cached-only``, or its crafting failed) an entry
  saying why and the command that would craft it — never a made-up picture.

Which attacks: one configuration per attack label (``uebench.stats.labelled``) of the rows of
``ROOT/<protocol>/results.csv`` at the protocol's current version, fully poisoned (rate 1, every
class, nothing dropped), at seed 0, with the options, ε, release and numerics of the label's
rows — so the noise is the one the board's seed-0 cells trained on, through the noise cache
(crafted once, reused by ``run``, ``detect``, ``noise show``).  The attack ``none`` is the clean
column, written once.  Everything written is a function of the noises: no timestamp, sorted keys,
PNGs without metadata, so a rerun on the same cache writes the same bytes.

Also here: :func:`cell_release`, a prepared cell's released set with its clean originals and the
dataset indices of its rows (``load_cell`` → ``cell_noise`` → ``release_cell``, the path ``run``
and ``detect`` take), optionally from the cache only; ``uebench noise show|export`` use it too.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from uebench.progress import NULL_REPORTER, Reporter
from uebench.stats import slug

GALLERY_FILE = "gallery.json"
NOT_CACHED = "not in the noise cache"


class GalleryInputError(ValueError):
    """A board or an ``--attack`` pattern that gives nothing to draw (a usage error: exit 2)."""


class NotAvailable(Exception):
    """A noise that ``--cached-only`` may not craft: the message says which and where it looked."""


@dataclass
class CellRelease:
    """A cell's released training set: uint8 ``images`` and their ``labels``, the ``clean``
    originals, ``index`` (the dataset index of each row), the noise (``crafted``) and the cell."""

    cell: object
    images: object
    labels: object
    clean: object
    index: object
    crafted: object
    poisoned: object = None  # bool per row; None = every row

    @property
    def noise(self):
        return self.crafted.noise if self.crafted is not None else None


def cell_release(cell, reporter: Reporter = NULL_REPORTER, cached_only: bool = False) -> CellRelease:
    """``cell``'s released set, its noise crafted or read from the noise cache as ``uebench run``
    does.  ``cached_only``: an attack the cache stores (and each cached part of a composed one,
    ``mix-or``) must be there, valid, or :class:`NotAvailable` is raised; model-free attacks,
    which are never cached, are made again (seconds)."""
    from uebench.craft.cache import NoiseCache
    from uebench.runner import cell_noise, load_cell, release_cell

    cache = NoiseCache(cell.settings.cache_dir)
    request = cell.noise
    if cached_only and request is not None and request.attack_impl.cacheable and not cache.path(request.key).exists():
        raise NotAvailable(f"noise {request.key} ({request.attack} seed {request.seed}) is {NOT_CACHED}")
    loaded = load_cell(cell, reporter)
    if cached_only and request is not None:
        if request.attack_impl.cacheable:
            noise, why = cache.get(request.key, tuple(loaded.x_train.shape), request.identity)
            if noise is None:
                raise NotAvailable(f"noise {request.key} ({request.attack} seed {request.seed}) is {NOT_CACHED} as a valid file "
                                   f"({why})")
        loaded.ctx.craft_other = _parts_from_cache(cell, loaded, cache)
    crafted = cell_noise(cell, loaded, reporter)
    released = release_cell(cell, loaded, crafted)
    return CellRelease(cell, released.images, released.labels, released.clean, loaded.ctx.train_index.cpu(), crafted,
                       released.poisoned)


def _parts_from_cache(cell, loaded, cache):
    """``ctx.craft_other`` that refuses to craft a part the cache would store and does not hold."""
    from uebench.cell import noise_request
    from uebench.options import build_options

    craft_other = loaded.ctx.craft_other

    def other(name: str, options: dict, seed: int):
        entry = cell.host.attacks.get(name)
        attack = entry.cls(build_options(entry.cls.Options, options, f"attack {name!r}"))
        request = noise_request(attack, attack.resolve(cell.protocol, cell.spec.eps), cell, seed, len(loaded.y_train))
        if attack.cacheable and not cache.path(request.key).exists():
            raise NotAvailable(f"its part, noise {request.key} ({name} {_options_text(options)}seed {seed}), is {NOT_CACHED}")
        return craft_other(name, options, seed)

    return other


# --- which attacks a board shows ------------------------------------------------------------


def _options_text(options: dict) -> str:
    return "".join(f"{k}={v} " for k, v in sorted(options.items()))


@dataclass(frozen=True)
class Configuration:
    """One attack label of a board: the row whose settings its gallery picture is crafted with."""

    dataset: str
    label: str
    row: dict  # a results row of the label (seed 0's where there is one)

    @property
    def attack(self) -> str:
        return str(self.row["attack"])

    @property
    def options(self) -> dict:
        from uebench.stats import parse_options

        return parse_options(self.row.get("attack_options"))


def board_configurations(csv: Path, pattern: str | None = None) -> list[Configuration]:
    """The main table's attack labels of the results file ``csv`` (current protocol version,
    poison rate 1, every class, nothing dropped), one configuration each, sorted by dataset and
    label; ``pattern`` (fnmatch, on the label or the attack name) keeps only those it matches."""
    import fnmatch

    import pandas as pd

    from uebench.stats import current_version, labelled

    frame = labelled(current_version(pd.read_csv(csv)))
    if frame.empty:
        return []
    main = frame[(frame["poison_rate"].astype(float) == 1.0) & (frame["poison_classes"] == "") & ~frame["drop_poisoned"]]
    out = []
    for (dataset, label), part in main.groupby(["dataset", "attack_label"], sort=True):
        if pattern and not (fnmatch.fnmatchcase(label, pattern) or fnmatch.fnmatchcase(str(part["attack"].iloc[0]), pattern)):
            continue
        part = part.assign(_seed=part["seed"].astype(int)).sort_values(["_seed", "run_id"])
        row = {k: v for k, v in part.iloc[0].to_dict().items() if k != "_seed"}
        out.append(Configuration(str(dataset), str(label), row))
    return out


def cell_of(config: Configuration, protocol: str, data_dir=None, cache_dir=None, out=None, plugins_dirs=(), host=None,
            reporter: Reporter = NULL_REPORTER):
    """The prepared seed-0 cell of ``config`` (its row's attack, options, ε, release and numerics;
    no defense, the protocol's victim: neither changes the released set)."""
    import tempfile

    from uebench.cell import CellSpec, RunSettings, prepare
    from uebench.cellkey import device_type, is_missing

    row = config.row
    threads = row.get("threads")
    spec = CellSpec(attack=config.attack, dataset=config.dataset, protocol=protocol, seed=0, eps=float(row["eps"]),
                    quantize=_flag(row.get("quantized", True)), attack_options=config.options)
    settings = RunSettings(data_dir=data_dir, out=Path(out or tempfile.gettempdir()), cache_dir=cache_dir,
                           device=device_type(row.get("device")) or "auto",
                           precision="auto" if is_missing(row.get("precision")) else str(row["precision"]),
                           threads=None if is_missing(threads) else int(float(threads)), plugins_dirs=tuple(plugins_dirs))
    return prepare(spec, settings, host, reporter)


def noise_show_command(config: Configuration, out: str | None = None) -> str:
    """``uebench noise show …`` that crafts (and caches) ``config``'s seed-0 noise and draws it:
    ``uebench run``'s command for the row (``uebench.run_command``) without what a released set
    does not depend on (defense, victim)."""
    from uebench.run_command import run_arguments

    row = {**config.row, "seed": 0, "defense": "none", "defense_options": "{}", "victim_options": "{}", "poison_rate": 1.0,
           "poison_classes": "", "drop_poisoned": False}
    args = run_arguments(row)
    kept, i = ["uebench", "noise", "show"], 2
    while i < len(args):
        flag = args[i]
        if flag in ("--defense", "--victim"):
            i += 2
            continue
        kept.append(flag)
        i += 1
    return shlex.join([*kept, "--out", out or f"{slug(config.label)}.png"])


def _flag(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")


# --- writing the gallery ----------------------------------------------------------------------


def describe(shown) -> dict:
    """What gallery.json says about the chosen images (the same for every attack)."""
    return {"indices": [s.index for s in shown], "classes": [s.class_name for s in shown], "labels": [s.label for s in shown]}


def shown_entry(config: Configuration, release: CellRelease, shown, folder: str) -> dict:
    """gallery.json's entry of an attack shown."""
    from uebench.imperceptibility import measure_released

    noise = release.noise
    overall = measure_released(release) if noise is not None else {}
    psnr = overall.get("psnr_mean")
    return {
        "status": "shown", "attack": config.attack, "options": config.options, "seed": 0,
        "form": noise.form if noise is not None else None, "norm": noise.budget_label if noise is not None else None,
        "noise_key": release.crafted.key or None, "eps": float(config.row["eps"]), **describe(shown),
        "psnr": [s.psnr for s in shown], "psnr_mean": psnr if isinstance(psnr, float) and psnr != float("inf") else None,
        "delta_max": [s.delta_max for s in shown],
        "clean": [f"clean/{k}.png" for k in range(len(shown))],
        "poisoned": [f"{folder}/poisoned-{k}.png" for k in range(len(shown))] if folder else None,
        "delta": [f"{folder}/delta-{k}.png" for k in range(len(shown))] if folder else None,
        "command": noise_show_command(config),
    }


def pending_entry(config: Configuration, status: str, why: str) -> dict:
    """gallery.json's entry of an attack not shown: why, and the command that crafts it."""
    return {"status": status, "attack": config.attack, "options": config.options, "seed": 0, "eps": float(config.row["eps"]),
            "why": why, "command": noise_show_command(config)}


def build_gallery(root: Path, protocol: str, pattern: str | None = None, cached_only: bool = False, data_dir=None,
                  cache_dir=None, plugins_dirs=(), reporter: Reporter = NULL_REPORTER) -> list[Path]:
    """Write ``root/gallery/<protocol>/<dataset>/`` for every dataset of ``root/<protocol>/results.csv``
    (see the module docstring); returns the gallery.json files written.  With ``pattern`` only the
    matching labels are (re)made; the other entries of an existing gallery.json stay."""
    from functools import partial

    from rich.markup import escape

    from uebench.craft.cache import NoiseCache
    from uebench.gallery import gallery, png_bytes
    from uebench.plugins import get_host

    def log(text: str, style: str = "") -> None:  # labels hold brackets ("[patch=8]"), which rich would read as markup
        reporter.log(f"[{style}]{escape(text)}[/]" if style else escape(text))

    cache_folder = NoiseCache(cache_dir).folder
    host = get_host(plugins_dirs)
    configs = board_configurations(Path(root) / protocol / "results.csv")
    if not configs:
        raise GalleryInputError(f"{Path(root) / protocol / 'results.csv'} has no fully poisoned rows at protocol "
                                f"{protocol!r}'s current version: nothing to show")
    chosen = {(c.dataset, c.label) for c in board_configurations(Path(root) / protocol / "results.csv", pattern)}
    if pattern and not chosen:
        raise GalleryInputError(f"--attack {pattern!r} matches no attack label of the board; labels: "
                                + "; ".join(sorted({c.label for c in configs})))
    written = []
    for dataset in sorted({c.dataset for c in configs}):
        folder = Path(root) / "gallery" / protocol / dataset
        mine = [c for c in configs if c.dataset == dataset]
        old = _read(folder / GALLERY_FILE).get("attacks", {})
        base = cell_of(Configuration(dataset, "none", {"attack": "none", "attack_options": "{}", **_numerics(mine[0].row)}),
                       protocol, data_dir, cache_dir, folder, plugins_dirs, host)
        clean = cell_release(base)
        first = gallery(clean.clean, clean.images, clean.labels, base.dataset.classes, clean.index)
        files = {f"clean/{k}.png": png_bytes(s.clean) for k, s in enumerate(first)}
        entries: dict[str, dict] = {}
        task = reporter.task(f"gallery {protocol}/{dataset}", total=len(mine))
        for config in mine:
            previous = old.get(config.label)
            if (dataset, config.label) in chosen:
                prepare_cell = partial(cell_of, protocol=protocol, data_dir=data_dir, cache_dir=cache_dir, out=folder,
                                       plugins_dirs=plugins_dirs, host=host, reporter=reporter)
                entry, pictures = _draw(config, first, previous, folder, cached_only, log, cache_folder, prepare_cell, reporter)
            else:  # not asked for this time: as it was, or listed with the command that makes it
                entry = previous or pending_entry(config, "not shown yet", "not made yet: run `uebench leaderboard gallery "
                                                  f"--protocol {protocol} --attack {shlex.quote(config.label)}`")
                pictures = _kept_files(folder, entry)
            entries[config.label] = entry
            files.update(pictures)
            task.update(1, attack=escape(config.label))
        task.close()
        manifest = {"protocol": protocol, "protocol_version": base.protocol.version, "dataset": dataset,
                    "data_digest": base.data_digest, **describe(first), "how": HOW, "attacks": entries}
        written.append(_write(folder, files, manifest))
    return written


def _draw(config: Configuration, first, previous: dict | None, folder: Path, cached_only: bool, log, cache_folder, prepare_cell,
          reporter: Reporter) -> tuple[dict, dict[str, bytes]]:
    """gallery.json's entry of ``config`` and its PNGs (name → bytes): drawn from its released
    set; kept from ``previous`` when ``--cached-only`` lacks the noise those pictures were made
    from; or an entry saying why not (never a picture of something else)."""
    import torch

    from uebench.gallery import gallery, png_bytes

    try:
        cell = prepare_cell(config)
        release = cell_release(cell, reporter, cached_only)
    except NotAvailable as why:
        if previous and previous.get("status") == "shown" and _same_noise(previous, config, cell):
            log(f"{config.label}: {why}; keeping the pictures already made from it")
            return previous, _kept_files(folder, previous)
        log(f"{config.label}: not shown: {why} (noise cache {cache_folder})", "yellow")
        return pending_entry(config, "not crafted", f"{why}: its command crafts it"), {}
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 — a failed crafting is said in the entry, never drawn
        log(f"{config.label}: failed ({type(exc).__name__}: {exc})", "red")
        return pending_entry(config, "failed", f"{type(exc).__name__}: {exc}"), {}
    shown = gallery(release.clean, release.images, release.labels, cell.dataset.classes, release.index)
    if [s.index for s in shown] != [s.index for s in first] or any(not torch.equal(s.clean, f.clean)
                                                                    for s, f in zip(shown, first, strict=True)):
        raise RuntimeError(f"{config.label}: its clean images {[s.index for s in shown]} are not the gallery's "
                           f"{[s.index for s in first]}")
    if release.noise is None:  # the clean column: clean/<k>.png, written once
        return shown_entry(config, release, shown, ""), {}
    name = slug(config.label)
    pictures = {}
    for k, s in enumerate(shown):
        pictures[f"{name}/poisoned-{k}.png"] = png_bytes(s.poisoned)
        pictures[f"{name}/delta-{k}.png"] = png_bytes(s.delta)
    return shown_entry(config, release, shown, name), pictures


HOW = ("the same training images for every attack: the first of each class in the protocol's training subset (by dataset "
       "index); poisoned = the released uint8 image (seed 0); delta = released - clean in grey levels, shown per image as "
       "0.5 + delta / (2 max|delta|) (0 = mid-grey 128, the image's largest |delta| = 0 or 255; delta_max gives it in grey "
       "levels); psnr per image and psnr_mean over every poisoned image of the released set (kornia, as the results rows)")


def _numerics(row: dict) -> dict:
    """The fields of ``row`` a cell's numerics and data come from (for the clean cell)."""
    return {k: row.get(k) for k in ("eps", "quantized", "device", "precision", "threads")}


def _same_noise(previous: dict, config: Configuration, cell) -> bool:
    """Whether a shown entry was made from the noise ``cell`` asks for (a cached noise by its key;
    one the cache does not store, e.g. a mixture of cached parts, by attack and options)."""
    request = cell.noise
    key = request.key if request is not None and request.attack_impl.cacheable else None
    return (previous.get("attack") == config.attack and previous.get("options") == config.options
            and previous.get("noise_key") == key)


def _kept_files(folder: Path, entry: dict) -> dict:
    """The files of an entry kept from the previous gallery (read back, rewritten unchanged)."""
    names = [*(entry.get("poisoned") or []), *(entry.get("delta") or [])] if entry.get("status") == "shown" else []
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _write(folder: Path, files: dict[str, bytes], manifest: dict) -> Path:
    """Write ``files`` and gallery.json into ``folder`` (each atomically), and remove the PNGs of
    attacks no longer in it (only files of the gallery's own layout)."""
    from uebench.atomic import atomic_write

    def put(path: Path, data: bytes):
        if path.is_file() and path.read_bytes() == data:
            return
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), suffix=path.suffix)

    for name, data in sorted(files.items()):
        put(folder / name, data)
    ours = re.compile(r"^(clean/\d+|[a-z0-9-]+/(poisoned|delta)-\d+)\.png$")
    for path in sorted(folder.glob("*/*.png")):
        name = path.relative_to(folder).as_posix()
        if ours.match(name) and name not in files:
            path.unlink()
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not any(sub.iterdir()):
            sub.rmdir()
    put(folder / GALLERY_FILE, manifest_text(manifest).encode())
    return folder / GALLERY_FILE
