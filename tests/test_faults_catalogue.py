"""The bad-input and broken-component catalogue (``pytest -m faults``).

Every case runs the real CLI and asserts the same four things: a non-zero exit code (2 for bad
input, 1 for a runtime failure), a message naming the fault, no Python traceback, and nothing
written — no results row, no curve, no cached noise.  Bad input must also be caught before any
work starts, so those cases point ``--data-dir`` at an empty folder: reaching the data would be
an error of its own.  The fault plugins (an attack that raises, noise of the wrong shape, NaN
noise, noise outside ε, a NaN loss, a plugin that fails at import) are real plugin files loaded
with ``--plugins-dir``, the way a third party's would be.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fault_plugins import write_plugins

from conftest import assert_clean_error, require_data
from uebench.datasets.base import write_layout

pytestmark = pytest.mark.faults


@dataclass
class Case:
    """One fault: the CLI arguments (built from the test's folders), the exit code and the
    message fragments it must produce, and the data it runs against."""

    id: str
    argv: Callable[[SimpleNamespace], tuple]
    code: int
    fragments: tuple[str, ...]
    data: str = "empty"  # "empty": bad input must fail before reading data; "real"; or a corruption of a fake CIFAR-10
    plugins: bool = False


def run(*args, attack="none"):
    """A smoke cell writing to the case's own folders (filled in by the test)."""
    return lambda p: ("run", "--protocol", "smoke", "--json", "--attack", attack, "--out", p.out, "--cache-dir", p.cache,
                      "--data-dir", p.data, *args)


def with_plugins(*args, attack="none"):
    return lambda p: ("--plugins-dir", p.plugins, *run(*args, attack=attack)(p))


def sweep(text, *args):
    def argv(p):
        path = p.root / "matrix.toml"
        path.write_text(text)
        return ("sweep", path, "--out", p.out, "--cache-dir", p.cache, "--data-dir", p.data, *args)
    return argv


ONE_CELL = 'protocol = "smoke"\nseeds = [0]\n[[attacks]]\nname = "none"\n'

CATALOGUE = [
    # names, with did-you-mean
    Case("unknown-attack", run(attack="errmin-pdg"), 2, ("unknown attack 'errmin-pdg'", "Did you mean 'errmin-pgd'")),
    Case("unknown-defense", run("--defense", "cutmx"), 2, ("unknown defense 'cutmx'", "'cutmix'")),
    Case("unknown-victim", run("--victim", "resnet19"), 2, ("unknown victim 'resnet19'", "resnet18")),
    Case("unknown-timm-model", run("--victim", "timm:resnet188"), 2, ("timm has no model 'resnet188'", "resnet18")),
    Case("unknown-source-model", run("-o", "source=timm:resnet_nope", attack="errmin-pgd"), 2,
         ("timm has no model 'resnet_nope'",)),
    Case("unknown-dataset", run("--dataset", "cifar11"), 2, ("unknown dataset 'cifar11'", "'cifar10'")),
    Case("unknown-protocol", lambda p: ("run", "--protocol", "smok", "--out", p.out, "--data-dir", p.data), 2,
         ("unknown protocol 'smok'", "'smoke'")),
    Case("unknown-class-name", run("--poison-classes", "birb", attack="random"), 2, ("unknown class 'birb'", "'bird'")),
    # options
    Case("malformed-option", run("-o", "form", attack="errmin-pgd"), 2, ("malformed option 'form'", "key=value")),
    Case("unknown-option-key", run("-o", "frm=class", attack="errmin-pgd"), 2, ("'frm'", "form")),
    Case("option-wrong-type", run("-o", "steps=two", attack="errmin-pgd"), 2, ("expects int", "'two'")),
    Case("option-out-of-range", run("-o", "class_subset=2", attack="errmin-pgd"), 2, ("class_subset must be in (0, 1]",)),
    Case("option-bad-choice", run("-o", "form=pixel", attack="errmin-pgd"), 2, ("must be one of sample, class",)),
    Case("option-below-minimum", run("-o", "steps=0", attack="errmin-pgd"), 2, ("steps must be >= 1",)),
    Case("eps-zero", run("--eps", "0"), 2, ("eps 0 is outside (0, 1]",)),
    Case("eps-negative", run("--eps", "-8/255"), 2, ("eps -0.0313725 is outside (0, 1]",)),
    Case("eps-above-one", run("--eps", "2"), 2, ("eps 2 is outside (0, 1]",)),
    Case("eps-not-a-number", run("--eps", "eight"), 2, ("'eight' is not a number",)),
    Case("poison-rate-above-one", run("--poison-rate", "1.5"), 2, ("poison rate 1.5 is outside [0, 1]",)),
    Case("poison-rate-negative", run("--poison-rate", "-0.1"), 2, ("poison rate -0.1 is outside [0, 1]",)),
    Case("bad-composition", run("--defense", "mixup", "--defense", "cutmix"), 2, ("mixup", "cutmix")),
    # devices and folders
    Case("unavailable-device", run("--device", "cuda:99"), 2, ("device 'cuda:99'",)),
    Case("unknown-device", run("--device", "toaster"), 2, ("device 'toaster'",)),
    Case("results-folder-under-a-file", lambda p: (*run()(p), "--out", p.root / "a-file" / "out"), 2,
         ("results folder --out", "is a file")),
    Case("results-folder-on-proc", lambda p: (*run()(p), "--out", "/proc/uebench-test"), 2,
         ("results folder --out '/proc/uebench-test' cannot be created or written",)),
    Case("data-dir-missing", lambda p: (*run()(p), "--data-dir", p.root / "no-such-data"), 2,
         ("--data-dir", "no-such-data", "does not exist")),
    Case("sweep-data-dir-missing", lambda p: (*sweep(ONE_CELL)(p), "--data-dir", p.root / "no-such-data"), 2,
         ("--data-dir", "no-such-data", "does not exist")),
    # matrix files and sweeps
    Case("empty-matrix", sweep(""), 2, ("matrix.toml", "attacks")),
    Case("matrix-key-typo", sweep(ONE_CELL.replace("seeds", "seed")), 2, ("'seed'", "seeds")),
    Case("matrix-unknown-defense", sweep(ONE_CELL.replace("[[attacks]]", 'defenses = ["cutmx"]\n[[attacks]]')), 2, ("cutmx",)),
    Case("matrix-options-for-a-defense-not-in-use",
         sweep(ONE_CELL.replace("[[attacks]]",
                                'defenses = [{use = ["jpeg", "cutmix"], options = {jpg = {quality = 20}}}]\n[[attacks]]')),
         2, ("matrix.toml:3:", "'jpg'", "['jpeg', 'cutmix']")),
    Case("jobs-zero", sweep(ONE_CELL, "--jobs", "0"), 2, ("--jobs",)),
    Case("unreachable-ray", sweep(ONE_CELL, "--executor", "ray", "--address", "127.0.0.1:1"), 2,
         ("cannot reach the Ray cluster at '127.0.0.1:1'",)),
    # data
    Case("missing-data-offline", run(), 1, ("dataset 'cifar10' was not found", "--data-dir")),
    Case("truncated-npz", run(), 1, ("test.npz", "is damaged"), data="truncated"),
    Case("images-wrong-dtype", run(), 1, ("is damaged", "must be uint8", "float32"), data="float-images"),
    Case("labels-out-of-range", run(), 1, ("train labels span [1, 10]", "outside [0, 9]"), data="label-10"),
    Case("x-y-length-mismatch", run(), 1, ("is damaged", "one per image"), data="short-labels"),
    Case("wrong-image-shape", run(), 1, ("images of shape (28, 28, 3)", "expected one or more images of (32, 32, 3)"),
         data="28px"),
    # plugins
    Case("plugin-fails-at-import", with_plugins(attack="from-the-broken-plugin"), 2,
         ("broken.py", "zzz_missing_dependency", "unknown attack 'from-the-broken-plugin'"), plugins=True),
    Case("plugin-raises-while-crafting", with_plugins(attack="raises-attack"), 1,
         ("attack 'raises-attack' (crafting) raised RuntimeError", "on fire", "UEBENCH_DEBUG=1"), data="real", plugins=True),
    Case("plugin-noise-wrong-shape", with_plugins(attack="wrong-shape"), 1,
         ("attack 'wrong-shape' returned sample-wise noise of shape (499, 3, 32, 32)", "(500, 3, 32, 32)"),
         data="real", plugins=True),
    Case("plugin-noise-nan", with_plugins(attack="nan-noise"), 1, ("attack 'nan-noise'", "not finite"),
         data="real", plugins=True),
    Case("plugin-noise-inf", with_plugins(attack="inf-noise"), 1, ("attack 'inf-noise'", "not finite"),
         data="real", plugins=True),
    Case("plugin-noise-outside-eps", with_plugins(attack="outside-eps"), 1, ("attack 'outside-eps'", "exceed eps=0.03137"),
         data="real", plugins=True),
    Case("plugin-returns-not-noise", with_plugins(attack="not-noise"), 1, ("attack 'not-noise' returned a Tensor",),
         data="real", plugins=True),
    Case("defense-nan-loss", with_plugins("--defense", "nan-loss"), 1, ("training loss became nan in epoch 1", "'nan-loss'"),
         data="real", plugins=True),
    Case("defense-raises-while-training", with_plugins("--defense", "raises-defense"), 1,
         ("under defense 'raises-defense' raised ValueError", "offends me"), data="real", plugins=True),
]


def fake_cifar10(root: Path, fault: str) -> None:
    """A CIFAR-10 cache folder under ``root`` with one ``fault``."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
    y = np.arange(100) % 10
    folder = root / "cifar10"
    if fault == "float-images":
        x = x.astype(np.float32)
    elif fault == "label-10":
        y = y + 1
    elif fault == "short-labels":
        y = y[:-1]
    elif fault == "28px":
        x = x[:, :28, :28]
    write_layout(folder, x, y, x, y)
    if fault == "truncated":
        test = folder / "test.npz"
        test.write_bytes(test.read_bytes()[: test.stat().st_size // 2])


@pytest.fixture
def paths(tmp_path):
    p = SimpleNamespace(root=tmp_path, out=tmp_path / "out", cache=tmp_path / "cache", data=tmp_path / "data",
                        plugins=tmp_path / "plugins")
    p.data.mkdir()
    (tmp_path / "a-file").write_text("not a folder\n")
    return p


def test_the_catalogue_has_at_least_25_distinct_cases():
    assert len({c.id for c in CATALOGUE}) == len(CATALOGUE) >= 25


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.id for c in CATALOGUE])
def test_bad_input_and_broken_components_fail_cleanly_and_write_nothing(invoke, paths, monkeypatch, case):
    if case.data == "real":
        paths.data = require_data()
    elif case.data != "empty":
        fake_cifar10(paths.data, case.data)
    # no other data root may satisfy the run, and nothing may be downloaded
    monkeypatch.setenv("UEBENCH_DATA", str(paths.data))
    monkeypatch.setenv("XDG_CACHE_HOME", str(paths.root / "xdg"))
    from uebench.datasets.cifar10 import Cifar10

    def offline(self, folder):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(Cifar10, "download", offline)
    if case.plugins:
        write_plugins(paths.plugins)
    before = sorted(p.relative_to(paths.root) for p in paths.root.rglob("*"))

    result = invoke(*case.argv(paths))

    out = assert_clean_error(result, case.code)
    for fragment in case.fragments:
        assert fragment in out, (fragment, out)
    assert not paths.out.exists() or not any(paths.out.rglob("*.csv")), "a row or curve was written"
    assert not list(paths.cache.rglob("*.pt")), "noise was cached"
    after = sorted(p.relative_to(paths.root) for p in paths.root.rglob("*") if not p.name.endswith(".lock"))
    created = set(after) - set(before) - {Path("out"), Path("cache"), Path("out/curves"), Path("matrix.toml")}
    # the dataset's content digest is kept once it is computed (a cache of the data, not a result)
    created = {p for p in created if p.parts[:3] != ("xdg", "uebench", "digests") and p not in (Path("xdg"), Path("xdg/uebench"))}
    assert not created, f"files appeared: {sorted(map(str, created))}"


@pytest.mark.slow
def test_a_full_disk_while_writing_the_row_keeps_the_results_file_whole(invoke, tmp_path, monkeypatch):
    """ENOSPC halfway through writing results.csv: exit 1 naming the fault, the CSV as it was
    before (byte for byte), no temp file left beside it."""
    require_data()
    out = tmp_path / "out"
    args = ("run", "--protocol", "smoke", "--json", "--attack", "none", "--out", out)
    assert invoke(*args).exit_code == 0
    results = out / "results.csv"
    before = results.read_bytes()

    import uebench.results as results_module

    real_write = results_module.atomic_write

    def full_disk(path, write, suffix=".tmp"):
        if Path(path).name != "results.csv":
            return real_write(path, write, suffix)

        def half_then_enospc(tmp):
            write(tmp)
            with open(tmp, "r+b") as f:
                f.truncate(os.path.getsize(tmp) // 2)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

        return real_write(path, half_then_enospc, suffix)

    monkeypatch.setattr(results_module, "atomic_write", full_disk)
    out_text = assert_clean_error(invoke(*args), 1)
    assert "No space left on device" in out_text
    assert results.read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_results_folder_without_write_permission_is_bad_input(invoke, tmp_path, monkeypatch):
    """As root (CI) a chmod'ed folder stays writable, so the permission answer is simulated."""
    import uebench.atomic

    locked = tmp_path / "locked"
    locked.mkdir()
    (tmp_path / "nodata").mkdir()  # --data-dir must exist; bad input is refused before it is read
    real_access = os.access
    monkeypatch.setattr(uebench.atomic.os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    result = invoke("run", "--protocol", "smoke", "--attack", "none", "--out", locked / "out", "--data-dir", tmp_path / "nodata")
    out = assert_clean_error(result, 2)
    assert f"results folder --out '{locked / 'out'}' is not writable: no write permission on '{locked}'" in out
    assert list(locked.iterdir()) == []
