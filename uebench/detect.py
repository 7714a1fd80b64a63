"""Detection rows: score a cell's released training set, or a dataset a user brings, with the
registered detectors, and write one row per (set, detector) to ``detections.csv``.

A cell's detection row holds the fields that define its *released set* — the cell's row fields
without the defense and the victim, which a detector never sees — plus the detector and its
options; ``detect_key`` hashes those through :func:`uebench.cellkey.identity`, the cell key's
canonical form, so a repeated ``detect`` of the same set is recognised.  A user's set (``uebench
detect PATH``) is identified by a digest of its content, not its path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from uebench import __version__
from uebench.cellkey import _hash, identity
from uebench.compute import device_label
from uebench.detectors.base import SuspectSet, Verdict
from uebench.options import OptionError, build_options, canonical_json, options_dict
from uebench.progress import NULL_REPORTER, Reporter
from uebench.results import append_row, git_sha

DETECTIONS_FILE = "detections.csv"
# what defines a released set: the cell's identity without defense and victim
SET_FIELDS = ("uebench_version", "protocol", "protocol_version", "dataset", "attack", "attack_options", "eps", "poison_rate",
              "poison_classes", "drop_poisoned", "quantized", "seed", "data_digest", "torch_version", "device_type", "threads",
              "precision")
DETECT_FIELDS = (*SET_FIELDS, "detector", "detector_options")


@dataclass(frozen=True)
class Scored:
    """One detector's verdict on one set, with what it cost."""

    detector: object
    verdict: Verdict
    seconds: float


def build_detectors(host, names: tuple[str, ...], options: dict[str, dict]) -> list:
    """Instances of the named detectors (all registered ones when ``names`` is empty), with
    ``options`` (detector name → {option: raw value}); unknown names and options fail here."""
    chosen = names or tuple(host.detectors.names())
    unknown = set(options) - set(chosen)
    if unknown:
        raise OptionError(f"options given for detector(s) {', '.join(sorted(unknown))}, which this run does not use "
                          f"(it runs {', '.join(chosen)})")
    built = []
    for name in chosen:
        cls = host.detectors.get(name).cls
        built.append(cls(build_options(cls.Options, options.get(name, {}), owner=f"detector {name!r}")))
    return built


def score(suspect: SuspectSet, detectors, generator_seed: int, device, reporter: Reporter = NULL_REPORTER) -> list[Scored]:
    """Run each detector on ``suspect``, each from its own fresh generator (so adding a detector
    never changes another's verdict)."""
    out = []
    for detector in detectors:
        generator = torch.Generator().manual_seed(generator_seed)
        start = time.perf_counter()
        verdict = detector.detect(suspect, generator, torch.device(device), reporter)
        out.append(Scored(detector, verdict, time.perf_counter() - start))
    return out


def detect_key(base: dict, detector) -> str:
    """The key of ``detector``'s verdict on the set ``base`` describes."""
    fields = {**base, "detector": detector.name, "detector_options": canonical_json(options_dict(detector.options))}
    return _hash(identity(fields, DETECT_FIELDS))


def detection_row(base: dict, scored: Scored, size: int) -> dict:
    """The row of one verdict: ``base`` (the set's fields) + the detector's."""
    d, v = scored.detector, scored.verdict
    fields = {**base, "detector": d.name, "detector_options": canonical_json(options_dict(d.options))}
    return {
        "run_id": dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
        "detect_key": detect_key(base, d),
        "set_key": _hash(identity(fields, SET_FIELDS)),
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        **fields,
        "inputs_seen": v.inputs,
        "score": round(v.score, 6),
        "threshold": v.threshold,
        "flagged": v.flagged,
        "calibration": v.calibration,
        "details": json.dumps(v.details, sort_keys=True),
        "set_size": size,
        "detect_seconds": round(scored.seconds, 2),
    }


def cell_set_fields(cell) -> dict:
    """A prepared cell's released-set fields (its planned row without defense and victim)."""
    from uebench.record import planned_row

    planned = planned_row(cell)
    return {k: v for k, v in planned.items() if k not in ("defense", "defense_options", "victim", "victim_options")}


def cell_suspect(cell, reporter: Reporter = NULL_REPORTER) -> tuple[SuspectSet, object]:
    """The cell's released training set as a defender receives it, with the clean originals
    (for detectors that look at the perturbation); crafts or loads the noise as ``run`` does."""
    from uebench.runner import cell_noise, load_cell, release_cell

    loaded = load_cell(cell, reporter)
    crafted = cell_noise(cell, loaded, reporter)
    released = release_cell(cell, loaded, crafted)
    suspect = SuspectSet(released.images, released.labels, loaded.num_classes, x_clean=released.clean,
                         description=cell.label.split("×")[0] + f" s{cell.spec.seed}")
    return suspect, crafted


def user_set_fields(path: Path, suspect: SuspectSet, digest: str, device) -> dict:
    """The set fields of a dataset a user brought: its content digest identifies it."""
    return {"uebench_version": __version__, "protocol": "", "protocol_version": 0, "dataset": f"file:{path.name}",
            "attack": "", "attack_options": "{}", "eps": 0.0, "poison_rate": 0.0, "poison_classes": "", "drop_poisoned": False,
            "quantized": suspect.x.dtype == torch.uint8, "seed": 0, "data_digest": digest,
            "torch_version": torch.__version__.split("+")[0], "device": device_label(torch.device(device)),
            "threads": torch.get_num_threads(), "precision": "fp32", "path": str(path)}


def known_verdicts(out: Path) -> dict[str, dict]:
    """The rows already in ``out/detections.csv``, by ``detect_key`` (empty when there is none)."""
    import pandas as pd

    path = Path(out) / DETECTIONS_FILE
    if not path.is_file():
        return {}
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return {r["detect_key"]: r for r in frame.to_dict("records")} if "detect_key" in frame else {}


def write_rows(out: Path, rows: list[dict]) -> Path:
    path = Path(out) / DETECTIONS_FILE
    for row in rows:
        append_row(path, row)
    return path


def content_digest(*tensors: torch.Tensor) -> str:
    """20 hex characters of sha256 over the tensors' bytes and shapes."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:20]
