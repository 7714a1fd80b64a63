"""Determinism and security (``pytest -m faults``).

* The same seed gives the same noise bytes and the same accuracy in two fresh processes (CPU).
* Nothing unpickles a file a user may have downloaded: every ``torch.load`` in the code passes
  ``weights_only=True``, every ``np.load`` ``allow_pickle=False``, nothing imports ``pickle``;
  a pickle bomb in a dataset file or a noise file is refused without running.
* Plugin code runs only from installed entry points or an explicit ``--plugins-dir``: a
  ``*.py`` lying in the working folder, the data folder or the results folder is never imported.
* Results cells that a spreadsheet would run as a formula are written with a leading ``'``.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, json_out, require_data
from uebench.datasets.base import DataCorruptError, read_npz
from uebench.noise import NoiseFileError, load_noise
from uebench.results import append_row, spreadsheet_safe

pytestmark = pytest.mark.faults


@pytest.mark.slow
def test_same_seed_same_noise_bytes_and_accuracy_in_two_fresh_processes(tmp_path):
    require_data()
    results = []
    for run in range(2):
        cache, out = tmp_path / f"cache{run}", tmp_path / f"out{run}"
        env = {**os.environ, "UEBENCH_CACHE": str(cache)}
        command = [sys.executable, "-m", "uebench.cli", "run", "--protocol", "smoke", "--attack", "errmin-pgd",
                   "--defense", "cutout", "--seed", "3", "--out", str(out), "--json"]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        row = json.loads(done.stdout.decode().splitlines()[-1])
        noise = load_noise(cache / f"{row['noise_key']}.pt")
        results.append((row, noise.delta.numpy().tobytes()))
    (first, first_bytes), (second, second_bytes) = results
    assert first["noise_key"] == second["noise_key"] and not first["noise_cached"] and not second["noise_cached"]
    assert first_bytes == second_bytes
    assert first["final_test_acc"] == second["final_test_acc"]
    assert pd.read_csv(tmp_path / "out0" / "curves" / f"{first['run_id']}.csv")["train_loss"].tolist() == \
        pd.read_csv(tmp_path / "out1" / "curves" / f"{second['run_id']}.csv")["train_loss"].tolist()


def _calls(name: str):
    """(file, call) for every call of ``<something>.<name>(...)`` in uebench/ and plugins/."""
    for folder in (REPO / "uebench", REPO / "plugins"):
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
                    yield path.relative_to(REPO), node


def _keyword(call: ast.Call, name: str):
    return next((k.value.value for k in call.keywords if k.arg == name and isinstance(k.value, ast.Constant)), None)


def test_every_torch_load_is_weights_only():
    calls = [(path, c) for path, c in _calls("load") if isinstance(c.func.value, ast.Name) and c.func.value.id == "torch"]
    assert calls, "the scan found no torch.load at all: is it looking at the right tree?"
    assert [str(p) for p, c in calls if _keyword(c, "weights_only") is not True] == []


def test_every_np_load_refuses_pickles():
    calls = [(path, c) for path, c in _calls("load") if isinstance(c.func.value, ast.Name) and c.func.value.id == "np"]
    assert calls
    assert [str(p) for p, c in calls if _keyword(c, "allow_pickle") is True] == []
    assert [str(p) for p, c in calls if _keyword(c, "allow_pickle") is not False] == [], "say allow_pickle=False where it matters"


def test_no_module_imports_pickle_or_evaluates_strings():
    for folder in (REPO / "uebench", REPO / "plugins"):
        for path in folder.rglob("*.py"):
            tree = ast.parse(path.read_text())
            imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert not imported & {"pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}, path
            called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            assert not called & {"eval", "exec"}, path


class _Bomb:
    """Unpickling this writes a file: the proof that a loader ran a pickle."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_a_pickle_bomb_in_a_dataset_or_noise_file_is_refused_without_running(tmp_path):
    sentinel = tmp_path / "pwned"
    archive = tmp_path / "test.npz"
    np.savez(archive, x=np.array([_Bomb(sentinel)], dtype=object), y=np.zeros(1, dtype=np.int64))
    with pytest.raises(DataCorruptError, match="is damaged"):
        read_npz(archive)
    noise_file = tmp_path / "noise.pt"
    torch.save({"delta": torch.zeros(1, 3, 2, 2), "meta": _Bomb(sentinel)}, noise_file)
    with pytest.raises(NoiseFileError):
        load_noise(noise_file)
    assert not sentinel.exists()


def test_python_files_beside_the_data_results_or_working_folder_are_never_imported(invoke, tmp_path, monkeypatch):
    sentinel = tmp_path / "imported"
    code = f"open({str(sentinel)!r}, 'w').write('ran')\nfrom uebench.hookspecs import hookimpl\n"
    folders = [tmp_path / "cwd", tmp_path / "data", tmp_path / "out", tmp_path / "data" / "cifar10"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("uebench_plugin.py", "plugin.py", "conftest.py", "__init__.py"):
            (folder / name).write_text(code)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("UEBENCH_DATA", str(tmp_path / "data"))
    listed = json_out(invoke("plugins", "--json"))
    assert {p["source"] for p in listed} <= {"builtin", "entry-point"}
    invoke("run", "--protocol", "smoke", "--attack", "none", "--out", tmp_path / "out")  # fails (no data there): fine
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("value", "written"),
    [("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
     ("-2+3", "'-2+3"), ("@SUM(A1:A2)", "'@SUM(A1:A2)"), ("\tx", "'\tx"),
     ("-0.5", "-0.5"), ("+1e-3", "+1e-3"), ("errmin-pgd", "errmin-pgd"), (-0.5, -0.5), (3, 3)],
)
def test_formula_like_text_is_neutralised_and_numbers_are_not(value, written):
    assert spreadsheet_safe(value) == written


def test_a_formula_in_a_row_reaches_the_csv_quoted(tmp_path):
    path = tmp_path / "results.csv"
    append_row(path, {"run_id": "a", "poison_classes": "=1+1", "final_test_acc": -0.25})
    frame = pd.read_csv(path, dtype=str)
    assert frame.loc[0, "poison_classes"] == "'=1+1" and frame.loc[0, "final_test_acc"] == "-0.25"
