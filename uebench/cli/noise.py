"""``uebench noise show|export``: see a cell's released poison, or write it out for another tool.

Both take the cell's attack exactly as ``uebench run`` does — the very same click options
(``--attack``, ``-o``, ``--seed``, ``--protocol``, ``--eps``, …, taken from ``run``'s command) and
the same parsing (``uebench.cli.run.cell_request``) — and get the released set the way ``run``
and ``detect`` do (``uebench.gallery_board.cell_release``: the noise crafted, or read from the
noise cache).  Defense and victim play no part in a released set, so neither is asked for.
"""

from __future__ import annotations

from pathlib import Path

import click

from uebench.options import OptionError

# ``uebench run``'s options a released set depends on, in the order the help lists them
CELL_OPTIONS = ("attack", "options", "seed", "protocol", "dataset", "eps", "poison_rate", "poison_classes", "data_dir",
                "cache_dir", "device", "precision", "threads")
# what ``cell_request`` reads that these commands do not ask for: a released set's own defaults
NOT_ASKED = {"defenses": ("none",), "victim": None, "drop_poisoned": False, "float_noise": False, "compile_mode": "none"}


def cell_params() -> list[click.Parameter]:
    """``uebench run``'s own option objects for :data:`CELL_OPTIONS` (same flags, defaults, help)."""
    from uebench.cli.run import run

    by_name = {p.name: p for p in run.params}
    return [by_name[name] for name in CELL_OPTIONS]


@click.group(name="noise", short_help="See a cell's poison (clean | poisoned | noise), or export it for other tools.")
def noise_group():
    """A cell's released poison: `show` draws clean | poisoned | noise δ of one training image
    per class, `export` writes the released images for other tools (and for `--attack from-file`).

    The attack is given as to `uebench run` (`--attack`, `-o key=value`, `--seed`, `--protocol`,
    ...); its noise is crafted once and then read from the noise cache."""


@noise_group.command(name="show", params=cell_params(),
                     short_help="Draw clean | poisoned | noise of one image per class as a PNG.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The PNG to write (a grid: a row per class, columns clean | poisoned | noise δ).")
@click.option("--scale", default=4, show_default=True, type=click.IntRange(1, 16),
              help="Upscaling of each picture (nearest-neighbour: every pixel a scale×scale block).")
@click.pass_context
def noise_show(ctx, out, scale, **params):
    """Draw a cell's released poison: for the first training image of each class in the
    protocol's subset (the same images for every attack), the clean image, the released poisoned
    image and its noise δ = released − clean, amplified per image (0 = mid-grey, the largest |δ|
    black or white), with its PSNR.  A class-wise noise shows its K patterns.

    \b
    Example:
      uebench noise show --attack errmin-pgd -o form=class --protocol cpu --out errmin-class.png
    """
    from uebench.gallery import gallery, grid_png

    out = _writable_file(out, "--out")
    with _reporter() as reporter:
        cell = _prepare(ctx, params, out.parent, reporter)
        release = _release(cell, reporter)
    shown = gallery(release.clean, release.images, release.labels, cell.dataset.classes, release.index)
    noise = release.noise
    what = "clean (no noise)" if noise is None else f"{noise.form}-wise, norm {noise.budget_label}"
    title = (f"{cell.attack.name} {_options_text(cell)}· seed {cell.spec.seed} · {cell.protocol.name} v{cell.protocol.version} "
             f"· {cell.dataset.name} · {what}")
    data = grid_png(shown, title, scale)
    from uebench.atomic import atomic_write

    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data), suffix=".png")
    for s in shown:
        click.echo(f"  {s.class_name:>12} #{s.index:<6} {'PSNR ∞ (unchanged)' if s.psnr is None else f'PSNR {s.psnr:.2f} dB'}"
                   f"  max |δ| {s.delta_max}/255")
    click.echo(f"wrote {out}")


FORMATS = ("npz", "png")


@noise_group.command(name="export", params=cell_params(), short_help="Write a cell's released training images for other tools.")
@click.option("--out", required=True, type=click.Path(),
              help="npz: the .npz file to write; png: a new or empty folder for one PNG per training image.")
@click.option("--format", "fmt", default="npz", show_default=True, type=click.Choice(FORMATS),
              help="npz: one file (x_poison N×H×W×C uint8, y, indices); png: <training index>.png per image.")
@click.pass_context
def noise_export(ctx, out, fmt, **params):
    """Write a cell's released (poisoned, uint8) training images, in the layouts `--attack
    from-file` reads, so a poison made here is scored by another tool and one made elsewhere here:

    \b
      npz  OUT.npz holding x_poison (N×H×W×C uint8, the protocol's subset in order), y (labels)
           and indices (each row's index in the dataset's training split), and beside it
           OUT.indices.npy (the same indices, for from-file's -o indices=…)
      png  OUT/<training index>.png, one per image (APBench's layout), with indices.npy and
           labels.npy in the same order

    The command that scores the export again is printed; it releases exactly these bytes.
    `uebench protocols indices` explains the subset.

    \b
    Example:
      uebench noise export --attack errmin-pgd -o form=class --protocol cpu --out errmin-class.npz
    """
    if fmt == "npz":
        out = _writable_file(out, "--out")
        if out.suffix.lower() != ".npz":
            raise OptionError(f"--out {str(out)!r}: an npz export is a file ending in .npz (from-file reads files by suffix)")
    else:
        out = _new_folder(Path(out), "--out")
    with _reporter() as reporter:
        cell = _prepare(ctx, params, out.parent, reporter)
        release = _release(cell, reporter)
        written = _export(release, out, fmt, reporter)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo("score it again (the same released images, byte for byte):")
    click.echo(f"  {from_file_command(release, out, fmt)}")


def _reporter():
    from uebench.progress import Reporter

    return Reporter()


def _prepare(ctx, params: dict, folder: Path, reporter):
    """The cell the options name, prepared (every name and option checked: exit 2 before any work)."""
    from uebench.cell import prepare
    from uebench.cli.run import cell_request
    from uebench.plugins import get_host

    plugins_dirs = ctx.find_root().obj["plugins_dirs"]
    host = get_host(plugins_dirs)
    spec, settings = cell_request({**NOT_ASKED, **params, "out": str(folder)}, host, plugins_dirs)
    return prepare(spec, settings, host, reporter)


def _release(cell, reporter):
    from uebench.gallery_board import cell_release

    return cell_release(cell, reporter)


def _options_text(cell) -> str:
    given = cell.spec.attack_options
    return "".join(f"{k}={v} " for k, v in sorted(given.items()))


def _writable_file(out, what: str) -> Path:
    """``out`` as a file path whose folder can be written (else exit 2 naming it, before any work)."""
    from uebench.atomic import check_writable_folder

    path = Path(out).expanduser()
    if path.is_dir():
        raise OptionError(f"{what} {str(path)!r} is a folder; give a file name")
    try:
        check_writable_folder(path.parent if str(path.parent) else Path("."), f"{what}'s folder")
    except OSError as exc:
        raise OptionError(str(exc)) from None
    return path


def _new_folder(path: Path, what: str) -> Path:
    """A folder for a PNG export: new or empty, in a writable place (else exit 2)."""
    from uebench.atomic import check_writable_folder

    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise OptionError(f"{what} {str(path)!r} is a file; a png export is a folder (one PNG per training image)")
    if path.is_dir() and any(path.iterdir()):
        raise OptionError(f"{what} {str(path)!r} is a folder that holds files; give a new or empty folder, so no image of "
                          "another export is read with this one")
    try:
        check_writable_folder(path, what)
    except OSError as exc:
        raise OptionError(str(exc)) from None
    return path


def _export(release, out: Path, fmt: str, reporter) -> list[Path]:
    import numpy as np

    from uebench.atomic import atomic_write

    images = release.images.cpu()
    index = release.index.numpy().astype(np.int64)
    labels = release.labels.cpu().numpy().astype(np.int64)
    if fmt == "npz":
        hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
        atomic_write(out, lambda tmp: np.savez(tmp, x_poison=hwc, y=labels, indices=index), suffix=".npz")
        side = indices_path(out)
        atomic_write(side, lambda tmp: np.save(tmp, index, allow_pickle=False), suffix=".npy")
        return [out, side]
    import shutil
    import tempfile

    from uebench.gallery import png_bytes

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        task = reporter.task("writing PNGs", total=len(images))
        step, done = max(1, len(images) // 20), 0  # without a terminal each update is a line: about 20 of them
        for row, (i, image) in enumerate(zip(index.tolist(), images, strict=True), start=1):
            (staging / f"{i}.png").write_bytes(png_bytes(image))
            if row % step == 0 or row == len(images):
                task.update(row - done)
                done = row
        task.close()
        np.save(staging / "indices.npy", index, allow_pickle=False)
        np.save(staging / "labels.npy", labels, allow_pickle=False)
        if out.exists():
            out.rmdir()  # new or empty (checked before any work)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out]


def indices_path(npz: Path) -> Path:
    """``poison.npz`` → ``poison.indices.npy`` (the indices from-file's ``-o indices=`` reads)."""
    return npz.with_name(npz.name[: -len(npz.suffix)] + ".indices.npy")


def from_file_command(release, out: Path, fmt: str) -> str:
    """``uebench run --attack from-file …`` that trains on exactly the exported images.  Its
    ``--eps`` admits the largest |released − clean| (from-file checks the images against ε); for
    an L∞ poison that is the cell's own ε."""
    import math
    import shlex

    cell = release.cell
    top = int((release.images.to("cpu").int() - release.clean.to("cpu").int()).abs().max()) if len(release.images) else 0
    eps = cell.spec.eps if top <= math.floor(255 * cell.spec.eps + 0.5 - 1e-3) else top / 255
    args = ["uebench", "run", "--attack", "from-file", "-o", f"path={out}"]
    if fmt == "npz":
        args += ["-o", f"indices={indices_path(out)}"]
    args += ["--protocol", cell.protocol.name, "--dataset", cell.dataset.name]
    if abs(eps - 8 / 255) > 1e-12:
        from uebench.options import display_value

        args += ["--eps", display_value(eps)]
    return shlex.join(args)
