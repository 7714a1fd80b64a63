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


def detection_rows(detections: pd.DataFrame | None) -> tuple[list[str], dict[str, str], list[dict]]:
    """(detectors, their thresholds as text, one dict per attack configuration and poison rate:
    ``label``, ``rate``, and per detector ``score`` text, ``flagged`` text ("k/n") and the mean
    ``value``).  Nothing when there is nothing to show.  The markdown table and the site's both
    read these."""
    if detections is None or detections.empty:
        return [], {}, []
    frame = current_version(detections[detections["protocol"].astype(str) != ""])  # a user's file has no protocol
    if frame.empty:
        return [], {}, []
    frame = frame.assign(attack_label=frame.apply(attack_label, axis=1))
    frame = frame.assign(attack_label=distinguish_variants(frame),
                         flagged=frame["flagged"].astype(str).str.lower() == "true", score=frame["score"].astype(float))
    detectors = sorted(frame["detector"].unique())
    thresholds = {d: ", ".join(sorted({f"{float(t):g}" for t in frame[frame["detector"] == d]["threshold"]}))
                  for d in detectors}
    keys = frame[["attack_label", "poison_rate"]].drop_duplicates()
    keys = keys.assign(order=keys["attack_label"].map(none_first), rate=keys["poison_rate"].astype(float))
    rows = []
    for _, key in keys.sort_values(["order", "rate"], ascending=[True, False]).iterrows():
        part = frame[(frame["attack_label"] == key["attack_label"]) & (frame["poison_rate"] == key["poison_rate"])]
        entry = {"label": key["attack_label"], "rate": f"{key['rate']:g}", "detectors": {}}
        for d in detectors:
            mine = part[part["detector"] == d].drop_duplicates("seed", keep="last")
            if mine.empty:
                entry["detectors"][d] = {"score": "—", "flagged": "—", "value": None}
                continue
            sd = f" ± {mine['score'].std():.3f}" if len(mine) > 1 else ""
            entry["detectors"][d] = {"score": f"{mine['score'].mean():.3f}{sd}",
                                     "flagged": f"{int(mine['flagged'].sum())}/{len(mine)}",
                                     "value": float(mine["score"].mean())}
        rows.append(entry)
    return detectors, thresholds, rows


def detection_table(detections: pd.DataFrame | None) -> list[str]:
    """Markdown lines (none when there is nothing to show)."""
    detectors, thresholds, rows = detection_rows(detections)
    if not rows:
        return []
    lines = ["## Poison detection", "",
             "Is the released training set poisoned? Each detector's score on the set as released (mean ± sd over",
             "seeds) and how many seeds' sets it flagged (score > threshold). The `none` row is the clean set: a flag",
             "there is a false positive. Thresholds: " + "; ".join(f"`{d}` {thresholds[d]}" for d in detectors) + ",",
             "calibrated on clean CIFAR-10 at this scale (each detector's docstring). Rows: `detections.csv`.", "",
             "| attack | poison rate | " + " | ".join(f"{d} score | {d} flagged" for d in detectors) + " |",
             "|---|---|" + "---|---|" * len(detectors)]
    for r in rows:
        cells = [v for d in detectors for v in (r["detectors"][d]["score"], r["detectors"][d]["flagged"])]
        lines.append(f"| {r['label']} | {r['rate']} | " + " | ".join(cells) + " |")
    return [*lines, ""]
