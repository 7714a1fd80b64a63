"""Inputs that used to be taken silently, or refused only after the work: matrix defense options
for a defense the table does not use, a ``--data-dir`` that does not exist, a results folder on a
file system that refuses writes (``/proc``), a leaderboard root without ``<protocol>/results.csv``,
option labels in ``leaderboard show`` that rich took for markup; and ``uebench protocols
indices``, which gives from-file users the subset indices a cell trains on."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_clean_error, require_data
from uebench.results import COLUMNS, append_row
from uebench.sweep.matrix import MatrixError, read_matrix

# --- matrix: defenses options for a name not in use -------------------------------------------

TYPO_MATRIX = """protocol = "smoke"
seeds = [0]
defenses = [
    "none",
    {use = ["jpeg", "cutmix"], options = {jpg = {quality = 20}}},
]

[[attacks]]
name = "none"
"""


def test_defense_options_for_a_name_not_in_use_name_it_the_use_list_and_the_line(tmp_path):
    path = tmp_path / "matrix.toml"
    path.write_text(TYPO_MATRIX)
    with pytest.raises(MatrixError) as caught:
        read_matrix(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:5: ")
    assert "'jpg'" in message and "['jpeg', 'cutmix']" in message and "Did you mean 'jpeg'" in message


def test_defense_options_in_a_cells_table_are_checked_too(tmp_path):
    path = tmp_path / "matrix.toml"
    path.write_text('protocol = "smoke"\n\n[[cells]]\nattack = "none"\n'
                    'defenses = [{use = ["early-stop"], options = {"earlystop" = {clean_val = true}}}]\n')
    with pytest.raises(MatrixError, match=r"matrix.toml:5: .*'earlystop', which is not in use = \['early-stop'\]"):
        read_matrix(path)


def test_defense_options_for_names_in_use_still_read(tmp_path):
    path = tmp_path / "matrix.toml"
    path.write_text(TYPO_MATRIX.replace("jpg =", "jpeg ="))
    _, cells = read_matrix(path)
    assert [(c.defenses, c.defense_options) for c in cells] == [(("none",), {}), (("jpeg", "cutmix"), {"jpeg": {"quality": 20}})]


def test_sweep_dry_run_with_options_for_an_unused_defense_exits_2(invoke, tmp_path):
    path = tmp_path / "matrix.toml"
    path.write_text(TYPO_MATRIX)
    out = assert_clean_error(invoke("sweep", path, "--dry-run", "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache"), 2)
    assert f"{path}:5:" in out and "'jpg'" in out and "jpeg, cutmix" in out
    assert not (tmp_path / "out").exists()


# --- --data-dir that does not exist -----------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if any cell loads data: bad input must be refused before that."""
    import uebench.runner

    def refuse(*args, **kwargs):
        raise AssertionError("work started: the cell's data was loaded")

    monkeypatch.setattr(uebench.runner, "load_cell", refuse)


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_data_dir_that_does_not_exist_is_bad_input(invoke, tmp_path, no_work, command):
    missing = tmp_path / "does" / "not" / "exist"
    matrix = tmp_path / "matrix.toml"
    matrix.write_text('protocol = "smoke"\nseeds = [0]\n[[attacks]]\nname = "none"\n')
    argv = (("run", "--protocol", "smoke", "--attack", "none") if command == "run" else ("sweep", matrix))
    result = invoke(*argv, "--data-dir", missing, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    out = assert_clean_error(result, 2)
    assert "--data-dir" in out and str(missing) in out and "does not exist" in out
    assert not (tmp_path / "out").exists()


# --- a results folder where writes fail -------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_results_folder_under_proc_is_bad_input_before_any_work(invoke, tmp_path, no_work):
    """``/proc`` passes ``os.access`` (always, as root, which CI runs as) and refuses mkdir."""
    result = invoke("run", "--protocol", "smoke", "--attack", "none", "--out", "/proc/uebench-test",
                    "--cache-dir", tmp_path / "cache", "--data-dir", require_data())
    out = assert_clean_error(result, 2)
    assert "results folder --out '/proc/uebench-test' cannot be created or written" in out
    assert "'/proc'" in out
    assert not (tmp_path / "cache").exists()


def test_a_read_only_file_system_is_refused_although_access_says_yes(tmp_path, monkeypatch):
    """A read-only mount (or root's view of one) passes ``os.access``; the write itself fails."""
    from uebench import atomic

    monkeypatch.setattr(atomic.os, "access", lambda path, mode: True)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", read_only)
    with pytest.raises(OSError, match=r"results folder --out '.*out' cannot be created or written: .*Read-only file system"):
        atomic.check_writable_folder(tmp_path / "out", "results folder --out")


@pytest.mark.parametrize("exists", [True, False], ids=["existing", "to-create"])
def test_a_writable_folder_passes_and_is_left_as_it_was(tmp_path, exists):
    from uebench.atomic import check_writable_folder

    folder = tmp_path / "out"
    if exists:
        folder.mkdir()
    check_writable_folder(folder, "results folder --out")
    assert sorted(tmp_path.rglob("*")) == ([folder] if exists else [])


def test_the_write_check_really_writes(tmp_path, monkeypatch):
    """A folder that can be made but not written in (a full disk, a quota) is refused too."""
    from uebench import atomic

    real_open = open

    def full(path, mode="r", *args, **kwargs):
        if "w" in mode and Path(path).name == "probe":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(OSError, match="No space left on device"):
        atomic.check_writable_folder(tmp_path / "out", "results folder --out")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # the probe folder is gone again


# --- leaderboard build on a root without <protocol>/results.csv -------------------------------


def _row(i: int, **changes) -> dict:
    """A full results row (every schema column) of a cpu-protocol cell; ``changes`` override."""
    row = {c: "" for c in COLUMNS}
    row.update({
        "run_id": f"run-{i}", "cell_key": f"{i:020x}", "timestamp": "2026-01-01T00:00:00+00:00", "uebench_version": "0.1.0",
        "git_sha": "0123456789ab", "protocol": "cpu", "protocol_version": 3, "dataset": "cifar10", "attack": "none",
        "attack_options": "{}", "eps": 8 / 255, "norm": "linf", "poison_rate": 1.0, "poison_classes": "", "drop_poisoned": False,
        "quantized": True, "defense": "none", "defense_options": "{}", "victim": "cnn-small", "victim_options": "{}", "epochs": 2,
        "seed": 0, "final_test_acc": 0.5, "selected_epoch": 2, "oracle_best_test_acc": 0.5, "oracle_best_epoch": 2,
        "final_train_acc": 0.99, "train_size": 5000, "test_size": 10000, "craft_seconds": 1.0, "train_seconds": 2.0,
        "device": "cpu", "precision": "fp32", "noise_cached": False,
    })
    row.update(changes)
    return row


def test_leaderboard_build_on_a_run_out_folder_says_where_its_rows_go(invoke, tmp_path):
    root = tmp_path / "uebench-out"
    append_row(root / "results.csv", _row(0))
    before = sorted(root.rglob("*"))
    result = invoke("leaderboard", "build", "--root", root)
    out = " ".join(assert_clean_error(result, 2).split())  # rich/click may wrap long lines
    assert "ROOT/<protocol>/results.csv" in out
    assert "uebench run --out" in out and "ROOT/<protocol-name>/results.csv" in out
    assert str(root / "cpu" / "results.csv") in out  # the row's protocol names the folder
    assert sorted(root.rglob("*")) == before  # nothing built


def test_leaderboard_build_on_an_empty_root_explains_the_layout(invoke, tmp_path):
    out = assert_clean_error(invoke("leaderboard", "build", "--root", tmp_path), 2)
    assert "ROOT/<protocol>/results.csv" in " ".join(out.split())
    assert "uebench run --out" not in out


def test_leaderboard_build_after_moving_the_rows_into_a_protocol_folder_builds(invoke, tmp_path):
    root = tmp_path / "uebench-out"
    append_row(root / "results.csv", _row(0))
    (root / "cpu").mkdir()
    shutil.move(root / "results.csv", root / "cpu" / "results.csv")
    result = invoke("leaderboard", "build", "--root", root)
    assert result.exit_code == 0, result.output
    assert (root / "cpu.md").is_file()


# --- leaderboard show: bracketed labels are text, not markup ----------------------------------


def test_leaderboard_show_keeps_bracketed_option_labels(invoke, tmp_path):
    root = tmp_path / "leaderboards"
    csv = root / "cpu" / "results.csv"
    variants = [({"form": "sample", "c": 0.0, "max_iters": 1}, {"jpeg": {"quality": 20}}),
                ({"form": "sample", "c": 0.5, "max_iters": 20}, {"jpeg": {"quality": 50}})]
    for i, (attack_options, defense_options) in enumerate(variants):
        append_row(csv, _row(i, attack="errmin-adam", attack_options=json.dumps(attack_options), defense="jpeg",
                             defense_options=json.dumps(defense_options), final_test_acc=0.3 + 0.1 * i))
    result = invoke("leaderboard", "show", "cifar10", "--root", root, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for text in ("errmin-adam form=sample [c=0.0, max_iters=1]", "errmin-adam form=sample [c=0.5, max_iters=20]",
                 "jpeg [quality=20]", "jpeg [quality=50]", "protocol cpu · cifar10 · victim cnn-small"):
        assert text in result.output, (text, result.output)


# --- uebench protocols indices ----------------------------------------------------------------


def _loaded_smoke_cell(tmp_path):
    """The smoke protocol's cell data as ``uebench run`` loads it (prepare + load_cell)."""
    from uebench.cell import CellSpec, RunSettings, prepare
    from uebench.runner import load_cell

    settings = RunSettings(device="cpu", data_dir=str(require_data()), out=tmp_path / "out", cache_dir=tmp_path / "cache")
    return load_cell(prepare(CellSpec(attack="none", protocol="smoke"), settings))


def test_protocols_indices_are_the_subsets_load_cell_trains_and_tests_on(invoke, tmp_path):
    from uebench.datasets.cifar10 import Cifar10

    loaded = _loaded_smoke_cell(tmp_path)
    data = Cifar10().load(require_data())
    for split in ("train", "test"):
        out = tmp_path / f"smoke-{split}.npy"
        result = invoke("protocols", "indices", "smoke", "--split", split, "--out", out)
        assert result.exit_code == 0, result.output
        indices = np.load(out, allow_pickle=False)
        assert indices.dtype == np.int64 and indices.ndim == 1
        x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
        x_cell = loaded.x_train if split == "train" else loaded.x_test
        y_cell = loaded.y_train if split == "train" else loaded.y_test
        assert torch.equal(x[torch.from_numpy(indices)], x_cell.cpu()) and torch.equal(y[torch.from_numpy(indices)], y_cell.cpu())
        lines = result.output.splitlines()
        assert f"{len(indices)} of {len(y)} images" in lines[0] and "per class" in lines[0]
        assert lines[1].startswith(f"indices: {indices[0]}, {indices[1]}") and lines[1].endswith(f"{indices[-1]}")
    assert np.array_equal(np.load(tmp_path / "smoke-train.npy"), loaded.ctx.train_index.cpu().numpy())


def test_protocols_indices_file_is_what_from_file_reads(invoke, tmp_path):
    """Noise for exactly the smoke subset, in its order, plus ``-o indices=`` the written file:
    from-file maps every training image of the cell to its row."""
    from uebench.attacks.from_file import FromFile
    from uebench.options import build_options

    index_file = tmp_path / "smoke.npy"
    assert invoke("protocols", "indices", "smoke", "--out", index_file).exit_code == 0
    ctx = _loaded_smoke_cell(tmp_path).ctx
    rows = len(np.load(index_file))
    delta = ((torch.arange(rows) % 5 - 2).float() / 255).view(-1, 1, 1, 1).expand(rows, *ctx.x.shape[1:]).contiguous()
    noise_file = tmp_path / "noise.npy"
    np.save(noise_file, delta.numpy())
    attack = FromFile(build_options(FromFile.Options, {"path": str(noise_file), "indices": str(index_file)},
                                    "attack 'from-file'"))
    noise = attack.craft(ctx)
    assert torch.allclose(noise.delta.cpu(), delta)


def test_protocols_indices_of_a_whole_split_protocol_is_every_index(invoke, tmp_path):
    out = tmp_path / "all.npy"
    result = invoke("protocols", "indices", "paper", "--split", "test", "--out", out)
    assert result.exit_code == 0, result.output
    assert "whole split" in result.output
    assert np.array_equal(np.load(out), np.arange(10000))


@pytest.mark.parametrize(("argv", "fragments"), [
    (("smok",), ("unknown protocol 'smok'", "Did you mean 'smoke'")),
    (("smoke", "--dataset", "cifar11"), ("unknown dataset 'cifar11'", "'cifar10'")),
    (("smoke", "--out", "indices.txt"), ("'indices.txt' must end in .npy",)),
    (("smoke", "--data-dir", "/does/not/exist"), ("'/does/not/exist' does not exist",)),
])
def test_protocols_indices_bad_input_exits_2(invoke, tmp_path, monkeypatch, argv, fragments):
    from uebench.datasets.cifar10 import Cifar10

    monkeypatch.setattr(Cifar10, "load", lambda *a, **k: pytest.fail("bad input must fail before the data is read"))
    monkeypatch.chdir(tmp_path)
    out = assert_clean_error(invoke("protocols", "indices", *argv), 2)
    for fragment in fragments:
        assert fragment in out
    assert list(tmp_path.iterdir()) == []



def test_prepare_refuses_options_for_a_defense_the_cell_does_not_use():
    """The same typo through the Python API (or a plugin's sweep) as in a matrix file."""
    from uebench.cell import CellSpec, RunSettings, prepare
    from uebench.options import OptionError

    with pytest.raises(OptionError, match="'jpg', which the cell does not use"):
        prepare(CellSpec(protocol="smoke", defenses=("jpeg",), defense_options={"jpg": {"quality": 20}}),
                RunSettings(device="cpu"))
