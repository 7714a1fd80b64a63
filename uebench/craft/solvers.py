"""The solvers several attacks share: a batched L∞ PGD (descending for error-minimizing noise,
ascending for error-maximizing) and the min-min loop of Huang et al. 2021, Algorithm 1
(:class:`MinMinCrafter`: M SGD steps on the source model, then a PGD pass over δ, until the
source model's error on x + δ is below λ).  ``errmin-pgd``, ``errmin-adam`` and ``rem`` run the
loop, ``errmax-pgd`` and ``errmax-universal`` the PGD; later attacks import them from here.

A variant of the loop supplies its own parts by subclassing :class:`MinMinCrafter`: ``solve``,
the δ update of a batch with θ frozen (Adam for ``errmin-adam``; for ``rem``, PGD through an
inner max), and ``train_input``, what θ's SGD step trains on (x + δ itself in Algorithm 1; for
``rem``, an adversarial example of an augmented x + δ).  The loop, its stopping rule and its
bookkeeping stay here, once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from uebench.attacks.base import CraftContext
from uebench.attacks.patches import PatchPlacer, paste_everywhere
from uebench.compute import autocast, frozen_copy
from uebench.noise import Noise, apply_noise, to_unit_float
from uebench.protocols import stratified_subset
from uebench.train.step import SGDStep

# On CPU, one fwd+bwd over 512 images is ~1.7-2x slower per image than over 64 (allocator and
# cache churn on big activations), so PGD runs in chunks there.  Measured on 2 cores, BN-folded,
# channels_last, image·steps/s at chunk 32/64/128/256: ToyModel 571/499/422/398 and
# 630/719/581/435 (two runs), cnn-small 1231/1332/1321/1256.  In eval mode each sample's
# gradient sign is independent of the others in its batch, so chunking changes nothing but
# float rounding.
CPU_PGD_CHUNK = 64

def pgd(model, x, y, delta, eps: float, step_size: float, steps: int, *, descend: bool, device, precision: str = "fp32",
        channels_last: bool = False, mask: torch.Tensor | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``steps`` signed-gradient steps on δ from x' = clip(x + δ), each projected to the ε-ball:
    x' ← Π_ε(x' ∓ α·sign(∇ₓL(f(x'), y))) — *descending* the loss for error-minimizing noise (or
    toward a target label ``y``), ascending it for error-maximizing (adversarial) noise.
    ``model`` is frozen (eval mode), or a list/tuple of frozen models (an ensemble: L is the sum
    of their losses, so the step follows the sign of their mean gradient; one model's graph is
    held at a time).  ``augment``, when given, is a differentiable batch transform drawn afresh
    at every step (random crop + flip): L is then L(f(augment(x')), y) and its gradient flows
    through the transform to δ.  ``mask`` (1 where δ may be non-zero, e.g. a patch) is applied
    after every projection."""
    # only the gradient's sign is used; scaling keeps fp16 gradients from underflowing to 0
    scale = 1024.0 if precision == "fp16" else 1.0
    sign = -1.0 if descend else 1.0
    models = tuple(model) if isinstance(model, (list, tuple)) else (model,)
    for _ in range(steps):
        x_adv = apply_noise(x, delta)
        x_adv = (x_adv.contiguous(memory_format=torch.channels_last) if channels_last else x_adv).requires_grad_(True)
        x_in = augment(x_adv) if augment is not None else x_adv
        grad = None
        for i, member in enumerate(models):
            with autocast(device, precision):
                loss = F.cross_entropy(member(x_in).float(), y)
            # the transform's graph is shared by the members: kept until the last one is through
            (g,) = torch.autograd.grad(loss * scale, x_adv, retain_graph=augment is not None and i < len(models) - 1)
            grad = g if grad is None else grad + g
        delta = (x_adv.detach() + sign * step_size * grad.sign() - x).clamp_(-eps, eps)
        if mask is not None:
            delta = delta * mask
    return delta


class MinMinCrafter:
    """One run of Algorithm 1; kept as an object so each phase reads as its own method."""

    def __init__(self, o, ctx: CraftContext):  # o: errmin-pgd's resolved options (or an attack's with the same fields)
        self.o, self.ctx = o, ctx
        self.model = ctx.build_model(o.source)
        self.step = SGDStep(self.model, o.source_lr, device_type=ctx.device.type, precision=ctx.precision)
        # θ trains on the whole set (as in the reference code); δ is updated and λ measured on
        # ``self.index``: everything for Δs, a stratified ``class_subset`` for Δc
        if o.form == "class":
            per_class = max(1, int(round(o.class_subset * len(ctx.y) / ctx.num_classes)))
            counts = torch.bincount(ctx.y.cpu(), minlength=ctx.num_classes)
            per_class = min(per_class, int(counts.min()))
            self.index = stratified_subset(ctx.y.cpu(), per_class, ctx.seed).to(ctx.device)
            rows = ctx.num_classes
        else:
            self.index = torch.arange(len(ctx.y), device=ctx.device)
            rows = len(ctx.y)
        channels, height, width = ctx.x.shape[1:]
        self.placer = PatchPlacer(o.patch, height, width, ctx.generator) if o.patch is not None else None
        shape = (rows, channels, o.patch, o.patch) if o.patch is not None else (rows, channels, height, width)
        # the reference code starts from uniform noise in [-ε, ε]
        self.delta = ((torch.rand(shape, generator=ctx.generator) * 2 - 1) * ctx.eps).to(ctx.device)
        self._order = torch.empty(0, dtype=torch.long, device=ctx.device)
        self.frozen: torch.nn.Module | None = None  # θ as of the last ``freeze()``
        self._cursor = 0

    # -- helpers -----------------------------------------------------------------------------
    def _layout(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.ctx.channels_last else x

    def _delta_of(self, sample: torch.Tensor) -> torch.Tensor:
        """The δ rows of the training images in ``sample`` (its class's δ for Δc)."""
        return self.delta[self.ctx.y[sample]] if self.o.form == "class" else self.delta[sample]

    def _noise_of(self, sample: torch.Tensor) -> tuple[torch.Tensor, tuple | None]:
        """The full-size δ of each image in ``sample``; a patch lands at a fresh random place
        (returned as ``where``, None without patches)."""
        rows = self._delta_of(sample)
        return self.placer.place(rows) if self.placer is not None else (rows, None)

    def _next_batch(self) -> torch.Tensor:
        """Images of the next model-step batch: shuffled sweeps over the whole set, across iterations."""
        if self._cursor >= len(self._order):
            self._order = torch.randperm(len(self.ctx.y), generator=self.ctx.generator).to(self.ctx.device)
            self._cursor = 0
        sample = self._order[self._cursor : self._cursor + self.o.batch_size]
        self._cursor += self.o.batch_size
        return sample

    def freeze(self):
        """Snapshot θ for a perturbation pass: eval mode, BatchNorm folded (see ``frozen_copy``)."""
        self.frozen = frozen_copy(self.model, self.ctx.channels_last)

    # -- the two phases ----------------------------------------------------------------------
    def model_steps(self) -> float:
        """M SGD steps of θ on (``train_input(x + δ)``, y); returns the mean loss."""
        ctx, total = self.ctx, 0.0
        self.model.train()
        for _ in range(self.o.model_steps):
            sample = self._next_batch()
            x = self.train_input(apply_noise(to_unit_float(ctx.x[sample]), self._noise_of(sample)[0]), ctx.y[sample])
            with autocast(ctx.device, ctx.precision):
                loss = F.cross_entropy(self.model(self._layout(x)).float(), ctx.y[sample])
            self.step(loss)
            total += loss.item()
        return total / self.o.model_steps

    def train_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What θ's SGD step trains on, given a batch x + δ (``self.model`` in train mode): x + δ
        itself in Algorithm 1; a variant may transform it (``rem``: an adversarial example of an
        augmented x + δ)."""
        return x

    def inner(self, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The inner minimisation over δ for a batch, θ frozen; returns the new δ (zero outside
        ``mask`` where given).  Chunked on CPU: each sample's update is independent of the others
        in its batch (eval mode, per-sample loss terms), so chunking changes nothing but float
        rounding."""
        if self.frozen is None:
            self.freeze()
        chunk = CPU_PGD_CHUNK if self.ctx.device.type == "cpu" else len(y)
        if len(y) > chunk:
            return torch.cat([self.solve(x[s : s + chunk], y[s : s + chunk], delta[s : s + chunk],
                                         None if mask is None else mask[s : s + chunk])
                              for s in range(0, len(y), chunk)])
        return self.solve(x, y, delta, mask)

    def solve(self, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Algorithm 1's solver: T steps of x' ← Π_ε(x' − α·sign(∇ₓL(f(x'), y))) from x' = clip(x + δ)."""
        ctx, o = self.ctx, self.o
        return pgd(self.frozen, x, y, delta, ctx.eps, o.step_size, o.steps, descend=True, device=ctx.device,
                   precision=ctx.precision, channels_last=ctx.channels_last, mask=mask)

    @torch.no_grad()
    def _correct(self, x, y, delta) -> int:
        with autocast(self.ctx.device, self.ctx.precision):
            logits = self.frozen(self._layout(apply_noise(x, delta)))
        return int((logits.argmax(1) == y).sum())

    def perturbation_pass(self) -> float:
        """Update δ over the whole crafting set with the model fixed; returns the error on x+δ.

        Sample-wise: each batch is measured right after its PGD steps, while it is in memory —
        the model is frozen for the pass, so this equals the reference code's separate
        evaluation pass but reads and stages the data once instead of twice.
        Class-wise: δ_k moves after every batch, so the error needs a pass with the final δ; and
        since the batches' order and make-up then matter, each pass walks the subset in a fresh
        random order, as the reference code's shuffled loader does.
        """
        ctx, o = self.ctx, self.o
        self.freeze()
        correct = 0
        walk = self.index
        if o.form == "class":
            walk = self.index[torch.randperm(len(self.index), generator=ctx.generator).to(self.index.device)]
        # a pass can take minutes (T = 200 Adam steps on a CPU): its own bar, removed when it ends
        bar = ctx.reporter.task("  perturbation pass (batches)", total=math.ceil(len(walk) / o.batch_size), transient=True)
        for start in range(0, len(walk), o.batch_size):
            sample = walk[start : start + o.batch_size]
            x, y = to_unit_float(ctx.x[sample]), ctx.y[sample]
            delta, where = self._noise_of(sample)
            mask = None if where is None else PatchPlacer.mask(delta.shape, where, delta.device)
            placed = self.inner(x, y, delta, mask)
            eta = placed if where is None else PatchPlacer.take(placed, where)
            if o.form == "sample":
                self.delta[sample] = eta
                correct += self._correct(x, y, placed)
            else:  # δ_k ← clip(mean of the batch's class-k etas)
                sums = torch.zeros_like(self.delta).index_add_(0, y, eta)
                counts = torch.bincount(y, minlength=ctx.num_classes)
                present = counts > 0
                self.delta[present] = (sums[present] / counts[present].view(-1, 1, 1, 1)).clamp_(-ctx.eps, ctx.eps)
            bar.update(1)
        bar.close()
        if o.form == "class":
            for start in range(0, len(self.index), o.batch_size):
                sample = self.index[start : start + o.batch_size]
                correct += self._correct(to_unit_float(ctx.x[sample]), ctx.y[sample], self._noise_of(sample)[0])
        return 1.0 - correct / len(self.index)

    def run(self, attack: str = "errmin-pgd") -> Noise:
        o, ctx = self.o, self.ctx
        history, start = [], time.perf_counter()
        bar = ctx.reporter.task(f"crafting Δ{o.form[0]} ({attack})", total=o.max_iters)
        stop_reason, error = "max_iters", math.nan
        for iteration in range(1, o.max_iters + 1):
            loss = self.model_steps()
            error = self.perturbation_pass()
            history.append({"iteration": iteration, "model_loss": loss, "error": error, "seconds": time.perf_counter() - start})
            bar.update(1, error=error, **{"λ": o.stop_error})
            if error < o.stop_error:
                stop_reason = "stop_error"
                break
        bar.close()
        meta = {
            "attack": attack,
            "stop_reason": stop_reason,
            "iterations": len(history),
            "final_error": error,
            "history": history,
            "source": o.source,
        }
        if self.placer is None:
            return Noise(self.delta.detach().clone(), o.form, ctx.eps, meta)
        # released: each image's patch pasted at one random place (a sample-wise noise)
        meta.update(patch=o.patch, crafted_form=o.form)
        full = paste_everywhere(self.delta.detach(), ctx.y, o.form, *ctx.x.shape[2:], ctx.generator)
        return Noise(full, "sample", ctx.eps, meta)
