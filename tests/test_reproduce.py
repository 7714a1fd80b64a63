"""A committed row reproduces bit for bit in a fresh process on another thread default.

``tests/reference/smoke.json`` holds what README command 1 (errmin-pgd Δs × CutMix, seed 0) gave
at the ``smoke`` scale: its keys, its final accuracy, its per-epoch losses to the last bit and a
digest of the crafted δ.  The test runs the same command in a new process with
``OMP_NUM_THREADS=2`` (torch's default on a 2-core machine, which would change the float order
of both crafting and training) and expects every value back exactly: the CPU protocols pin the
thread count (``uebench.numerics``), so the machine's default does not enter.  The numbers are
those of torch 2.14.1 on this project's machines; a new torch release is another configuration
(its keys differ, and the test says so rather than comparing floats).

Regenerate (only when a change is *meant* to change these numbers, e.g. a protocol version):
``python tests/test_reproduce.py`` writes the reference anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "tests" / "reference" / "smoke.json"
COMMAND = ["run", "--protocol", "smoke", "--attack", "errmin-pgd", "--defense", "cutmix", "--seed", "0", "--json"]
ROW_FIELDS = ("cell_key", "config_key", "noise_key", "data_digest", "torch_version", "threads", "device", "final_test_acc",
              "final_train_acc", "craft_iterations", "craft_final_error")


def measure(tmp: Path, threads_default: int = 2) -> dict:
    """Run the reference command in a fresh process; what it gave, as the reference stores it."""
    from uebench.noise import load_noise

    env = {**os.environ, "OMP_NUM_THREADS": str(threads_default), "UEBENCH_CACHE": str(tmp / "cache"),
           "XDG_CACHE_HOME": str(tmp / "xdg")}
    done = subprocess.run([sys.executable, "-m", "uebench.cli", *COMMAND, "--out", str(tmp / "out")], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    curve = pd.read_csv(tmp / "out" / "curves" / f"{row['run_id']}.csv")
    delta = load_noise(tmp / "cache" / f"{row['noise_key']}.pt").delta
    return {
        "command": "uebench " + " ".join(COMMAND[:-1]),
        "row": {k: row[k] for k in ROW_FIELDS},
        "train_loss": [float(v).hex() for v in curve["train_loss"]],  # hex: every bit of the float
        "test_acc": [float(v).hex() for v in curve["test_acc"]],
        "delta_sha256": hashlib.sha256(delta.numpy().tobytes()).hexdigest(),
    }


@pytest.mark.slow
def test_readme_command_1_at_smoke_scale_reproduces_its_committed_row_bit_for_bit(tmp_path):
    reference = json.loads(REFERENCE.read_text())
    here = torch.__version__.split("+")[0]
    assert here == reference["row"]["torch_version"], (
        f"the reference was made with torch {reference['row']['torch_version']}, this is {here}: another configuration "
        f"(keys differ); install the pinned torch (README) or regenerate the reference with `python {Path(__file__).name}`")
    got = measure(tmp_path)
    assert got["row"] == reference["row"]
    assert got["train_loss"] == reference["train_loss"]
    assert got["test_acc"] == reference["test_acc"]
    assert got["delta_sha256"] == reference["delta_sha256"]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps(measure(Path(tmp)), indent=1) + "\n")
        print(f"wrote {REFERENCE}")
