"""Source models trained on clean data: an artifact like noise — trained once, cached, validated.

Error-maximizing noise (``errmax-pgd``, ``errmax-universal``) attacks a model first trained on
the clean training set.  That training costs as much as a victim's, so the trained weights are
cached beside the noise: content-addressed by everything that determines them (source name,
protocol and its version, a digest of the training images and labels, seed, uebench version),
written atomically as safetensors (tensors only: nothing is unpickled on load), and checked on
load (key, tensor names and shapes against a freshly built model, finite values).  An invalid
file is reported, removed and trained again.
"""

from __future__ import annotations

import hashlib
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


def load_state(path: Path, key: str, model: torch.nn.Module) -> str | None:
    """Load ``path`` into ``model``; None on success, else why the file is not usable."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # truncated, not safetensors, ...
        return f"cannot read {path}: {exc}"
    if meta.get("key") != key:
        return f"{path}: key {meta.get('key')!r}, expected {key!r}"
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        return f"{path}: weights are not finite"
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
