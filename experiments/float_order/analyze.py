"""Float-order sensitivity at the ``cpu`` scale: the same cells on 1 and on 2 CPU threads.

Reads the 1-thread rows of the ``cpu`` leaderboard (``leaderboards/cpu/results.csv``, the
protocol's pinned thread count) and the 2-thread rows of this folder's ``results.csv`` (written
by ``uebench sweep experiments/float_order/matrix.toml --out experiments/float_order --threads 2``,
or migrated from an older run), for errmin-pgd Δs (no defense, CutMix) and Δc (no defense) at
seeds 0-4.  Prints a markdown table (per-seed values, mean ± sd, Welch's comparison of the two
thread counts, the crafting's stop iteration and final error) and writes ``strip.svg``: one dot
per seed, a column per thread count, a panel per cell.

    python experiments/float_order/analyze.py
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from uebench.leaderboard import compare

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CELLS = (("Δs, no defense", "sample", "none"), ("Δs, CutMix", "sample", "cutmix"), ("Δc, no defense", "class", "none"))
DEFAULT_OPTIONS = {"sample": {"batch_size", "form", "max_iters", "model_steps", "source", "source_lr", "step_size", "steps", "stop_error"},
                   "class": {"batch_size", "class_subset", "form", "max_iters", "model_steps", "source", "source_lr", "step_size",
                             "steps", "stop_error"}}


def rows(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = frame[(frame["protocol"] == "cpu") & (frame["protocol_version"] == "3") & (frame["attack"] == "errmin-pgd")
                  & (frame["poison_rate"].astype(float) == 1.0) & (frame["poison_classes"] == "") & (frame["quantized"] == "True")]
    options = frame["attack_options"].map(json.loads)
    form = options.map(lambda o: o.get("form"))
    plain = [set(o) == DEFAULT_OPTIONS.get(f, set()) for o, f in zip(options, form, strict=True)]
    frame = frame.assign(form=form)[plain]
    frame = frame[frame["seed"].astype(int) <= 4]
    return frame.assign(threads=frame["device"].str.extract(r"cpu:(\d+)threads")[0].astype(int), seed=frame["seed"].astype(int),
                        acc=100 * frame["final_test_acc"].astype(float))


def table(both: pd.DataFrame) -> str:
    lines = ["| cell | threads | per seed (%) | mean ± sd | crafting: iterations (final error) |",
             "|---|---|---|---|---|"]
    verdicts = []
    for title, form, defense in CELLS:
        part = both[(both["form"] == form) & (both["defense"] == defense)]
        by = {}
        for threads in (1, 2):
            mine = part[part["threads"] == threads].sort_values("seed")
            by[threads] = mine["acc"]
            if mine.empty:
                lines.append(f"| {title} | {threads} | not measured | — | — |")
                continue
            seeds = ", ".join(f"{a:.1f} (s{s})" for s, a in zip(mine["seed"], mine["acc"], strict=True))
            crafting = ", ".join(f"{i} ({float(e):.4f})" for i, e in zip(mine["craft_iterations"], mine["craft_final_error"], strict=True))
            sd = f" ± {mine['acc'].std(ddof=1):.1f}" if len(mine) > 1 else ""
            lines.append(f"| {title} | {threads} | {seeds} | {mine['acc'].mean():.1f}{sd} (n={len(mine)}) | {crafting} |")
        if min(len(by[1]), len(by[2])) < 2:
            verdicts.append(f"- {title}: fewer than two seeds on one side: no comparison")
            continue
        c = compare(by[2], by[1])
        verdicts.append(f"- {title}: 2 threads − 1 thread = {c['difference']:+.1f} points, 95% CI {c['ci_low']:+.1f} to "
                        f"{c['ci_high']:+.1f}, Welch p = {c['p']:.3f}: "
                        + ("exceeds the seed spread" if c["exceeds_spread"] else "within the seed spread"))
    return "\n".join(lines + [""] + verdicts)


def strip_svg(both: pd.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.hashsalt": "uebench", "svg.fonttype": "none"}):
        fig, axes = plt.subplots(1, len(CELLS), figsize=(9, 3.2), sharey=True)
        for ax, (title, form, defense) in zip(axes, CELLS, strict=True):
            part = both[(both["form"] == form) & (both["defense"] == defense)]
            for x, threads in enumerate((1, 2)):
                mine = part[part["threads"] == threads].sort_values("seed")
                spread = [x + 0.07 * (seed - 2) for seed in mine["seed"]]  # seeds side by side: equal values stay visible
                ax.scatter(spread, mine["acc"], s=28, color=("C0", "C3")[x], zorder=3)
                for px, seed, acc in zip(spread, mine["seed"], mine["acc"], strict=True):
                    ax.annotate(str(seed), (px, acc), xytext=(0, 5), textcoords="offset points", fontsize=7, color="0.35", ha="center")
                if len(mine):
                    ax.hlines(mine["acc"].mean(), x - 0.2, x + 0.2, color="0.2", lw=1)
            ax.set_xticks([0, 1], ["1 thread", "2 threads"])
            ax.set_xlim(-0.6, 1.6)
            ax.set_title(title, fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel("clean test accuracy (%)")
        fig.suptitle("cpu protocol v3: the same cells on 1 and on 2 threads (dot = seed, bar = mean)", fontsize=9)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
        plt.close(fig)
    return out.getvalue()


def main() -> None:
    both = pd.concat([rows(REPO / "leaderboards" / "cpu" / "results.csv"), rows(HERE / "results.csv")], ignore_index=True)
    both = both.drop_duplicates(["form", "defense", "seed", "threads"])
    print(table(both))
    (HERE / "strip.svg").write_bytes(strip_svg(both))
    print(f"\nwrote {HERE / 'strip.svg'}")


if __name__ == "__main__":
    main()
