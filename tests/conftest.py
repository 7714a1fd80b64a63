"""Shared test setup.

* ``UEBENCH_DATA`` defaults to ``<repo>/../shared/data`` (the CI layout) when it is unset.
* ``UEBENCH_CACHE`` and ``XDG_CACHE_HOME`` point at a per-session temp folder, so no test ever
  writes into the data folder or the user's home.
* Every test starts and ends with a fresh plugin host (``uebench.plugins.reset()``), because
  plugin loading depends on the environment (``UEBENCH_LOAD_PLUGINS``, installed plugins).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# Set at import time so that collection (which parametrises over the registries) sees it too.
if not os.environ.get("UEBENCH_DATA"):
    os.environ["UEBENCH_DATA"] = str(REPO.parent / "shared" / "data")
# A developer's extra plugin folder must not leak into the registries under test.
os.environ.pop("UEBENCH_PLUGINS_DIR", None)
os.environ.pop("UEBENCH_LOAD_PLUGINS", None)

DATA_ROOT = Path(os.environ["UEBENCH_DATA"])


@pytest.fixture(scope="session", autouse=True)
def _session_caches(tmp_path_factory):
    """Point every cache uebench (and pip, torch, timm) could write to at a session temp dir."""
    base = tmp_path_factory.mktemp("caches")
    mp = pytest.MonkeyPatch()
    mp.setenv("UEBENCH_CACHE", str(base / "noise"))
    mp.setenv("XDG_CACHE_HOME", str(base / "xdg"))
    mp.setenv("TORCH_HOME", str(base / "torch"))
    mp.setenv("HF_HOME", str(base / "hf"))
    mp.setenv("PIP_NO_CACHE_DIR", "1")
    yield base
    mp.undo()


@pytest.fixture(autouse=True)
def _fresh_plugins():
    """Forget loaded plugin hosts before and after each test (env vars change what loads)."""
    from uebench import plugins

    plugins.reset()
    yield
    plugins.reset()


# --- CLI helpers ----------------------------------------------------------------------------


@pytest.fixture
def invoke():
    """Run the ``uebench`` CLI in-process; returns click's Result (``.stdout``, ``.stderr``)."""
    from click.testing import CliRunner

    from uebench.cli import cli

    def _invoke(*args, env=None):
        runner = CliRunner()
        return runner.invoke(cli, [str(a) for a in args], env=env, catch_exceptions=True)

    return _invoke


def assert_clean_error(result, code: int | None = None) -> str:
    """The command failed with a handled error: an exit code, a message and no traceback."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.output)
    # a handled error ends as SystemExit; anything else is an escaped exception
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert "Error" in result.output
    return result.output


def json_out(result):
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return json.loads(result.stdout)


def require_data():
    """The real CIFAR-10 folder the end-to-end tests need (fail loudly when it is missing)."""
    folder = DATA_ROOT / "cifar10"
    assert (folder / "test.npz").is_file(), (
        f"end-to-end tests need CIFAR-10 in {folder} (set UEBENCH_DATA or put shared/data beside the repo)"
    )
    return DATA_ROOT


# --- plugin packages -----------------------------------------------------------------------


def can_build_from_source() -> bool:
    """``pip install --no-build-isolation`` builds with the interpreter's own setuptools: it needs
    ``bdist_wheel`` (setuptools >= 70.1, or the ``wheel`` package).  A fresh Python 3.11 venv
    (as in CI) has setuptools 65 without ``wheel``; tests then install a :func:`build_wheel`."""
    import importlib.util

    try:
        import setuptools
    except ImportError:
        return False
    if importlib.util.find_spec("wheel") is not None:
        return True
    major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)


def build_wheel(out: Path, dist: str, version: str, files: dict[str, str], entry_points: str) -> Path:
    """A wheel assembled by hand (no build backend needed): ``files`` plus the METADATA, WHEEL,
    entry points and RECORD that ``pip install`` reads."""
    import base64
    import hashlib
    import zipfile

    name = dist.replace("-", "_")
    info = f"{name}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: uebench-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": entry_points,
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    wheel = Path(out) / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


# --- synthetic data for unit tests ----------------------------------------------------------


def synthetic_batch(n_per_class=2, num_classes=10, size=32, seed=0):
    """uint8 N×3×size×size images and balanced int64 labels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = torch.randint(0, 256, (len(y), 3, size, size), generator=g, dtype=torch.uint8)
    return x, y


def make_ctx(n_per_class=2, num_classes=10, eps=8 / 255, protocol="smoke", seed=0, channels_last=False):
    """A CraftContext over synthetic data, building models through the victim registry."""
    from uebench.attacks.base import CraftContext
    from uebench.plugins import get_host
    from uebench.protocols import get_protocol

    x, y = synthetic_batch(n_per_class, num_classes, seed=seed)
    host = get_host()

    def build(name):
        entry, arg = host.victims.resolve(name)
        torch.manual_seed(seed)
        return entry.cls(None, arg).build(num_classes, tuple(x.shape[1:]))

    return CraftContext(
        x=x, y=y, num_classes=num_classes, eps=eps, seed=seed, device=torch.device("cpu"), precision="fp32",
        channels_last=channels_last, protocol=get_protocol(protocol), build_model=build,
        generator=torch.Generator().manual_seed(seed),
    )
