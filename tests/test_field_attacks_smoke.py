"""Every attack of issue 18 runs a whole ``smoke`` cell through ``uebench run``: crafted (or
read from the cache), released, trained on, and recorded with the budget it names."""

from __future__ import annotations

import pytest

from conftest import json_out, require_data

NORMS = {"rem": "linf", "hypo": "linf", "tap": "linf", "sep": "linf", "lsp": "l2:1.30413", "ar": "l2:1", "cuda": "transform"}


@pytest.mark.parametrize("attack", sorted(NORMS))
def test_a_smoke_cell_of_each_field_attack(invoke, tmp_path, attack):
    require_data()
    result = invoke("run", "--protocol", "smoke", "--attack", attack, "--json", "--out", tmp_path / "out",
                    "--cache-dir", tmp_path / "cache")
    row = json_out(result)
    assert row["attack"] == attack and row["norm"] == NORMS[attack]
    assert 0 <= row["final_test_acc"] <= 1 and row["epochs"] >= 1
    assert bool(row["noise_key"]) == (attack not in ("lsp", "ar", "cuda"))  # the synthetic ones are cheaper to redo than store
