"""``uebench leaderboard migrate``: rows written before an identity change get today's keys,
and nothing they measured changes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from uebench.cellkey import cell_key
from uebench.migrate import _noise_key, migrate_rows
from uebench.results import COLUMNS, append_row
from uebench.runner import CellSpec, noise_key_of, planned_row, prepare


def _today(form: str, attack: str = "errmin-pgd") -> tuple[dict, str]:
    """A row's identity fields as today's code plans them, and its noise key."""
    cell = prepare(CellSpec(attack=attack, protocol="cpu", device="cpu", attack_options={"form": form}))
    planned = planned_row(cell)
    key = noise_key_of(cell.attack, cell.attack_resolved, "cifar10", cell.protocol, 0, cell.spec.eps, 5000)
    return planned, key


def _written_before(planned: dict) -> dict:
    """The row older uebench wrote: ``class_subset`` in the Δs options, keys computed from them."""
    options = {**json.loads(planned["attack_options"]), "class_subset": 0.2}
    row = {column: "" for column in COLUMNS}
    row.update({k: str(v) for k, v in planned.items()}, attack_options=json.dumps(options, sort_keys=True, separators=(",", ":")),
               run_id="r1", final_test_acc="0.2031", train_size="5000")
    row["cell_key"] = cell_key(row)
    row["noise_key"] = _noise_key(row, options, 3, 5000)
    return row


@pytest.mark.parametrize("attack", ["errmin-pgd", "errmin-adam"])
def test_a_samplewise_row_with_class_subset_gets_todays_keys(attack):
    planned, today_noise_key = _today("sample", attack)
    old = _written_before(planned)
    assert old["cell_key"] != cell_key(planned)  # the sweep would run it again
    new, changed = migrate_rows(pd.DataFrame([old]), revision_of=lambda name: 3)
    row = new.iloc[0].to_dict()
    assert changed == 1
    assert "class_subset" not in json.loads(row["attack_options"])
    assert row["cell_key"] == cell_key(planned)
    if attack == "errmin-pgd":  # revision 3 is errmin-pgd's: the key the runner gives today
        assert row["noise_key"] == today_noise_key
    assert {k: row[k] for k in row if k not in ("attack_options", "cell_key", "noise_key")} == {
        k: old[k] for k in old if k not in ("attack_options", "cell_key", "noise_key")}


def test_classwise_rows_and_rows_of_other_revisions_keep_what_they_have():
    planned, _ = _today("class")
    klass = {column: "" for column in COLUMNS}
    klass.update({k: str(v) for k, v in planned.items()}, run_id="c", train_size="5000")
    klass["cell_key"] = cell_key(klass)
    sample = _written_before(_today("sample")[0])
    new, changed = migrate_rows(pd.DataFrame([klass, sample]), revision_of=lambda name: 2)
    assert changed == 1
    assert new.iloc[0].to_dict() == klass
    assert new.iloc[1]["noise_key"] == sample["noise_key"]  # not reproducible at revision 2: kept
    assert new.iloc[1]["cell_key"] != sample["cell_key"]


def test_a_hand_edited_row_is_refused():
    row = _written_before(_today("sample")[0])
    row["cell_key"] = "0" * 20
    with pytest.raises(ValueError, match="not the key of its fields"):
        migrate_rows(pd.DataFrame([row]), revision_of=lambda name: 3)


def test_the_command_migrates_a_results_file_once(invoke, tmp_path):
    planned, _ = _today("sample")
    path = tmp_path / "results.csv"
    append_row(path, _written_before(planned))
    first = invoke("leaderboard", "migrate", path)
    assert first.exit_code == 0, first.output
    assert "1 row(s) migrated" in first.output
    assert pd.read_csv(path, dtype=str)["cell_key"].tolist() == [cell_key(planned)]
    again = invoke("leaderboard", "migrate", path)
    assert "0 row(s) migrated" in again.output
