"""How long the cells a sweep still has to do will take, from rows already written.

A cell's configuration (``config_key``: the cell key without the seed) ran before at other seeds
more often than not, so its median training time there is the best guess for this seed; a noise
still to craft is guessed from that configuration's rows that crafted theirs (not cache hits).
Cells whose configuration has no row are counted, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass
class Estimate:
    seconds: float  # the guessed cells' training plus their noises' crafting
    guessed: int  # cells with a timed configuration
    unknown: int  # cells without one

    def describe(self) -> str:
        if not self.guessed:
            return "no row of these configurations is timed yet: no estimate"
        text = (f"about {_duration(self.seconds)} for {self.guessed} cell(s), from the median times of their configurations' "
                f"rows (on the machines that wrote them)")
        return text + (f"; {self.unknown} cell(s) of untimed configurations not counted" if self.unknown else "")


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def timings(results: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Per configuration: the median training seconds, and the median crafting seconds of its
    rows that crafted their noise."""
    if not Path(results).is_file():
        return {}, {}
    frame = pd.read_csv(results, dtype={"config_key": str}, keep_default_na=False)
    if "config_key" not in frame or frame.empty:
        return {}, {}
    frame = frame[frame["config_key"] != ""]
    train = pd.to_numeric(frame["train_seconds"], errors="coerce").groupby(frame["config_key"]).median()
    crafted = frame[frame["noise_cached"].astype(str).str.lower() == "false"]
    craft = pd.to_numeric(crafted["craft_seconds"], errors="coerce").groupby(crafted["config_key"]).median()
    return train.dropna().to_dict(), craft.dropna().to_dict()


def estimate(todo: list[tuple[str, str | None]], results: Path) -> Estimate:
    """``todo``: (config key, the noise key it still has to craft or None) per cell to do; a
    noise shared by several cells is crafted once."""
    train, craft = timings(results)
    seconds, guessed, unknown, crafting = 0.0, 0, 0, set()
    for config, noise in todo:
        if config not in train:
            unknown += 1
            continue
        guessed += 1
        seconds += train[config]
        if noise and noise not in crafting:
            crafting.add(noise)
            seconds += craft.get(config, 0.0)
    return Estimate(seconds, guessed, unknown)
