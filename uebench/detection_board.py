"""The leaderboard's detection table, from ``<protocol>/detections.csv`` (``uebench detect``,
or a sweep whose matrix names detectors).

One row per attack configuration and poison rate, one column pair per detector: the mean score
(± sd over seeds) on the released set, and how many seeds' sets the detector flagged.  The clean
set (attack ``none``) is a row like the others: its flags are false positives.  Rows of protocol
versions other than the current one are left out, as in the accuracy tables.
"""

from __future__ import annotations

import pandas as pd

from uebench.stats import attack_label, current_version, distinguish_variants, none_first


def detection_table(detections: pd.DataFrame | None) -> list[str]:
    """Markdown lines (none when there is nothing to show)."""
    if detections is None or detections.empty:
        return []
    frame = current_version(detections[detections["protocol"].astype(str) != ""])  # a user's file has no protocol
    if frame.empty:
        return []
    frame = frame.assign(attack_label=frame.apply(attack_label, axis=1))
    frame = frame.assign(attack_label=distinguish_variants(frame),
                         flagged=frame["flagged"].astype(str).str.lower() == "true", score=frame["score"].astype(float))
    detectors = sorted(frame["detector"].unique())
    thresholds = {d: ", ".join(sorted({f"{float(t):g}" for t in frame[frame["detector"] == d]["threshold"]}))
                  for d in detectors}
    lines = ["## Poison detection", "",
             "Is the released training set poisoned? Each detector's score on the set as released (mean ± sd over",
             "seeds) and how many seeds' sets it flagged (score > threshold). The `none` row is the clean set: a flag",
             "there is a false positive. Thresholds: " + "; ".join(f"`{d}` {thresholds[d]}" for d in detectors) + ",",
             "calibrated on clean CIFAR-10 at this scale (each detector's docstring). Rows: `detections.csv`.", "",
             "| attack | poison rate | " + " | ".join(f"{d} score | {d} flagged" for d in detectors) + " |",
             "|---|---|" + "---|---|" * len(detectors)]
    keys = frame[["attack_label", "poison_rate"]].drop_duplicates()
    keys = keys.assign(order=keys["attack_label"].map(none_first), rate=keys["poison_rate"].astype(float))
    for _, key in keys.sort_values(["order", "rate"], ascending=[True, False]).iterrows():
        part = frame[(frame["attack_label"] == key["attack_label"]) & (frame["poison_rate"] == key["poison_rate"])]
        cells = []
        for d in detectors:
            mine = part[part["detector"] == d].drop_duplicates("seed", keep="last")
            if mine.empty:
                cells += ["—", "—"]
                continue
            sd = f" ± {mine['score'].std():.3f}" if len(mine) > 1 else ""
            cells += [f"{mine['score'].mean():.3f}{sd}", f"{int(mine['flagged'].sum())}/{len(mine)}"]
        lines.append(f"| {key['attack_label']} | {key['rate']:g} | " + " | ".join(cells) + " |")
    return [*lines, ""]
