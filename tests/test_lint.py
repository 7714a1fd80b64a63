"""The code passes the project's ruff rules (pyproject ``[tool.ruff]``): imports sorted, no
unused names, no loop-variable closures — the slips review misses and CI should not."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from conftest import REPO


def test_ruff_is_clean():
    assert importlib.util.find_spec("ruff"), "ruff is a test dependency: pip install -e '.[test]'"
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", "uebench", "tests", "benchmarks", "plugins"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
