"""Rows → statistics per configuration: what the markdown tables, the plots, ``leaderboard
show``/``compare`` and the site all read, so none of them can compute a number the others do not.

A row's configuration is its ``config_key`` (the cell key without the seed) plus its norm; the
label every table and plot uses is the attack and its form, with the settings that tell two
configurations of one label apart (``distinguish_settings``).  ``cell_stats`` gives mean, sd, n
and the 95% Student-t interval of each (label, defense) cell; ``compare`` the Welch test of two.
"""

from __future__ import annotations

import json
import re

import pandas as pd

from uebench.cellkey import config_key, is_missing


def attack_label(row: pd.Series) -> str:
    """``errmin-pgd form=class``: the attack plus its form, the one option every reader needs."""
    form = json.loads(row["attack_options"]).get("form") if isinstance(row["attack_options"], str) else None
    return f"{row['attack']} form={form}" if form else row["attack"]


def slug(text: str) -> str:
    """A file-name-safe, stable name for a label: ``errmin-pgd form=class [patch=8]`` →
    ``errmin-pgd-form-class-patch-8`` (gallery folders, site pages and anchors)."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def parse_options(text) -> dict:
    """A row's options JSON as a flat dict without ``None`` values (an option that is None does
    not apply, so ``{"patch": null}`` and ``{}`` are the same run).  Defense options are nested by
    defense name; one defense's are flattened to its keys, a composition's to ``name.key``."""
    parsed = json.loads(text) if isinstance(text, str) and text else {}
    if parsed and all(isinstance(v, dict) for v in parsed.values()):  # {defense: {option: value}}
        single = len(parsed) == 1
        parsed = {(k if single else f"{name}.{k}"): v for name, opts in parsed.items() for k, v in opts.items()}
    return {k: v for k, v in parsed.items() if v is not None}


def distinguish_variants(frame: pd.DataFrame, label: str = "attack_label", options: str = "attack_options") -> pd.Series:
    """Rows of one label with different options must not be averaged together: append the
    options that differ between the variants (``errmin-pgd form=class [model_steps=10]``,
    ``early-stop [clean_val=True]``)."""
    labels = frame[label].copy()
    for name, rows in frame.groupby(label):
        parsed = {o: parse_options(o) for o in rows[options].unique()}
        variants = {json.dumps(p, sort_keys=True) for p in parsed.values()}
        if len(variants) < 2:
            continue
        keys = sorted({k for v in parsed.values() for k in v if len({json.dumps(w.get(k)) for w in parsed.values()}) > 1})
        for text, values in parsed.items():
            # the variant without the differing options (e.g. no patch) keeps the plain label
            suffix = ", ".join(f"{k}={values[k]}" for k in keys if k in values)
            labels[rows.index[rows[options] == text]] = f"{name} [{suffix}]" if suffix else name
    return labels


# One table (and one plot panel) per group; groups are sorted by these columns.  Rows written
# before a scope column existed read as its default (all classes, poisoned samples kept).
GROUP = ["dataset", "victim", "poison_rate", "poison_classes", "drop_poisoned"]
SCOPE_DEFAULTS = {"poison_classes": "", "drop_poisoned": False}


def group_title(key, quote: str = "`") -> str:
    """``cifar10 · victim `cnn-small` · poison rate 0.5 of bird``: a table's heading (a plot
    panel's title with ``quote=""``)."""
    dataset, victim, rate, classes, drop = key
    title = f"{dataset} · victim {quote}{victim}{quote} · poison rate {rate:g}"
    title += f" of {classes}" if classes else ""
    return title + (" · poisoned samples dropped (clean part only)" if drop else "")

# Fields that make two configurations of one attack label differ without an option saying so:
# (column, how a label shows its value).
def _eps_text(value) -> str:
    value = float(value)
    return f"{value * 255:.4g}/255"


SETTINGS = (
    ("eps", lambda v: f"eps={_eps_text(v)}"),
    ("quantized", lambda v: "uint8 release" if str(v).lower() in ("true", "1") else "float noise"),
    ("norm", lambda v: f"norm={v}"),
    ("victim_options", lambda v: f"victim {v}"),
    ("data_digest", lambda v: f"data {str(v)[:8]}"),
    ("torch_version", lambda v: f"torch {v}"),
    ("threads", lambda v: f"threads={int(float(v))}" if str(v).strip() not in ("", "nan") else "threads=–"),
    ("precision", lambda v: str(v)),
    ("device_type", lambda v: str(v)),
)


def as_text(value) -> str:
    return "" if pd.isna(value) else str(value)


def with_config_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``config_key`` on every row (the stored one, else computed from the fields)
    and ``device_type`` (``cpu`` of ``cpu:1threads``)."""
    if frame.empty:
        return frame.assign(config_key=pd.Series(dtype=object), device_type=pd.Series(dtype=object),
                            configuration=pd.Series(dtype=object))
    stored = frame["config_key"] if "config_key" in frame else pd.Series("", index=frame.index)
    computed = [s if isinstance(s, str) and s else config_key({k: v for k, v in row.items() if not is_missing(v)})
                for s, row in zip(stored, frame.to_dict("records"), strict=True)]
    device = frame["device"] if "device" in frame else pd.Series("", index=frame.index)
    norm = frame["norm"].map(as_text) if "norm" in frame else pd.Series("", index=frame.index)
    norm = norm.where(norm != "", "linf")  # rows from before the column are all linf
    # the norm is known only once the noise is (an L0 attack says so when it crafts), so it is
    # not in the cell key; a board tells configurations apart by both
    return frame.assign(config_key=computed, device_type=[as_text(d).split(":", 1)[0] for d in device], norm=norm,
                        configuration=[f"{c}:{n}" for c, n in zip(computed, norm, strict=True)])


def distinguish_settings(frame: pd.DataFrame) -> pd.Series:
    """Within each table, rows of one attack label that are not one configuration get the
    settings that differ between them in their label (``random form=sample [eps=16/255]``); a
    difference no listed field shows gets the configuration's key, so no cell ever averages two
    configurations."""
    labels = frame["attack_label"].copy()
    for _, part in frame.groupby([*GROUP, "attack_label"], sort=False):
        if part.groupby("defense")["configuration"].nunique().max() < 2:  # each (label, defense) one configuration
            continue
        differing = [(c, show) for c, show in SETTINGS if c in part and part[c].map(as_text).nunique() > 1]
        for index, row in part.iterrows():
            suffix = ", ".join(show(row[c]) for c, show in differing)
            labels[index] = _append(labels[index], suffix)
    for _, part in frame.assign(attack_label=labels).groupby([*GROUP, "attack_label", "defense"], sort=False):
        if part["configuration"].nunique() > 1:
            for index, row in part.iterrows():
                labels[index] = _append(labels[index], f"config {row['config_key'][:8]}")
    return labels


def _append(label: str, suffix: str) -> str:
    """``errmin-pgd form=class [patch=8]`` + ``eps=16/255`` → ``errmin-pgd form=class [patch=8, eps=16/255]``."""
    if not suffix:
        return label
    if label.endswith("]"):
        return f"{label[:-1]}, {suffix}]"
    return f"{label} [{suffix}]"


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with an ``attack_label`` column: the label every table row and plot uses."""
    frame = frame.assign(attack_label=frame.apply(attack_label, axis=1) if len(frame) else "")
    for column, default in SCOPE_DEFAULTS.items():
        values = frame[column] if column in frame else pd.Series(default, index=frame.index, dtype=object)
        values = values.astype(object).where(values.notna(), default)  # a column of old rows only is all NaN (float)
        frame = frame.assign(**{column: values.astype(type(default))})
    frame = frame.assign(attack_label=distinguish_variants(frame))
    if "defense_options" in frame:  # defenses of one name with other options are other columns
        frame = frame.assign(defense=distinguish_variants(frame, "defense", "defense_options"))
    frame = with_config_keys(frame)
    return frame.assign(attack_label=distinguish_settings(frame)) if len(frame) else frame


def current_version(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of each protocol's current version (``uebench.protocols``; for a protocol it does
    not know, the newest in ``frame``): a protocol's numbers change meaning when its version
    does, so older rows stay in the CSV (history) but are never averaged in or shown."""
    from uebench.protocols import PROTOCOLS

    if frame.empty or "protocol_version" not in frame:
        return frame
    versions = pd.to_numeric(frame["protocol_version"], errors="coerce")
    names = frame["protocol"] if "protocol" in frame else pd.Series("", index=frame.index)
    keep = pd.Series(False, index=frame.index)
    for name in names.unique():
        mine = names == name
        current = PROTOCOLS[name].version if name in PROTOCOLS else versions[mine].max()
        keep |= mine & (versions == current)
    return frame[keep]


def cell_stats(part: pd.DataFrame, column: str = "final_test_acc") -> pd.DataFrame:
    """Clean test accuracy (%) of each (attack label, defense) cell of ``part`` over its seeds:
    ``mean``, ``sd`` (sample standard deviation; NaN for one seed) and ``n``. The table and the
    bar plot both read these, so they cannot disagree."""
    part = part[part[column].notna()]
    pct = (100 * part[column]).groupby([part["attack_label"], part["defense"]])
    stats = pd.DataFrame({"mean": pct.mean(), "sd": pct.std(ddof=1), "n": pct.size()})
    half = stats.apply(lambda s: interval_half_width(s["sd"], int(s["n"])), axis=1) if len(stats) else pd.Series(dtype=float)
    return stats.assign(ci_low=stats["mean"] - half, ci_high=stats["mean"] + half)


def interval_half_width(sd: float, n: int, level: float = 0.95) -> float:
    """Half the width of the Student-t interval of a mean of ``n`` seeds (NaN for one seed).
    With n = 3 it is 2.5 sd: three seeds pin a mean down far less than ``± sd`` suggests."""
    from scipy.stats import t

    if n < 2 or pd.isna(sd):
        return float("nan")
    return float(t.ppf(0.5 + level / 2, n - 1) * sd / n**0.5)


def compare(a: pd.Series, b: pd.Series) -> dict:
    """Two cells' per-seed accuracies (%): the difference of the means, its 95% interval and
    Welch's p-value — whether a leaderboard claim "A recovers more than B" exceeds the spread
    between seeds (``exceeds_spread``: the interval excludes 0)."""
    from scipy.stats import ttest_ind

    a, b = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    diff = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return {"difference": diff, "ci_low": float("nan"), "ci_high": float("nan"), "p": float("nan"), "exceeds_spread": False}
    test = ttest_ind(a, b, equal_var=False)
    ci = test.confidence_interval(0.95)
    return {"difference": diff, "ci_low": float(ci.low), "ci_high": float(ci.high), "p": float(test.pvalue),
            "exceeds_spread": bool(ci.low > 0 or ci.high < 0)}


def spread(sd: float) -> str:
    """`` ± sd`` where there are two or more seeds (``sd`` is not NaN), else ``""``: seeds of one
    cell differ by several points at small scales, so a mean alone misleads."""
    return "" if pd.isna(sd) else f" ± {sd:.2f}"


def none_first(name: str) -> tuple[bool, str]:
    """Sort key: the ``none`` attack or defense (the baseline) first, then alphabetically."""
    return (name != "none", name)
