"""Results rows: one per cell, appended atomically to a CSV, with the per-epoch curve beside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
from filelock import FileLock

from uebench.atomic import atomic_write

# The schema every results CSV starts with; plugins' rows may add columns after these.
# ``final_test_acc`` is the accuracy of the weights training ended with (after a defense such as
# early stopping restored the ones it chose, at ``selected_epoch``); ``oracle_best_test_acc`` is
# the per-epoch maximum on the *test* set — what a defender holding the test labels could pick,
# never a defense.  Rows of protocol versions before cpu v3 / paper v2 call it ``best_test_acc``.
# ``norm`` is the noise's budget: ``linf`` (``eps`` is --eps) or ``l0:<pixels>`` (pixel positions
# per image; the largest |δ| is then ``l0_max_delta``, and ``eps`` stays --eps, which the attack
# ignores but the key holds).  Rows written before ``norm`` existed are all linf.
# ``compile`` is the torch.compile mode the victim trained under ('' = eager; not part of the
# cell's identity).  ``config_key`` is the cell key without the seed: rows that share it are one
# configuration, the only rows a leaderboard cell averages.  ``data_digest`` (the dataset's
# content, ``uebench.datasets.digest``), ``torch_version``, ``threads`` (CPU threads; '' on an
# accelerator), ``precision`` and the device's type are identity (``uebench.numerics``).
# ``inputs``: where the files an attack read were (``from-file``'s path); its options hold the
# files' content digests instead, so the path is information, not identity.
# ``poisoned_images`` … ``imperceptibility_note``: how visible the released poison is (PSNR, SSIM,
# L∞/L2/L0 of released − clean over the poisoned images; ``uebench.imperceptibility``): results,
# not identity.  Rows written before them have them empty until ``uebench leaderboard imperceptibility``.
COLUMNS = (
    "run_id", "cell_key", "config_key", "timestamp", "uebench_version", "git_sha", "protocol", "protocol_version", "dataset",
    "attack", "attack_options", "eps", "norm", "poison_rate", "poison_classes", "drop_poisoned", "quantized", "defense",
    "defense_options", "victim",
    "victim_options", "epochs", "seed", "final_test_acc", "selected_epoch", "oracle_best_test_acc", "oracle_best_epoch",
    "final_train_acc", "train_size", "test_size", "craft_seconds", "train_seconds", "device", "precision", "noise_key",
    "noise_cached", "craft_stop_reason", "craft_iterations", "craft_final_error", "compile",
    "data_digest", "torch_version", "threads", "l0_max_delta", "inputs",
    "poisoned_images", "psnr_mean", "psnr_worst", "ssim_mean", "ssim_worst", "linf_max", "l2_mean", "l0_values_mean",
    "imperceptibility_note",
)


def git_sha(path: Path | None = None) -> str:
    """The commit of the uebench source tree, or '' when it is not a git checkout of uebench
    (an installed copy inside some other project's repository must not report that repository)."""
    here = path or Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True, timeout=5)
        if (top.returncode != 0
                or not (Path(top.stdout.strip()) / "uebench" / "results.py").resolve() == (here / "results.py").resolve()):
            return ""
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def atomic_write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(…)``, ``@SUM(…)``) gets a
    leading ``'`` (OWASP's CSV-injection advice); numbers, ``-0.5`` included, stay as they are.
    uebench's own names cannot start so (kebab-case), but class names, option values and plugin
    columns come from plugins and users."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def append_row(path: Path, row: dict, curve: tuple[Path, list[dict]] | None = None) -> None:
    """Append ``row`` to the CSV at ``path``: rewrite to a temp file and rename, under a lock,
    so concurrent cells never interleave and a crash never leaves half a row.  ``curve`` (its
    path and per-epoch rows) is written first, under the same lock: a row never names a missing
    curve.  A writer killed mid-way leaves temp files, or a whole curve without its row; the
    next append (holding the lock, so no live writer is between the two) removes both."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        # read back as text: type guessing would turn keys like "0123e4" into numbers
        old = pd.read_csv(path, dtype=str, keep_default_na=False) if path.exists() else None
        stale = list(path.parent.glob(f".{path.name}.*.tmp"))
        if curve is not None:
            curves = Path(curve[0]).parent
            named = set(old["run_id"]) if old is not None and "run_id" in old else set()
            stale += curves.glob(".*.csv.*.tmp")
            stale += [c for c in curves.glob("*.csv") if c.stem not in named]
        for orphan in stale:
            orphan.unlink(missing_ok=True)
        if curve is not None:
            write_curve(*curve)
        new = pd.DataFrame([{column: spreadsheet_safe(value) for column, value in row.items()}])
        frame = pd.concat([old, new.astype(str)], ignore_index=True) if old is not None else new
        atomic_write_csv(frame[ordered_columns(frame.columns)], path)


def write_curve(path: Path, history: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(pd.DataFrame(history), path)


def ordered_columns(columns) -> list[str]:
    """``columns`` in the results file's order: today's :data:`COLUMNS` first, in their order, then
    any others (columns of older rows no longer written) as they came."""
    return [c for c in COLUMNS if c in columns] + [c for c in columns if c not in COLUMNS]
