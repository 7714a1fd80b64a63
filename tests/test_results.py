"""The results CSV: the schema's columns in order, one row per cell, atomic appends."""

from __future__ import annotations

import csv
import random
import threading
from pathlib import Path

import pandas as pd
import pytest

from uebench.results import COLUMNS, append_row, git_sha, write_curve


def _row(i: int, **extra) -> dict:
    row = {c: f"v{i}-{c}" for c in COLUMNS}
    row.update(run_id=f"run-{i}", epochs=2, seed=i, final_test_acc=0.5, **extra)
    return row


def _header(path):
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_columns_are_unique_and_cover_the_essentials():
    assert len(COLUMNS) == len(set(COLUMNS))
    for c in ("run_id", "protocol", "protocol_version", "attack", "attack_options", "eps", "defense",
              "victim", "seed", "final_test_acc", "oracle_best_test_acc", "selected_epoch", "noise_key", "noise_cached"):
        assert c in COLUMNS
    assert COLUMNS[0] == "run_id"


def test_append_row_writes_columns_in_schema_order(tmp_path):
    path = tmp_path / "out" / "results.csv"
    row = _row(0)
    shuffled = dict(random.Random(0).sample(list(row.items()), len(row)))
    append_row(path, shuffled)
    assert tuple(_header(path)) == COLUMNS
    frame = pd.read_csv(path)
    assert len(frame) == 1 and frame.loc[0, "run_id"] == "run-0"


def test_two_appends_two_rows_and_no_temp_files(tmp_path):
    path = tmp_path / "results.csv"
    append_row(path, _row(0))
    append_row(path, _row(1))
    frame = pd.read_csv(path)
    assert list(frame["run_id"]) == ["run-0", "run-1"]
    assert tuple(frame.columns) == COLUMNS
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert {p.name for p in tmp_path.iterdir()} <= {"results.csv", "results.csv.lock"}


def test_extra_plugin_columns_come_after_the_schema(tmp_path):
    path = tmp_path / "results.csv"
    append_row(path, _row(0))
    append_row(path, _row(1, zz_extra=3, aa_extra="x"))
    header = _header(path)
    assert tuple(header[: len(COLUMNS)]) == COLUMNS
    assert set(header[len(COLUMNS):]) == {"zz_extra", "aa_extra"}
    frame = pd.read_csv(path)
    assert frame["zz_extra"].isna().tolist() == [True, False]


@pytest.mark.faults
def test_concurrent_appends_lose_nothing(tmp_path):
    path = tmp_path / "results.csv"
    errors = []

    def worker(i):
        try:
            append_row(path, _row(i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    frame = pd.read_csv(path)
    assert sorted(frame["run_id"]) == sorted(f"run-{i}" for i in range(8))
    assert not list(tmp_path.glob("*.tmp"))


def _text_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_string_like_columns_survive_later_appends(tmp_path):
    """Keys that look like numbers (leading zero, exponent) stay text when the file is re-read
    on the next append; an int column beside an empty cell stays "2", not "2.0"."""
    path = tmp_path / "results.csv"
    append_row(path, {"run_id": "a", "noise_key": "0123456789", "git_sha": "1234e5678901", "craft_iterations": 2})
    append_row(path, {"run_id": "b", "noise_key": "", "git_sha": "00ab", "craft_iterations": ""})
    append_row(path, {"run_id": "c", "noise_key": "1e5", "git_sha": "", "craft_iterations": 3})
    rows = _text_rows(path)
    assert [r["run_id"] for r in rows] == ["a", "b", "c"]
    assert [r["noise_key"] for r in rows] == ["0123456789", "", "1e5"]
    assert [r["git_sha"] for r in rows] == ["1234e5678901", "00ab", ""]
    assert [r["craft_iterations"] for r in rows] == ["2", "", "3"]
    text = path.read_text()
    assert "0123456789" in text and "1234e5678901" in text
    assert "2.0" not in text and "nan" not in text.lower()


def test_write_curve(tmp_path):
    history = [{"epoch": 1, "train_loss": 2.0, "test_acc": 0.1}, {"epoch": 2, "train_loss": 1.5, "test_acc": 0.2}]
    write_curve(tmp_path / "curves" / "r.csv", history)
    frame = pd.read_csv(tmp_path / "curves" / "r.csv")
    assert frame.to_dict("records") == history


def test_git_sha(tmp_path):
    assert git_sha(tmp_path) == ""  # not a git checkout
    sha = git_sha()
    assert sha == "" or (len(sha) == 12 and all(c in "0123456789abcdef" for c in sha))


@pytest.mark.parametrize("bad_dir", ["missing"])
def test_git_sha_missing_folder_is_empty(tmp_path, bad_dir):
    assert git_sha(tmp_path / bad_dir) == ""


def test_atomic_write_gives_files_the_mode_a_plain_open_would(tmp_path):
    """mkstemp creates 0600 files; leaderboards and results must stay readable by others."""
    import os
    import stat

    from uebench.atomic import atomic_write

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    atomic_write(atomic, lambda tmp: open(tmp, "w").write("x"))
    assert stat.S_IMODE(os.stat(atomic).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_git_sha_only_for_a_checkout_of_uebench(tmp_path):
    import shutil
    import subprocess

    from uebench import results

    assert len(results.git_sha()) in (0, 12)  # this tree: a checkout (12 hex) or an sdist ('')
    # a copy of the package inside some other git repository reports nothing
    other = tmp_path / "other"
    shutil.copytree(Path(results.__file__).parent, other / "vendored" / "uebench")
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.email=a@b", "-c", "user.name=n", "commit", "-q", "--allow-empty",
                    "-m", "x"], check=True)
    assert results.git_sha(other / "vendored" / "uebench") == ""


@pytest.mark.faults
def test_an_orphaned_temp_file_from_a_killed_writer_is_removed_by_the_next_append(tmp_path):
    path = tmp_path / "results.csv"
    append_row(path, {"run_id": "a"})
    orphan = tmp_path / ".results.csv.abc123.tmp"
    orphan.write_text("run_id\\nhalf")
    append_row(path, {"run_id": "b"})
    assert not orphan.exists() and pd.read_csv(path)["run_id"].tolist() == ["a", "b"]


@pytest.mark.faults
def test_a_curve_whose_row_a_kill_prevented_is_removed_by_the_next_append(tmp_path):
    """The curve is written just before its row (under one lock); a kill between the two leaves a
    whole curve that no row names.  The next append removes it and keeps every named curve."""
    path, curves = tmp_path / "results.csv", tmp_path / "curves"
    append_row(path, {"run_id": "a"}, curve=(curves / "a.csv", [{"epoch": 1}]))
    (curves / "killed.csv").write_text("epoch\n1\n")  # its row never came
    (curves / ".b.csv.x1y2.tmp").write_text("epo")  # a half-written curve
    append_row(path, {"run_id": "b"}, curve=(curves / "b.csv", [{"epoch": 1}]))
    assert sorted(p.name for p in curves.iterdir()) == ["a.csv", "b.csv"]
    assert pd.read_csv(path)["run_id"].tolist() == ["a", "b"]
