"""``uebench leaderboard migrate``: rows written before an identity change get today's keys,
and nothing they measured changes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from uebench.cell import CellSpec, RunSettings, prepare
from uebench.cellkey import IDENTITY_V1, cell_key, config_key
from uebench.migrate import Sources, _noise_key, migrate_rows, provenance_of, train_size_of
from uebench.record import planned_row
from uebench.results import COLUMNS, append_row

NEW_COLUMNS = ("config_key", "data_digest", "torch_version", "threads")


def _today(form: str, attack: str = "errmin-pgd") -> tuple[dict, str, object]:
    """A row's identity fields as today's code plans them, its noise key, and the cell."""
    cell = prepare(CellSpec(attack=attack, protocol="cpu", attack_options={"form": form}), RunSettings(device="cpu"))
    planned = planned_row(cell)
    key = cell.noise.key
    assert cell.noise.train_size == 5000  # the cpu protocol's 500 per class: known before any data is loaded
    return planned, key, cell


def _sources(revision: int = 3, digest: str | None = None, torch: str | None = None) -> Sources:
    return Sources(lambda name: revision, train_size_of, (lambda name: digest) if digest else None, torch)


def _row(planned: dict, **changes) -> dict:
    row = {column: "" for column in COLUMNS}
    row.update({k: str(v) for k, v in planned.items()}, run_id="r1", final_test_acc="0.2031", train_size="5000", **changes)
    return row


def _written_before(planned: dict) -> dict:
    """The row older uebench wrote: ``class_subset`` in the Δs options, keys computed from them."""
    options = {**json.loads(planned["attack_options"]), "class_subset": 0.2}
    row = _row(planned, attack_options=json.dumps(options, sort_keys=True, separators=(",", ":")))
    row["cell_key"], row["config_key"] = cell_key(row), config_key(row)
    row["noise_key"] = _noise_key(row, options, 3, 5000, provenance_of(row))
    return row


def _before_provenance(planned: dict, revision: int = 3) -> dict:
    """A row from before the data digest and the numerics were recorded: no such columns, keys
    over the old identity fields."""
    row = _row(planned)
    for column in (*NEW_COLUMNS, "l0_max_delta", "inputs"):
        row.pop(column)
    row["cell_key"] = cell_key(row, IDENTITY_V1)
    row["noise_key"] = _noise_key(row, json.loads(row["attack_options"]), revision, 5000)
    return row


@pytest.mark.parametrize("attack", ["errmin-pgd", "errmin-adam"])
def test_a_samplewise_row_with_class_subset_gets_todays_keys(attack):
    planned, today_noise_key, _ = _today("sample", attack)
    old = _written_before(planned)
    assert old["cell_key"] != cell_key(planned)  # the sweep would run it again
    new, changed = migrate_rows(pd.DataFrame([old]), _sources())
    row = new.iloc[0].to_dict()
    assert changed == 1
    assert "class_subset" not in json.loads(row["attack_options"])
    assert row["cell_key"] == cell_key(planned) and row["config_key"] == config_key(planned)
    if attack == "errmin-pgd":  # revision 3 is errmin-pgd's: the key the runner gives today
        assert row["noise_key"] == today_noise_key
    keys = ("attack_options", "cell_key", "config_key", "noise_key")
    assert {k: row[k] for k in row if k not in keys} == {k: old[k] for k in old if k not in keys}


def test_a_row_from_before_the_data_digest_and_numerics_gets_them_and_todays_keys():
    planned, today_noise_key, cell = _today("sample")
    old = _before_provenance(planned)
    assert old["cell_key"] != cell_key(planned)
    new, changed = migrate_rows(pd.DataFrame([old]), _sources(digest=cell.data_digest, torch=cell.numerics.torch_version))
    row = new.iloc[0].to_dict()
    assert changed == 1
    assert (row["data_digest"] == cell.data_digest and row["torch_version"] == cell.numerics.torch_version
            and row["threads"] == "1")
    assert row["cell_key"] == cell_key(planned) and row["config_key"] == config_key(planned)
    assert row["noise_key"] == today_noise_key
    assert row["final_test_acc"] == old["final_test_acc"]


def test_the_torch_release_and_the_data_are_never_guessed():
    planned, _, cell = _today("class")
    old = _before_provenance(planned)
    with pytest.raises(ValueError, match="--assume-torch"):
        migrate_rows(pd.DataFrame([old]), _sources(digest=cell.data_digest))
    with pytest.raises(ValueError, match="--data-dir"):
        migrate_rows(pd.DataFrame([old]), _sources(torch="2.14.1"))


def test_an_l0_row_gets_its_largest_delta_out_of_eps():
    planned, _, _ = _today("class")
    old = _before_provenance(planned)
    old["norm"] = "l0:1"
    old["cell_key"] = cell_key(old, IDENTITY_V1)  # keyed with --eps (8/255) ...
    old["eps"] = "1.0"  # ... while the row held the noise's largest |δ|
    new, _ = migrate_rows(pd.DataFrame([old]), _sources(digest="0" * 16, torch="2.14.1"))
    row = new.iloc[0].to_dict()
    assert float(row["eps"]) == pytest.approx(8 / 255) and row["l0_max_delta"] == "1.0"


def test_classwise_rows_and_rows_of_other_revisions_keep_what_they_have():
    planned, _, _ = _today("class")
    klass = _row(planned)
    klass["cell_key"], klass["config_key"] = cell_key(klass), config_key(klass)
    sample = _written_before(_today("sample")[0])
    new, changed = migrate_rows(pd.DataFrame([klass, sample]), _sources(revision=2))
    assert changed == 1
    assert new.iloc[0].to_dict() == klass
    assert new.iloc[1]["noise_key"] == sample["noise_key"]  # not reproducible at revision 2: kept
    assert new.iloc[1]["cell_key"] != sample["cell_key"]


def test_a_hand_edited_row_is_refused():
    row = _written_before(_today("sample")[0])
    row["cell_key"] = "0" * 20
    with pytest.raises(ValueError, match="not the key of its fields"):
        migrate_rows(pd.DataFrame([row]), _sources())


def test_the_command_migrates_a_results_file_once(invoke, tmp_path):
    planned, _, cell = _today("sample")
    path = tmp_path / "results.csv"
    append_row(path, _before_provenance(planned))
    first = invoke("leaderboard", "migrate", path, "--assume-torch", cell.numerics.torch_version)
    assert first.exit_code == 0, first.output
    assert "1 row(s) migrated" in first.output and f"data_digest of cifar10: {cell.data_digest}" in first.output
    assert pd.read_csv(path, dtype=str)["cell_key"].tolist() == [cell_key(planned)]
    again = invoke("leaderboard", "migrate", path)
    assert "0 row(s) migrated" in again.output
