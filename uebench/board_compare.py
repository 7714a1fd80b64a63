"""A run next to the board: what the committed rows of its configuration say, and where it falls.

A new user's run that lands 18 points from the committed row with the same keys needs to be
told which number to believe and why (issue 16).  After ``uebench run``, the summary looks the
cell's configuration up in the committed leaderboard (``leaderboards/<protocol>/results.csv``):
the rows of the same ``config_key`` (same settings, data and numerics: a rerun there should
reproduce its seed's row bit for bit), and failing those, rows of the same settings on other
data or numerics (``cellkey.setting_key``) — then it names what differs (``threads 1 → 2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from uebench.cellkey import NUMERICS, config_key, identity, setting_key
from uebench.stats import current_version

# the fields a row of the same settings may differ in (what the comparison names)
PROVENANCE = ("data_digest", *NUMERICS)


def default_board(protocol: str) -> Path | None:
    """``leaderboards/<protocol>/results.csv`` under the working folder, else beside the uebench
    package (a checkout); None where neither exists."""
    for root in (Path.cwd() / "leaderboards", Path(__file__).resolve().parent.parent / "leaderboards"):
        csv = root / protocol / "results.csv"
        if csv.is_file():
            return csv
    return None


@dataclass
class BoardComparison:
    """The committed rows that bear on one run's row."""

    same: pd.DataFrame  # rows of the run's configuration (its config_key)
    similar: pd.DataFrame  # rows of its settings on other data or numerics
    differs: dict  # field → (committed values, this run's value), for ``similar``

    def lines(self, row: dict) -> list[str]:
        acc = 100 * float(row["final_test_acc"])
        seed = int(row["seed"])
        if len(self.same):
            out = [f"leaderboard: {_stats(self.same)}"]
            mine = self.same[self.same["seed"].astype(int) == seed]
            if len(mine):
                committed = 100 * float(mine["final_test_acc"].iloc[0])
                verdict = ("identical: reproduced bit for bit"
                           if float(mine["final_test_acc"].iloc[0]) == float(row["final_test_acc"])
                           else f"{acc - committed:+.2f} points: not reproduced, though data and numerics match "
                                f"(another CPU model's kernels, or a changed code path)")
                out.append(f"committed seed {seed}: {committed:.2f}%; this run: {acc:.2f}% — {verdict}")
            else:
                out.append(f"this run (seed {seed}, no committed row): {acc:.2f}% — {_where(acc, self.same)}")
            return out
        if len(self.similar):
            what = "; ".join(f"{field} {', '.join(sorted(theirs))} → {ours}" for field, (theirs, ours) in self.differs.items())
            out = [f"leaderboard: no committed row of this configuration; rows of the same settings on other data or numerics "
                   f"({what}): {_stats(self.similar)}"]
            twin = self.similar[self.similar["seed"].astype(int) == seed]
            if len(twin):
                out.append(f"committed seed {seed}: {100 * float(twin['final_test_acc'].iloc[0]):.2f}% "
                           f"({_numerics(twin.iloc[0].to_dict())})")
            out.append(f"this run: {acc:.2f}% ({_numerics(row)}) — {_where(acc, self.similar)}; "
                       f"other numerics give other floats, so a seed's number is not expected to match "
                       f"(rerun with the committed numerics to reproduce it)")
            return out
        return []


def _numerics(row: dict) -> str:
    threads = str(row.get("threads", "")).strip()
    where = f"{row.get('device', '')}" if not threads else f"{threads} thread{'s' * (threads != '1')}"
    return f"torch {row.get('torch_version', '?')}, {where}, {row.get('precision', '?')}"


def _stats(rows: pd.DataFrame) -> str:
    pct = 100 * rows["final_test_acc"].astype(float)
    seeds = sorted(rows["seed"].astype(int))
    span = f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1 else \
        f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"
    sd = f" ± {pct.std(ddof=1):.2f}" if len(pct) > 1 else ""
    return f"{pct.mean():.2f}{sd}% (n={len(pct)}, {span}; range {pct.min():.2f}–{pct.max():.2f})"


def _where(acc: float, rows: pd.DataFrame) -> str:
    pct = 100 * rows["final_test_acc"].astype(float)
    if pct.min() <= acc <= pct.max():
        return "inside the committed seeds' range"
    side, edge = ("above", pct.max()) if acc > pct.max() else ("below", pct.min())
    return f"outside the committed seeds' range, {abs(acc - edge):.2f} points {side} it"


def compare_with_board(row: dict, board: Path | None) -> BoardComparison | None:
    """The committed rows of ``board`` (a results CSV) bearing on ``row``; None without a board
    or without any such row."""
    if board is None or not Path(board).is_file():
        return None
    frame = current_version(pd.read_csv(board, dtype=str, keep_default_na=False))
    if frame.empty:
        return None
    frame = frame.assign(protocol_version=frame["protocol_version"].astype(int))
    frame = frame[frame["protocol"] == row["protocol"]]
    records = frame.to_dict("records")
    ours = {k: ("" if v is None else v) for k, v in row.items()}
    configs = [r.get("config_key") or config_key(r) for r in records]
    same = frame[[c == config_key(ours) for c in configs]]
    target = setting_key(ours)
    similar = frame[[setting_key(r) == target and c != config_key(ours) for r, c in zip(records, configs, strict=True)]]
    if same.empty and similar.empty:
        return None
    differs = {}
    mine = identity(ours)
    for field in PROVENANCE:
        theirs = {str(identity(r).get(field, "")) for r in similar.to_dict("records")}
        if theirs and theirs != {str(mine.get(field, ""))}:
            differs[field] = (theirs, str(mine.get(field, "")))
    return BoardComparison(same, similar, differs)
