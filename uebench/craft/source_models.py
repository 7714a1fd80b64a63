"""Source models trained on clean data: an artifact like noise — trained once, cached, validated.

Error-maximizing noise (``errmax-pgd``, ``errmax-universal``) attacks a model first trained on
the clean training set.  That training costs as much as a victim's, so the trained weights are
cached beside the noise: content-addressed by everything that determines them (source name,
protocol and its version, a digest of the training images and labels, seed, uebench version),
written atomically as safetensors (tensors only: nothing is unpickled on load), and checked on
load (key, tensor names and shapes against a freshly built model, finite values).  An invalid
file is reported, removed and trained again.

Self-ensemble protection (``sep``) attacks *several checkpoints of one* clean training run:
:func:`clean_checkpoints` trains once with the same settings and seeds as :func:`clean_source`
(so its last checkpoint is the model ``clean_source`` trains), keeps the weights at the end of
the asked epochs and caches them together as one safetensors file, under a key of its own that
also names those epochs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from filelock import FileLock

from uebench import __version__
from uebench.atomic import atomic_write
from uebench.craft.cache import default_cache_dir, noise_key
from uebench.seeds import seed_global


def data_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of the training images and labels (a fraction of a second for 50k CIFAR images)."""
    h = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def source_key(ctx, name: str) -> str:
    p = ctx.protocol
    return noise_key({
        "kind": "clean-source-model", "source": name, "protocol": p.name, "protocol_version": p.version,
        "data": data_digest(ctx.x, ctx.y), "seed": ctx.seed, "uebench": __version__,
    })


def _read_checked(path: Path, key: str) -> tuple[dict, dict, str | None]:
    """(metadata, tensors, None) of a cached weights file written under ``key``, or ({}, {}, why not)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # truncated, not safetensors, ...
        return {}, {}, f"cannot read {path}: {exc}"
    if meta.get("key") != key:
        return {}, {}, f"{path}: key {meta.get('key')!r}, expected {key!r}"
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        return {}, {}, f"{path}: weights are not finite"
    return meta, state, None


def load_state(path: Path, key: str, model: torch.nn.Module) -> str | None:
    """Load ``path`` into ``model``; None on success, else why the file is not usable."""
    meta, state, why = _read_checked(path, key)
    if why is not None:
        return why
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        return f"{path}: does not fit a fresh {meta.get('source', 'model')}: {str(exc).splitlines()[0]}"
    return None


def clean_source(ctx, name: str) -> tuple[torch.nn.Module, dict]:
    """``name`` (a registered victim) trained with the protocol's victim settings on ``ctx``'s
    clean training set, from the cache when a valid entry exists.  Returns (model in eval mode,
    info: key, path, cached, train accuracy)."""
    from safetensors.torch import save_file

    from uebench.defenses.base import Defense
    from uebench.train import TrainData, Trainer

    folder = Path(ctx.cache_dir or default_cache_dir())
    key = source_key(ctx, name)
    path = folder / f"source-{key}.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    seeds = torch.randint(0, 2**62, (3,), generator=ctx.generator).tolist()  # drawn either way: same stream after
    seed_global(seeds[0])  # the source model's initial weights
    model = ctx.build_model(name)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            why = load_state(path, key, model)
            if why is None:
                ctx.reporter.log(f"clean source model cache hit: {path}")
                return model.eval(), {"key": key, "path": str(path), "cached": True}
            ctx.reporter.log(f"[yellow]discarded invalid cached source model: {why}[/]")
            path.unlink(missing_ok=True)
            seed_global(seeds[0])
            model = ctx.build_model(name)
        settings = ctx.protocol.train_settings(ctx.precision, ctx.channels_last)
        trainer = Trainer(model, TrainData(ctx.x, ctx.y, ctx.num_classes), settings, [Defense()],
                          torch.Generator().manual_seed(seeds[1]), torch.Generator().manual_seed(seeds[2]), ctx.device,
                          ctx.reporter)
        result = trainer.fit(ctx.x[:0], ctx.y[:0])  # no test set: this model is the attacker's, not a result
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta = {"key": key, "source": name, "train_acc": f"{result.final['train_acc']:.6f}"}
        atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta), suffix=".tmp.safetensors")
    return model.eval(), {"key": key, "path": str(path), "cached": False, "train_acc": result.final["train_acc"]}


# --- checkpoints of one clean run (SEP) ------------------------------------------------------


def checkpoints_key(ctx, name: str, epochs: Sequence[int]) -> str:
    """:func:`source_key`'s fields, another kind, and the checkpoint epochs."""
    p = ctx.protocol
    return noise_key({
        "kind": "clean-source-checkpoints", "source": name, "protocol": p.name, "protocol_version": p.version,
        "data": data_digest(ctx.x, ctx.y), "seed": ctx.seed, "uebench": __version__, "epochs": [int(e) for e in epochs],
    })


def checkpoint_epochs(total: int, count: int) -> list[int]:
    """``count`` epochs spread evenly over a ``total``-epoch run, ending with the last: k·total/count
    rounded, k = 1..count (30 of 120: 4, 8, ..., 120)."""
    if not 1 <= count <= total:
        raise ValueError(f"cannot keep {count} checkpoints of a {total}-epoch run")
    return [round(k * total / count) for k in range(1, count + 1)]


def _snapshots(epochs: Sequence[int]):
    """A training-loop callback that copies the weights at the end of each of ``epochs`` and ends
    the run after the last of them (the learning-rate schedule is the full run's either way, so
    the copies equal those of a run that went on)."""
    from uebench.defenses.base import Defense

    class Snapshots(Defense):
        def __init__(self):
            super().__init__()
            self.states: dict[int, dict[str, torch.Tensor]] = {}
            self.train_acc: dict[int, float] = {}

        def after_epoch(self, state, control):
            if state.epoch in epochs:
                self.states[state.epoch] = {k: v.detach().cpu().clone().contiguous() for k, v in state.model.state_dict().items()}
                self.train_acc[state.epoch] = float(state.history[-1]["train_acc"])
            control.stop = control.stop or state.epoch >= max(epochs)

    return Snapshots()


def _load_checkpoints(path: Path, key: str, epochs: list[int], build) -> tuple[list[torch.nn.Module], str | None]:
    """The models of ``epochs`` from the file at ``path`` (each a fresh ``build()``); ([], why) when unusable."""
    meta, state, why = _read_checked(path, key)
    if why is not None:
        return [], why
    if meta.get("epochs") != json.dumps(epochs):
        return [], f"{path}: checkpoints of epochs {meta.get('epochs')}, expected {epochs}"
    models = []
    for epoch in epochs:
        prefix = f"epoch{epoch}."
        model = build()
        try:
            model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
        except RuntimeError as exc:
            return [], f"{path}: epoch {epoch} does not fit a fresh {meta.get('source', 'model')}: {str(exc).splitlines()[0]}"
        models.append(model.eval())
    return models, None


def clean_checkpoints(ctx, name: str, epochs: Sequence[int]) -> tuple[list[torch.nn.Module], dict]:
    """The weights of ``name`` at the end of each of ``epochs`` (1-based, ≤ the protocol's epochs)
    of *one* training run on ``ctx``'s clean training set — the run :func:`clean_source` trains
    (same settings, same seeds drawn from ``ctx.generator``) — from the cache when a valid entry
    exists.  Returns (models in eval mode, in ``epochs`` order; info: key, path, cached, epochs,
    and train accuracy per checkpoint when trained now)."""
    from safetensors.torch import save_file

    from uebench.train import TrainData, Trainer

    epochs = sorted({int(e) for e in epochs})
    if not epochs or epochs[0] < 1 or epochs[-1] > ctx.protocol.epochs:
        raise ValueError(f"checkpoint epochs must lie in 1..{ctx.protocol.epochs} (the protocol's), got {epochs}")
    folder = Path(ctx.cache_dir or default_cache_dir())
    key = checkpoints_key(ctx, name, epochs)
    path = folder / f"checkpoints-{key}.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    seeds = torch.randint(0, 2**62, (3,), generator=ctx.generator).tolist()  # as clean_source draws them: the same run
    info = {"key": key, "path": str(path), "epochs": epochs}
    with FileLock(str(path) + ".lock"):
        if path.exists():
            models, why = _load_checkpoints(path, key, epochs, lambda: ctx.build_model(name))
            if why is None:
                ctx.reporter.log(f"clean source checkpoints cache hit: {path}")
                return models, {**info, "cached": True}
            ctx.reporter.log(f"[yellow]discarded invalid cached source checkpoints: {why}[/]")
            path.unlink(missing_ok=True)
        seed_global(seeds[0])  # the run's initial weights
        model = ctx.build_model(name)
        snapshots = _snapshots(epochs)
        settings = ctx.protocol.train_settings(ctx.precision, ctx.channels_last)
        trainer = Trainer(model, TrainData(ctx.x, ctx.y, ctx.num_classes), settings, [snapshots],
                          torch.Generator().manual_seed(seeds[1]), torch.Generator().manual_seed(seeds[2]), ctx.device,
                          ctx.reporter)
        trainer.fit(ctx.x[:0], ctx.y[:0])  # no test set: these models are the attacker's
        state = {f"epoch{e}.{k}": v for e in epochs for k, v in snapshots.states[e].items()}
        meta = {"key": key, "source": name, "epochs": json.dumps(epochs),
                "train_acc": json.dumps([snapshots.train_acc[e] for e in epochs])}
        atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta), suffix=".tmp.safetensors")
    models = []
    for epoch in epochs:
        m = ctx.build_model(name)
        m.load_state_dict(snapshots.states[epoch], strict=True)
        models.append(m.eval())
    return models, {**info, "cached": False, "train_acc": [snapshots.train_acc[e] for e in epochs]}
