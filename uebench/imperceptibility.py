"""How visible a released poison is: its poisoned images against their clean originals.

Every results row carries these columns (:data:`COLUMNS`), measured on the training set the
victim saw (``uebench.poison.Released``), over the **poisoned images only** — with a poison rate
below 1 the untouched images would pull every mean toward "invisible":

- ``poisoned_images``: how many images the values are over (0: a clean cell — attack ``none``,
  poison rate 0, poisoned samples dropped — whose metric columns are then empty, not 0 or ∞:
  a mean over no image has no value).
- ``psnr_mean`` / ``psnr_worst`` (dB): the peak signal-to-noise ratio of each poisoned image
  against its clean one on the [0, 1] scale (``kornia.metrics.psnr``, one value per image, not
  one pooled MSE), averaged, and the lowest.  The field's usual yardstick: ~30 dB for an
  8/255 L∞ shift of every pixel (20·log10(255/8) = 30.07 dB), ~40 dB and above is hard to see,
  below ~25 dB is visible.  An image the noise left unchanged (δ rounded away by the uint8
  release) has PSNR +∞: ``psnr_mean`` is then over the changed images, the note says how many
  were unchanged, and it is ``inf`` only when none changed.
- ``ssim_mean`` / ``ssim_worst``: the structural similarity (Wang et al. 2004;
  ``kornia.metrics.ssim``: 11×11 Gaussian window, σ = 1.5, averaged over channels and pixels)
  per image, averaged, and the lowest; 1 is identical, ~0.9 and below is a visible change.  PSNR
  misses what SSIM sees: structured noise (patches, class-wise textures) can keep a high PSNR.
  Computed in float32 (float64 SSIM is ~9× slower on a CPU); on flat regions its variances
  cancel to ~1e-4 of the float64 value, so the row keeps 4 decimals.
- ``linf_max``: the largest |released − clean| of any value of any poisoned image ([0, 1] scale;
  the L∞ budget a row's ``eps`` claims, as released: after clamping and the uint8 rounding).
- ``l2_mean``: the mean over poisoned images of ‖released − clean‖₂ over all C·H·W values
  ([0, 1] scale): the budget of the L2 attacks (LSP, AR).
- ``l0_values_mean``: the mean number of *values* (of C·H·W; each channel counts) a poisoned
  image changed — not pixel positions, which an ``l0:<pixels>`` norm counts: OPS's one pixel
  changes up to C values.
- ``imperceptibility_note``: why the values are empty, or what qualifies them ('' otherwise).

The perturbation measured is what was released (released − clean), not δ itself: the clamp to
[0, 1] and the uint8 rounding are part of what a viewer sees.  One cell measures its released
set before training; on a CPU, 50,000 CIFAR-sized images take a few seconds (README), batched
on the cell's device.  :func:`backfill_file` fills rows written before these columns existed.
"""

from __future__ import annotations

import math

import torch

# The row's columns (``uebench.results.COLUMNS`` ends with them).
METRICS = ("psnr_mean", "psnr_worst", "ssim_mean", "ssim_worst", "linf_max", "l2_mean", "l0_values_mean")
COLUMNS = ("poisoned_images", *METRICS, "imperceptibility_note")
SSIM_WINDOW = 11
# Values per batch: bounds the float copies SSIM makes (≈ 40 MB per chunk) whatever the image size.
CHUNK_VALUES = 1 << 22
DIGITS = {"psnr_mean": 4, "psnr_worst": 4, "ssim_mean": 4, "ssim_worst": 4, "linf_max": 8, "l2_mean": 6, "l0_values_mean": 3}


def unavailable(note: str) -> dict:
    """The columns of a row that could not be measured: every value empty, ``note`` says why."""
    return {**{column: "" for column in COLUMNS}, "imperceptibility_note": note}


def clean_values(note: str = "clean: no image of the released set is poisoned") -> dict:
    """The columns of a cell without a poisoned image: 0 images, no metric (a mean over none)."""
    return {**unavailable(note), "poisoned_images": 0}


def _unit(x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return x.to(dtype).div(255.0) if x.dtype == torch.uint8 else x.to(dtype)


def per_image(clean: torch.Tensor, released: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB), SSIM, L∞, L2 and changed-value count of ``released`` against
    ``clean`` (same shape, N×C×H×W, uint8 or float in [0, 1]), computed on their device."""
    import kornia

    a, b = _unit(released), _unit(clean)
    diff = (_unit(released, torch.float64) - _unit(clean, torch.float64)).flatten(1)  # exact multiples of 1/255
    psnr = torch.vmap(lambda p, q: kornia.metrics.psnr(p, q, 1.0))(a, b)
    ssim = kornia.metrics.ssim(a, b, SSIM_WINDOW, max_val=1.0).mean(dim=(1, 2, 3))
    return {"psnr": psnr, "ssim": ssim, "linf": diff.abs().amax(dim=1), "l2": diff.norm(dim=1),
            "l0": (diff != 0).sum(dim=1).to(torch.float32)}


def measure(clean: torch.Tensor, released: torch.Tensor, poisoned: torch.Tensor | None = None) -> dict:
    """The row's columns for a released set: ``clean`` and ``released`` (N×C×H×W, uint8 or
    float in [0, 1], on the device to compute on), ``poisoned`` (bool N; None = every image) the
    images that carry noise, the only ones measured.  Batched; nothing is made up: no poisoned
    image gives :func:`clean_values`."""
    if clean.shape != released.shape:
        raise ValueError(f"clean images {tuple(clean.shape)} and released images {tuple(released.shape)} differ in shape")
    index = torch.arange(len(clean)) if poisoned is None else torch.nonzero(poisoned.cpu()).flatten()
    if len(index) == 0:
        return clean_values()
    chunk = max(1, CHUNK_VALUES // max(1, clean[0].numel()))
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(index), chunk):
        rows = index[start:start + chunk].to(clean.device)
        for name, values in per_image(clean[rows], released[rows]).items():
            parts.setdefault(name, []).append(values.double().cpu())
    v = {name: torch.cat(values) for name, values in parts.items()}
    finite = v["psnr"][torch.isfinite(v["psnr"])]
    unchanged = len(index) - len(finite)
    out = {
        "poisoned_images": len(index),
        "psnr_mean": float(finite.mean()) if len(finite) else math.inf,
        "psnr_worst": float(v["psnr"].min()),
        "ssim_mean": float(v["ssim"].mean()), "ssim_worst": float(v["ssim"].min()),
        "linf_max": float(v["linf"].max()), "l2_mean": float(v["l2"].mean()), "l0_values_mean": float(v["l0"].mean()),
        "imperceptibility_note": (f"{unchanged} of {len(index)} poisoned images unchanged (PSNR inf); psnr_mean over the rest"
                                  if unchanged else ""),
    }
    return {k: round(x, DIGITS[k]) if k in DIGITS and math.isfinite(x) else x for k, x in out.items()}


def measure_released(released, device=None) -> dict:
    """:func:`measure` of a ``uebench.poison.Released`` (its ``poisoned`` mask says which images
    carry noise): the row's columns for the set the victim trains on."""
    poisoned = released.poisoned
    if poisoned is not None and not bool(poisoned.any()):
        return clean_values()
    return measure(released.clean, released.images, poisoned)


# --- rows written before the columns existed --------------------------------------------------


def is_measured(row: dict) -> bool:
    """Whether ``row`` has its imperceptibility values (a clean row's ``poisoned_images`` 0 counts)."""
    from uebench.cellkey import is_missing

    return not is_missing(row.get("poisoned_images"))


def _flag(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _rerun_hint(row: dict) -> str:
    """``uebench run …`` that crafts (and caches) the row's noise again."""
    import json
    import shlex

    options = json.loads(row.get("attack_options") or "{}")
    parts = ["uebench", "run", "--attack", row["attack"], *[f"-o {k}={shlex.quote(str(v))}" for k, v in sorted(options.items())
                                                             if v is not None],
             "--protocol", row["protocol"], "--dataset", row["dataset"], "--seed", str(row["seed"]), "--eps", str(row["eps"])]
    if str(row.get("threads", "")).strip():
        parts += ["--threads", str(int(float(row["threads"])))]
    return " ".join(parts)


def release_group(row: dict) -> str:
    """Rows with equal groups released the same images (they differ only in defense or victim)."""
    import json

    fields = ("dataset", "protocol", "protocol_version", "uebench_version", "attack", "attack_options", "eps", "seed",
              "poison_rate", "poison_classes", "drop_poisoned", "quantized", "data_digest", "torch_version", "threads",
              "precision", "noise_key", "inputs")
    from uebench.cellkey import device_type

    return json.dumps([str(row.get(f, "")) for f in fields] + [device_type(row.get("device"))])


class Backfill:
    """Measures rows written before the imperceptibility columns: each row's released set rebuilt
    from its fields — the protocol's data subset, the noise, the poison scope drawn from its seed —
    and measured.  The noise comes from the noise cache under the row's ``noise_key`` (the file
    the row's cell read), or, for an attack that is not cached because it is cheap to redo
    (``Attack.cacheable = False``: random, lsp, ar, cuda, ops), by crafting it again.  Before
    anything is rebuilt, today's code must name the row's cell with the row's ``cell_key`` (same
    settings, seed, data digest, numerics and uebench release); a row it does not, a noise not in
    the cache, or a composed attack whose parts are not cached gets empty values and a note
    saying why — never an estimate.  Rows of one release (other defenses or victims) are measured
    once."""

    def __init__(self, cache_dir=None, data_dir=None, plugins_dirs=(), log=None):
        from uebench.craft.cache import NoiseCache

        self.cache = NoiseCache(cache_dir)
        self.data_dir, self.plugins_dirs = data_dir, tuple(plugins_dirs)
        self.log = log or (lambda text: None)
        self.memo: dict[str, dict] = {}

    def values(self, row: dict) -> dict:
        """The imperceptibility columns of ``row`` (measured, clean, or empty with a note)."""
        if row.get("attack") == "none" or float(row.get("poison_rate") or 1) <= 0:
            return clean_values()
        if _flag(row.get("drop_poisoned")):
            return clean_values("clean: the poisoned samples were dropped; the victim saw none")
        group = release_group(row)
        if group not in self.memo:
            try:
                self.memo[group] = self._measure(row)
            except _Unavailable as why:
                self.memo[group] = unavailable(str(why))
            self.log(f"{row['attack']} seed {row['seed']} ({row.get('run_id')}): "
                     + (self.memo[group]["imperceptibility_note"] or "measured"))
        return self.memo[group]

    def _measure(self, row: dict) -> dict:
        import json

        from uebench.cell import CellSpec, RunSettings, noise_request, prepare
        from uebench.cellkey import cell_key, device_type, fields_of, identity
        from uebench.noise import NoiseFileError, load_noise
        from uebench.poison import release_scope
        from uebench.record import planned_row
        from uebench.runner import cell_noise, load_cell

        if str(row.get("inputs", "")).strip():
            raise _Unavailable(f"the attack read files ({row['inputs']}), which the row holds only by digest: "
                               f"rerun the cell to measure it")
        threads = str(row.get("threads", "")).strip()
        spec = CellSpec(attack=row["attack"], dataset=row["dataset"], protocol=row["protocol"], seed=int(row["seed"]),
                        eps=float(row["eps"]), poison_rate=float(row.get("poison_rate") or 1),
                        poison_classes=tuple(c for c in str(row.get("poison_classes", "")).split(",") if c),
                        quantize=_flag(row.get("quantized", True)) if str(row.get("quantized", "")).strip() else True,
                        attack_options=json.loads(row.get("attack_options") or "{}"))
        import tempfile

        settings = RunSettings(data_dir=self.data_dir, out=tempfile.gettempdir(), cache_dir=self.cache.folder,
                               device=device_type(row.get("device")) or "cpu", precision=row.get("precision") or "auto",
                               threads=int(float(threads)) if threads else None, plugins_dirs=self.plugins_dirs)
        try:
            cell = prepare(spec, settings)
        except Exception as exc:  # noqa: BLE001 — any reason the cell cannot be named today goes into the note
            raise _Unavailable(f"the cell cannot be prepared today: {type(exc).__name__}: {exc}") from None
        planned = planned_row(cell)
        planned.update({k: row.get(k, "") for k in ("defense", "defense_options", "victim", "victim_options")})
        fields = fields_of(row)
        if row.get("cell_key") and cell_key(planned, fields) != row["cell_key"]:
            today, then = identity(planned, fields), identity(row, fields)
            differ = ", ".join(f"{k} (row {then[k]!r}, today {today[k]!r})" for k in fields if today[k] != then[k])
            raise _Unavailable(f"today's code does not name this cell as the row did ({differ or 'its cell_key'}): "
                               f"its release cannot be rebuilt")
        loaded = load_cell(cell)
        key = str(row.get("noise_key", "")).strip()
        if key:
            path = self.cache.path(key)
            if not path.exists():
                raise _Unavailable(f"noise {key} not in the noise cache ({self.cache.folder}): recraft it with "
                                   f"`{_rerun_hint(row)}` (any defense), then run this again")
            try:
                noise = load_noise(path, expect={"key": key}).to(cell.device)
            except NoiseFileError as exc:
                raise _Unavailable(f"cached noise unreadable: {exc}") from None
            how = "backfilled from the cached noise"
        elif cell.attack.cacheable:
            raise _Unavailable("the row names no noise key; its noise cannot be found")
        else:
            loaded.ctx.craft_other = self._cache_only(cell, loaded, noise_request)
            try:
                noise = cell_noise(cell, loaded).noise
            except Exception as exc:  # noqa: BLE001 — the reason goes into the note
                cause = exc
                while cause is not None and not isinstance(cause, _Unavailable):
                    cause = cause.__cause__
                raise cause or _Unavailable(f"crafting the noise again failed: {type(exc).__name__}: {exc}") from None
            how = "backfilled: noise regenerated (model-free attack, same cell key)"
        released = release_scope(loaded.x_train, loaded.y_train, noise, rate=cell.spec.poison_rate, classes=cell.poison_classes,
                                 drop=False, quantize=cell.spec.quantize, generator=loaded.streams.generator("poison"))
        out = measure_released(released)
        out["imperceptibility_note"] = "; ".join(p for p in (how, out["imperceptibility_note"]) if p)
        return out

    def _cache_only(self, cell, loaded, noise_request):
        """``ctx.craft_other`` for a composed attack: its parts from the cache, or crafted again
        when cheap (not cached by design); a part that would need crafting makes the row unavailable."""
        from uebench.options import build_options

        craft_other = loaded.ctx.craft_other

        def other(name: str, options: dict, seed: int):
            entry = cell.host.attacks.get(name)
            attack = entry.cls(build_options(entry.cls.Options, options, f"attack {name!r}"))
            request = noise_request(attack, attack.resolve(cell.protocol, cell.spec.eps), cell, seed, len(loaded.y_train))
            if attack.cacheable and not self.cache.path(request.key).exists():
                raise _Unavailable(f"its part {name} (seed {seed}) is not in the noise cache: rerun the cell to measure it")
            return craft_other(name, options, seed)

        return other


class _Unavailable(Exception):
    """A row's release cannot be rebuilt: the message goes into its note."""


def backfill_rows(rows: list[dict], backfill: Backfill) -> dict[str, dict]:
    """``run_id`` → the imperceptibility columns of every row of ``rows`` not yet measured."""
    return {row["run_id"]: backfill.values(row) for row in rows if not is_measured(row)}


def backfill_file(path, backfill: Backfill, dry_run: bool = False) -> dict[str, int]:
    """Fill the imperceptibility columns of the rows of the results CSV at ``path`` that lack
    them.  The (slow) measuring reads a snapshot without the lock; the rows are then written under
    the results lock (``uebench.results``), re-read, so rows appended meanwhile stay, and only rows
    still unmeasured change.  Returns how many rows were measured, clean, and left unavailable."""
    from pathlib import Path

    import pandas as pd
    from filelock import FileLock

    from uebench.results import atomic_write_csv, ordered_columns

    path = Path(path)
    snapshot = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    found = backfill_rows(snapshot, backfill)
    counts = {"measured": 0, "clean": 0, "unavailable": 0}
    for values in found.values():
        kind = ("clean" if values["poisoned_images"] == 0 else "measured" if values["poisoned_images"] != "" else "unavailable")
        counts[kind] += 1
    if dry_run or not found:
        return counts
    with FileLock(str(path) + ".lock"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for column in COLUMNS:
            if column not in frame:
                frame[column] = ""
        for index, row in frame.iterrows():
            if row["run_id"] in found and not is_measured(row.to_dict()):
                for column, value in found[row["run_id"]].items():
                    frame.at[index, column] = "" if value == "" else str(value)
        atomic_write_csv(frame[ordered_columns(frame.columns)], path)
    return counts
