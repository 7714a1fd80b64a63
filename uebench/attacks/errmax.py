"""Error-maximizing (adversarial) noise — the seed paper's second baseline (Huang et al. 2021, Fig. 1).

Both attack a source model first trained on the *clean* training set (cached as an artifact,
``uebench.craft.source_models``):

- ``errmax-pgd`` (Δs): sample-wise PGD that *ascends* the loss (Madry et al. 2018,
  https://arxiv.org/abs/1706.06083): uniform random start in the ε-ball, ``steps`` = 20 steps of
  ``step_size`` = ε/10 (the paper's PGD-20), L∞.  Shapes: δ N×C×H×W.
- ``errmax-universal`` (Δc): one universal adversarial perturbation per class (Moosavi-Dezfooli
  et al., CVPR 2017, https://arxiv.org/abs/1610.08401), crafted on a stratified ``class_subset``
  (20%) of the training set.  For class k, v_k starts at 0; each pass walks the class's images
  in batches, and for the images x + v_k still classified correctly, DeepFool (L∞ variant: the
  step to the nearest linearised boundary, ``overshoot`` 0.02) gives each one's minimal extra
  perturbation r_i; v_k ← Π_ε(v_k + mean_i r_i) — the batched form of the paper's per-image
  update — until the fooling rate on the class reaches ``fooling_rate`` (paper: 1 − δ = 0.8) or
  ``max_passes`` passes.  Shapes: δ K×C×H×W.

Examples: ``uebench run --attack errmax-pgd``, ``uebench run --attack errmax-universal``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from uebench.attacks.base import Attack, CraftContext
from uebench.compute import frozen_copy
from uebench.craft.solvers import CPU_PGD_CHUNK, pgd
from uebench.craft.source_models import clean_source
from uebench.hookspecs import hookimpl
from uebench.noise import Noise, apply_noise, to_unit_float
from uebench.options import option
from uebench.protocols import stratified_subset


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class ErrMaxPGD(Attack):
    """Error-maximizing sample-wise noise: PGD-20 against a source model trained on clean data (Huang et al. 2021 baseline)."""

    name = "errmax-pgd"

    @dataclass
    class Options:
        steps: int = option(20, help="PGD steps (paper: 20)")
        step_size: float | None = option(None, help="PGD step on the [0,1] pixel scale (default ε/10)")
        source: str | None = option(None, help="source model, any registered victim, trained on the clean set (protocol)")
        batch_size: int = option(256, help="images per PGD batch")

        def validate(self):
            if self.steps < 1 or self.batch_size < 1:
                raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
            if self.step_size is not None and self.step_size <= 0:
                raise ValueError(f"step_size must be > 0, got {self.step_size}")

    def resolve(self, protocol, eps):
        o = self.options
        return replace(o, step_size=o.step_size if o.step_size is not None else eps / 10,
                       source=o.source if o.source is not None else protocol.source)

    def craft(self, ctx: CraftContext) -> Noise:
        o = self.resolved(ctx)
        model, info = clean_source(ctx, o.source)
        frozen = frozen_copy(model, ctx.channels_last)
        delta = ((torch.rand(ctx.x.shape, generator=ctx.generator) * 2 - 1) * ctx.eps).to(ctx.device)
        chunk = min(o.batch_size, CPU_PGD_CHUNK) if ctx.device.type == "cpu" else o.batch_size
        bar = ctx.reporter.task("crafting Δs (errmax-pgd)", total=math.ceil(len(ctx.y) / chunk))
        for start in range(0, len(ctx.y), chunk):
            s = slice(start, start + chunk)
            delta[s] = pgd(frozen, to_unit_float(ctx.x[s]), ctx.y[s], delta[s], ctx.eps, o.step_size, o.steps, descend=False,
                           device=ctx.device, precision=ctx.precision, channels_last=ctx.channels_last)
            bar.update(1)
        bar.close()
        meta = {"attack": self.name, "source": o.source, "source_model": info["key"],
                "source_error_clean": _error(frozen, ctx, None), "source_error_poisoned": _error(frozen, ctx, delta)}
        return Noise(delta, "sample", ctx.eps, meta)


@torch.no_grad()
def _error(model, ctx: CraftContext, delta: torch.Tensor | None, index: torch.Tensor | None = None) -> float:
    """The frozen source's error on the training images (with ``delta`` added when given)."""
    index = torch.arange(len(ctx.y), device=ctx.y.device) if index is None else index
    wrong = 0
    for start in range(0, len(index), 256):
        i = index[start : start + 256]
        x = to_unit_float(ctx.x[i])
        if delta is not None:
            x = apply_noise(x, delta[i] if len(delta) == len(ctx.y) else delta[ctx.y[i]])
        wrong += int((model(_layout(x, ctx.channels_last)).argmax(1) != ctx.y[i]).sum())
    return wrong / max(len(index), 1)


def deepfool_linf(model, x: torch.Tensor, y: torch.Tensor, num_classes: int, overshoot: float = 0.02,
                  steps: int = 10) -> torch.Tensor:
    """DeepFool's minimal L∞ perturbation of each image of ``x`` across its nearest linearised
    decision boundary (Moosavi-Dezfooli et al. 2016), batched; images already misclassified get 0."""
    rows = torch.arange(len(y), device=x.device)
    r_total = torch.zeros_like(x)
    for _ in range(steps):
        x_adv = (x + (1 + overshoot) * r_total).clamp(0, 1).requires_grad_(True)
        logits = model(x_adv).float()
        active = logits.argmax(1) == y
        if not bool(active.any()):
            break
        grads = torch.stack([torch.autograd.grad(logits[:, j].sum(), x_adv, retain_graph=j < num_classes - 1)[0]
                             for j in range(num_classes)], 1)  # N×K×C×H×W
        f = (logits - logits[rows, y][:, None]).detach()
        w = grads - grads[rows, y][:, None]
        dist = f.abs() / (w.flatten(2).abs().sum(2) + 1e-8)  # the L∞ distance to boundary j (dual norm: L1)
        dist[rows, y] = math.inf
        nearest = dist.argmin(1)
        step = (dist[rows, nearest] + 1e-4).view(-1, 1, 1, 1) * w[rows, nearest].sign()
        r_total = r_total + step * active.view(-1, 1, 1, 1).to(step.dtype)
    return (1 + overshoot) * r_total


class ErrMaxUniversal(Attack):
    """Error-maximizing class-wise noise: a universal adversarial perturbation per class (Moosavi-Dezfooli et al. 2017)."""

    name = "errmax-universal"

    @dataclass
    class Options:
        class_subset: float = option(0.2, help="fraction of the training set the perturbations are crafted on (paper: 0.2)")
        fooling_rate: float = option(0.8, help="stop a class once this fraction of its images is misclassified "
                                               "(paper: 1 − δ = 0.8)")
        max_passes: int = option(10, help="cap on passes over a class's images")
        overshoot: float = option(0.02, help="DeepFool's overshoot")
        deepfool_steps: int = option(10, help="DeepFool iterations per batch")
        batch_size: int = option(64, help="images per DeepFool batch (memory grows with batch × classes)")
        source: str | None = option(None, help="source model, any registered victim, trained on the clean set (protocol)")

        def validate(self):
            if not 0 < self.class_subset <= 1:
                raise ValueError(f"class_subset must be in (0, 1], got {self.class_subset}")
            if not 0 < self.fooling_rate <= 1:
                raise ValueError(f"fooling_rate must be in (0, 1], got {self.fooling_rate}")
            for key in ("max_passes", "deepfool_steps", "batch_size"):
                if getattr(self, key) < 1:
                    raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")

    def resolve(self, protocol, eps):
        o = self.options
        return replace(o, source=o.source if o.source is not None else protocol.source)

    def craft(self, ctx: CraftContext) -> Noise:
        o = self.resolved(ctx)
        model, info = clean_source(ctx, o.source)
        frozen = frozen_copy(model, ctx.channels_last)
        per_class = max(1, int(round(o.class_subset * len(ctx.y) / ctx.num_classes)))
        per_class = min(per_class, int(torch.bincount(ctx.y.cpu(), minlength=ctx.num_classes).min()))
        subset = stratified_subset(ctx.y.cpu(), per_class, ctx.seed).to(ctx.device)
        delta = torch.zeros(ctx.num_classes, *ctx.x.shape[1:], device=ctx.device)
        rates, bar = [], ctx.reporter.task("crafting Δc (errmax-universal)", total=ctx.num_classes)
        for k in range(ctx.num_classes):
            members = subset[ctx.y[subset] == k]
            for _ in range(o.max_passes):
                if 1 - _error_miss(frozen, ctx, members, delta[k]) >= o.fooling_rate:
                    break
                order = members[torch.randperm(len(members), generator=ctx.generator).to(ctx.device)]
                for start in range(0, len(order), o.batch_size):
                    i = order[start : start + o.batch_size]
                    x = apply_noise(to_unit_float(ctx.x[i]), delta[k])
                    r = deepfool_linf(frozen, _layout(x, ctx.channels_last), ctx.y[i], ctx.num_classes, o.overshoot,
                                      o.deepfool_steps)
                    still = (r.flatten(1).abs().sum(1) > 0)
                    if bool(still.any()):
                        delta[k] = (delta[k] + r[still].mean(0)).clamp_(-ctx.eps, ctx.eps)
            rates.append(1 - _error_miss(frozen, ctx, members, delta[k]))
            bar.update(1, fooling=rates[-1])
        bar.close()
        meta = {"attack": self.name, "source": o.source, "source_model": info["key"], "fooling_rates": rates,
                "source_error_clean": _error(frozen, ctx, None, subset),
                "source_error_poisoned": _error(frozen, ctx, delta, subset)}
        return Noise(delta, "class", ctx.eps, meta)


@torch.no_grad()
def _error_miss(model, ctx: CraftContext, members: torch.Tensor, v: torch.Tensor) -> float:
    """1 − fooling rate: the fraction of ``members`` still classified correctly with ``v`` added."""
    if not len(members):
        return 0.0
    x = apply_noise(to_unit_float(ctx.x[members]), v)
    return float((model(_layout(x, ctx.channels_last)).argmax(1) == ctx.y[members]).float().mean())


@hookimpl
def register_attacks(register):
    register(ErrMaxPGD)
    register(ErrMaxUniversal)
