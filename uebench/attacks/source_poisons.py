"""Poisons crafted against models trained on the *clean* training set: HYPO, TAP and SEP.

All three are sample-wise L∞ noise (|δ| ≤ ε, the cell's ``--eps``; shapes δ N×C×H×W), made by
the shared signed-gradient PGD (``uebench.craft.solvers.pgd``) against frozen models that were
trained once on the clean set with the protocol's victim settings and cached as artifacts
(``uebench.craft.source_models``).  They differ in the direction of the steps and in the
models they attack:

- ``hypo`` — hypocritical perturbations (Tao et al., "Better Safe Than Sorry: Preventing
  Delusive Adversaries with Adversarial Training", NeurIPS 2021, https://arxiv.org/abs/2102.04716;
  code: github.com/TLMichael/Hypocritical-Perturbation).  *Error-minimizing* PGD toward the true
  label against the fixed clean-trained source (``clean_source``, the model ``errmax-pgd``
  attacks): x' ← Π_ε(x' − α·sign ∇ L(f(x'), y)).  The source is never updated — there is no
  bi-level loop, unlike ``errmin-pgd``: the noise makes the images *easier* for a model that
  already knows the task, a non-robust shortcut that agrees with the labels.  Defaults from the
  reference code: 100 steps of α = ε/10 from δ = 0, each through a fresh random crop + flip.
- ``tap`` — targeted adversarial poisoning (Fowl et al., "Adversarial Examples Make Strong
  Poisons", NeurIPS 2021, https://arxiv.org/abs/2106.10807; code: github.com/lhfowl/adversarial_poisons).
  Class-targeted PGD against the same clean-trained source: every image of class y is pushed
  toward class t(y) = (y + 1) mod K (the fixed permutation of the reference's ``_label_map``),
  x' ← Π_ε(x' − α·sign ∇ L(f(aug(x')), t(y))), with differentiable augmentation ``aug``
  (a fresh random crop + flip of each image at every step) inside the loss.  Defaults: the
  paper's 250 steps of the reference's α = τ·ε with τ = 0.05, from the reference's start
  δ₀ = clip(ε·N(0, 1), −ε, ε).  The reference's 8 restarts (keeping the restart with the
  lowest mean target loss) are not done: its README names ``--restarts 1`` as the cheaper
  setting.
- ``sep`` — self-ensemble protection (Chen et al., "Self-Ensemble Protection: Training
  Checkpoints Are Good Data Protectors", ICLR 2023, https://arxiv.org/abs/2211.12005; code:
  github.com/Sizhe-Chen/SEP).  The targeted poison of the paper's basic SEP (``ens.py``),
  against an *ensemble of checkpoints of one* clean training run (``clean_checkpoints``: one
  run, trained once and cached): every image of class y is pushed toward
  g(y) = (y + ⌊K/2⌋) mod K (the paper's (y + 5) % 10 for CIFAR-10, (y + 50) % 100 for
  CIFAR-100) along the sign of the checkpoints' *mean* gradient,
  x' ← Π_ε(x' − α·sign Σ_k ∇ L(f_k(x'), g(y))).  Defaults from the reference: 30 checkpoints,
  30 steps of α = 1/255 from δ = 0, no augmentation.  The reference trains 120 epochs, saves a
  checkpoint whenever the *test* accuracy improves and takes 30 of those, evenly spaced; the
  attacker here holds no test set, so its K checkpoints are the ends of K evenly spaced epochs
  of the protocol's run (k·E/K, k = 1..K).  The paper's stronger variants (feature alignment,
  variance reduction: SEP-FA-VR) are not implemented.

Scaled for the CPU protocols (``cpu``, ``cpu-full``, ``smoke``; options left unset are resolved
from the protocol, and an explicit value always wins).  A PGD step costs one forward and
backward pass per image and attacked model; a ``cpu`` cell computes on one thread
(``Protocol.cpu_threads``), where ``cnn-small`` did about 450 such image passes a second
(measured on a shared core, BN folded, with or without the crop + flip), so the ``cpu``
protocol's 5,000 images cost ~11 s per step and model:

- ``hypo``: 20 steps (paper 100) of α = ε/10 — ``errmax-pgd``'s PGD-20 budget, so the two
  baselines that differ only in the sign of the step also cost the same (~4 min instead of
  ~18).  From δ = 0, 20 steps of ε/10 travel 2ε, twice what reaching any point of the ball takes.
- ``tap``: 50 steps (paper 250: ~46 min at ``cpu``) of α = ε/10 instead of ε/20, so the 50
  steps still travel 5ε, well over the ball's 2ε diameter (the reference: 12.5ε); ~9 min.
- ``sep``: 5 checkpoints (paper 30; 5 is one of the reference's own ensemble sizes, 1, 5 and 30)
  spread over ``cpu``'s 24 epochs (5, 10, 14, 19, 24), with the reference's 30 steps: 150
  passes per image instead of 900 (~28 min instead of ~2.8 h; ``smoke``'s 2-epoch run gives
  2 checkpoints).  The checkpoints' run costs one clean training of the source — the run
  ``clean_source`` trains, cached apart with its intermediate weights.

Deterministic from the crafting seed stream: the source models' seeds and the random start
and augmentation draws come from ``ctx.generator`` (same seed → same bytes on a device).
Batched (``batch_size`` images per PGD batch, 64 on a CPU, where smaller batches are faster)
and device-agnostic.

Examples: ``uebench run --attack tap``, ``uebench run --attack sep -o checkpoints=10``,
``uebench run --attack hypo -o steps=100``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from uebench.attacks.base import Attack, CraftContext
from uebench.compute import frozen_copy
from uebench.craft.solvers import CPU_PGD_CHUNK, pgd
from uebench.craft.source_models import checkpoint_epochs, clean_checkpoints, clean_source
from uebench.hookspecs import hookimpl
from uebench.noise import Noise, apply_noise, to_unit_float
from uebench.options import option
from uebench.train.augment import random_crop_flip
from uebench.train.loop import crop_generator

# protocols that run on 2 CPU cores: crafting defaults are scaled down there (module docstring)
CPU_PROTOCOLS = ("cpu", "cpu-full", "smoke")


def on_cpu_protocol(protocol) -> bool:
    return protocol.name in CPU_PROTOCOLS


def _validate(o) -> None:
    for key in ("steps", "batch_size", "checkpoints"):
        value = getattr(o, key, None)
        if value is not None and value < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")
    if o.step_size is not None and o.step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {o.step_size}")


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _pgd_pass(ctx: CraftContext, models, labels: torch.Tensor, delta: torch.Tensor, *, steps: int, step_size: float,
              batch_size: int, descend: bool, augment: bool, title: str) -> torch.Tensor:
    """δ after ``steps`` PGD steps on every training image (toward ``labels`` when descending),
    in batches, with a progress bar; ``augment``: a fresh random crop + flip at every step."""
    transform = None
    if augment:
        gen = crop_generator(ctx.generator, ctx.device)
        transform = lambda x: random_crop_flip(x, generator=gen, hflip=ctx.hflip)  # noqa: E731
    chunk = min(batch_size, CPU_PGD_CHUNK) if ctx.device.type == "cpu" else batch_size
    bar = ctx.reporter.task(title, total=math.ceil(len(labels) / chunk))
    for start in range(0, len(labels), chunk):
        s = slice(start, start + chunk)
        delta[s] = pgd(models, to_unit_float(ctx.x[s]), labels[s], delta[s], ctx.eps, step_size, steps, descend=descend,
                       device=ctx.device, precision=ctx.precision, channels_last=ctx.channels_last, augment=transform)
        bar.update(1)
    bar.close()
    return delta


@torch.no_grad()
def predictions(model, ctx: CraftContext, delta: torch.Tensor | None, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(the frozen ``model``'s class for every training image, with ``delta`` added when given;
    its mean cross-entropy against ``labels``)."""
    preds, loss = [], 0.0
    for start in range(0, len(labels), 256):
        s = slice(start, start + 256)
        x = to_unit_float(ctx.x[s])
        if delta is not None:
            x = apply_noise(x, delta[s])
        logits = model(_layout(x, ctx.channels_last)).float()
        preds.append(logits.argmax(1))
        loss += float(F.cross_entropy(logits, labels[s], reduction="sum"))
    return torch.cat(preds), loss / max(len(labels), 1)


def _rate(hits: torch.Tensor) -> float:
    return float(hits.float().mean()) if len(hits) else 0.0


class Hypocritical(Attack):
    """Hypocritical perturbations: error-minimizing PGD against a fixed clean-trained source (Tao et al., NeurIPS 2021)."""

    name = "hypo"

    @dataclass
    class Options:
        steps: int | None = option(None, help="PGD steps (paper: 100; the CPU protocols: 20)")
        step_size: float | None = option(None, help="PGD step on the [0,1] pixel scale (default ε/10, the reference's)")
        augment: bool = option(True, help="a fresh random crop + flip inside the loss at every step (the reference's default)")
        source: str | None = option(None, help="source model, any registered victim, trained on the clean set (protocol)")
        batch_size: int = option(256, help="images per PGD batch")

        def validate(self):
            _validate(self)

    def resolve(self, protocol, eps):
        o = self.options
        return replace(o, steps=o.steps if o.steps is not None else (20 if on_cpu_protocol(protocol) else 100),
                       step_size=o.step_size if o.step_size is not None else eps / 10,
                       source=o.source if o.source is not None else protocol.source)

    def craft(self, ctx: CraftContext) -> Noise:
        o = self.resolved(ctx)
        model, info = clean_source(ctx, o.source)
        frozen = frozen_copy(model, ctx.channels_last)
        delta = torch.zeros(ctx.x.shape, device=ctx.device)  # the reference starts at the clean image
        delta = _pgd_pass(ctx, frozen, ctx.y, delta, steps=o.steps, step_size=o.step_size, batch_size=o.batch_size,
                          descend=True, augment=o.augment, title="crafting Δs (hypo)")
        clean_pred, clean_loss = predictions(frozen, ctx, None, ctx.y)
        pred, loss = predictions(frozen, ctx, delta, ctx.y)
        meta = {"attack": self.name, "source": o.source, "source_model": info["key"],
                "source_loss_clean": clean_loss, "source_loss_poisoned": loss,
                "source_error_clean": _rate(clean_pred != ctx.y), "source_error_poisoned": _rate(pred != ctx.y)}
        return Noise(delta, "sample", ctx.eps, meta)


def tap_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """TAP's fixed label permutation: y → (y + 1) mod K (the reference's ``_label_map``)."""
    return (y + 1) % num_classes


class TargetedAdversarialPoison(Attack):
    """Targeted adversarial poisoning: class-targeted, augmented PGD against a clean-trained source (Fowl et al. 2021)."""

    name = "tap"

    @dataclass
    class Options:
        steps: int | None = option(None, help="PGD steps (paper: 250; the CPU protocols: 50)")
        step_size: float | None = option(None, help="PGD step on the [0,1] pixel scale (default ε/20, the reference's "
                                                    "τ = 0.05 of ε; the CPU protocols: ε/10)")
        augment: bool = option(True, help="a fresh random crop + flip inside the loss at every step (the reference's)")
        source: str | None = option(None, help="source model, any registered victim, trained on the clean set (protocol)")
        batch_size: int = option(256, help="images per PGD batch")

        def validate(self):
            _validate(self)

    def resolve(self, protocol, eps):
        o, cpu = self.options, on_cpu_protocol(protocol)
        return replace(o, steps=o.steps if o.steps is not None else (50 if cpu else 250),
                       step_size=o.step_size if o.step_size is not None else (eps / 10 if cpu else eps / 20),
                       source=o.source if o.source is not None else protocol.source)

    def craft(self, ctx: CraftContext) -> Noise:
        o = self.resolved(ctx)
        model, info = clean_source(ctx, o.source)
        frozen = frozen_copy(model, ctx.channels_last)
        target = tap_targets(ctx.y, ctx.num_classes)
        # the reference's "randn" start: ε·N(0, 1), clipped to the ball
        delta = (torch.randn(ctx.x.shape, generator=ctx.generator) * ctx.eps).clamp_(-ctx.eps, ctx.eps).to(ctx.device)
        delta = _pgd_pass(ctx, frozen, target, delta, steps=o.steps, step_size=o.step_size, batch_size=o.batch_size,
                          descend=True, augment=o.augment, title="crafting Δs (tap)")
        clean_pred, _ = predictions(frozen, ctx, None, target)
        pred, loss = predictions(frozen, ctx, delta, target)
        meta = {"attack": self.name, "source": o.source, "source_model": info["key"], "target": "(y + 1) mod K",
                "target_rate_clean": _rate(clean_pred == target), "target_rate_poisoned": _rate(pred == target),
                "target_loss_poisoned": loss,
                "source_error_clean": _rate(clean_pred != ctx.y), "source_error_poisoned": _rate(pred != ctx.y)}
        return Noise(delta, "sample", ctx.eps, meta)


def sep_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """SEP's target classes: g(y) = (y + ⌊K/2⌋) mod K (the paper's (y + 5) % 10, (y + 50) % 100)."""
    return (y + num_classes // 2) % num_classes


class SelfEnsembleProtection(Attack):
    """Self-ensemble protection: targeted PGD against checkpoints of one clean training run (Chen et al., ICLR 2023)."""

    name = "sep"

    @dataclass
    class Options:
        checkpoints: int | None = option(None, help="checkpoints of the one clean run, evenly spread over its epochs "
                                                    "(paper: 30; the CPU protocols: 5; at most the protocol's epochs)")
        steps: int = option(30, help="PGD steps (paper: 30)")
        step_size: float = option(1 / 255, help="PGD step on the [0,1] pixel scale (paper: 1/255)")
        augment: bool = option(False, help="a fresh random crop + flip inside the loss at every step (not in the paper)")
        source: str | None = option(None, help="the architecture of the checkpoints, any registered victim (protocol)")
        batch_size: int = option(256, help="images per PGD batch")

        def validate(self):
            _validate(self)

    def resolve(self, protocol, eps):
        o = self.options
        count = o.checkpoints if o.checkpoints is not None else (5 if on_cpu_protocol(protocol) else 30)
        return replace(o, checkpoints=min(count, protocol.epochs),
                       source=o.source if o.source is not None else protocol.source)

    def craft(self, ctx: CraftContext) -> Noise:
        o = self.resolved(ctx)
        epochs = checkpoint_epochs(ctx.protocol.epochs, min(o.checkpoints, ctx.protocol.epochs))
        models, info = clean_checkpoints(ctx, o.source, epochs)
        frozen = [frozen_copy(m, ctx.channels_last) for m in models]
        target = sep_targets(ctx.y, ctx.num_classes)
        delta = torch.zeros(ctx.x.shape, device=ctx.device)  # the reference starts at the clean image
        delta = _pgd_pass(ctx, frozen, target, delta, steps=o.steps, step_size=o.step_size, batch_size=o.batch_size,
                          descend=True, augment=o.augment, title=f"crafting Δs (sep, {len(frozen)} checkpoints)")
        clean_hits, hits = [], []
        for m in frozen:
            clean_hits.append(predictions(m, ctx, None, target)[0] == target)
            hits.append(predictions(m, ctx, delta, target)[0] == target)
        every = torch.stack(hits).all(0)
        meta = {"attack": self.name, "source": o.source, "source_checkpoints": info["key"], "checkpoint_epochs": epochs,
                "target": "(y + K//2) mod K",
                "target_rate_clean": [_rate(h) for h in clean_hits], "target_rate_poisoned": [_rate(h) for h in hits],
                "target_rate_all_checkpoints": _rate(every)}
        return Noise(delta, "sample", ctx.eps, meta)


@hookimpl
def register_attacks(register):
    register(Hypocritical)
    register(TargetedAdversarialPoison)
    register(SelfEnsembleProtection)
