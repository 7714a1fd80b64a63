"""Every committed row's reproduce command (``uebench.run_command``, shown on the site's cell
pages) plans exactly that row's cell: parsed by ``uebench run``'s own option parser, prepared
like a run, it has the row's ``cell_key``.  A command that dropped an option, or wrote one the
CLI reads differently, would plan another cell and fail here."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import REPO, require_data
from uebench.cellkey import IDENTITY_V1, cell_key
from uebench.run_command import run_arguments, run_command
from uebench.stats import current_version

BOARDS = sorted((REPO / "leaderboards").glob("*/results.csv"))


def _committed_rows() -> list[dict]:
    rows = []
    for csv in BOARDS:
        frame = current_version(pd.read_csv(csv))
        rows += [r for r in frame.to_dict("records") if r["protocol"] != "paper"]  # no GPU here: a paper row's device
    return rows


def _planned_row(args: list[str], tmp_path) -> dict:
    from uebench.cell import prepare
    from uebench.cli.run import cell_request, run
    from uebench.plugins import get_host
    from uebench.record import planned_row

    assert args[:2] == ["uebench", "run"], args
    ctx = run.make_context("run", [*args[2:], "--data-dir", str(require_data()), "--out", str(tmp_path / "out")],
                           obj={"plugins_dirs": ()})
    host = get_host()
    spec, settings = cell_request(ctx.params, host)
    return planned_row(prepare(spec, settings, host))


def test_every_committed_rows_command_plans_its_cell(tmp_path):
    """The settings (and seed) always; the whole cell key where this machine has the rows' data
    and numerics (our CI: the shared CIFAR-10 copy, torch 2.14.1, a CPU) — elsewhere a row's
    data digest or torch release differ, which no command can change."""
    rows = _committed_rows()
    assert len(rows) > 100, "the committed cpu board should hold its rows"
    wrong, whole = [], 0
    for row in rows:
        planned = _planned_row(run_arguments(row), tmp_path)
        if cell_key(planned, IDENTITY_V1) != cell_key(row, IDENTITY_V1):
            wrong.append(f"{row['run_id']}: {run_command(row)}")
        elif all(str(planned[k]) == str(row[k]) for k in ("data_digest", "torch_version", "precision")):
            whole += 1
            if cell_key(planned) != row["cell_key"]:
                wrong.append(f"{row['run_id']} (same data and numerics, another key): {run_command(row)}")
    assert not wrong, "commands that plan another cell than their row's:\n" + "\n".join(wrong)
    import torch

    if torch.__version__.split("+")[0] == "2.14.1" and require_data().resolve() == (REPO.parent / "shared" / "data").resolve():
        assert whole == len(rows), f"only {whole} of {len(rows)} rows were compared by their whole key"


def _row(**changes) -> dict:
    row = next(r for r in _committed_rows() if r["attack"] == "errmin-pgd" and '"form":"class"' in r["attack_options"]
               and r["defense"] == "none" and r["poison_rate"] == 1.0)
    return {**row, **changes}


def test_only_what_differs_from_the_defaults_is_written():
    args = run_arguments(_row())
    assert args.count("-o") == 1 and "form=class" in args, args  # the class-wise defaults follow from form=class
    assert "--victim" not in args and "--eps" not in args and "--threads" not in args and "--precision" not in args


@pytest.mark.parametrize(("changes", "expected"), [
    ({"threads": 2, "device": "cpu:2threads"}, ["--threads", "2"]),
    ({"poison_rate": 0.5}, ["--poison-rate", "0.5"]),
    ({"drop_poisoned": True}, ["--drop-poisoned"]),
    ({"quantized": False}, ["--float-noise"]),
    ({"poison_classes": "bird"}, ["--poison-classes", "bird"]),
    ({"victim": "resnet18"}, ["--victim", "resnet18"]),
    ({"eps": 16 / 255}, ["--eps", "16/255"]),
])
def test_settings_away_from_the_defaults_are_written(changes, expected):
    args = run_arguments(_row(**changes))
    at = args.index(expected[0])
    assert args[at:at + len(expected)] == expected, args


def test_a_defense_option_names_its_defense():
    row = _row(defense="adv-train", defense_options='{"adv-train":{"attack_mode":"train","eps":0.01568627450980392,'
                                                   '"step_size":0.00784313725490196,"steps":10}}')
    args = run_arguments(row)
    assert "adv-train.eps=4/255" in args, args
    assert not any(a.startswith("adv-train.steps") for a in args), args
