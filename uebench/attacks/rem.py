"""Robust error-minimizing noise (REM) — Fu, He, Liu, Shen, Tao, "Robust Unlearnable Examples:
Protecting Data Against Adversarial Learning", ICLR 2022.

https://openreview.net/forum?id=baUQQPwQiAg (arXiv 2203.14533; code: github.com/fshp971/
robust-unlearnable-examples).  Norm: L∞ (δ_u within ε; the adversary's δ_a within ρ).

Error-minimizing noise (``errmin-pgd``) stops working under adversarial training: it minimizes
the *standard* training loss, and a victim that trains on adversarial examples never sees that
loss.  REM minimizes the adversarial training loss instead, with an expectation over the
training augmentations t (random crop + flip), since the victim trains on those too::

    min_θ  Σ_i  min_{‖δ_u,i‖∞ ≤ ε}  E_t  max_{‖δ_a‖∞ ≤ ρ}  L(f_θ(t(x_i + δ_u,i) + δ_a), y_i)

Solved with the min-min loop of Algorithm 1 (``uebench.craft.solvers.MinMinCrafter``, shared
with ``errmin-pgd``) and a third inner solver:

- δ_u's PGD (``steps`` K_u of ``step_size`` α_u, descending, warm-started from the last pass's δ_u
  as in Algorithm 1): each step draws J = ``samples`` augmentations t_j of x' = clip(x + δ_u),
  finds each one's worst case δ_a by ``adv_steps`` K_a steps of ascending PGD of ``adv_step_size``
  α_a from a uniform random start in the ρ-ball, and steps δ_u against the sign of the gradient of
  the loss L(f(t_j(x') + δ_a)), averaged over the J views, with δ_a held fixed (Danskin's theorem, as the reference code
  does).  ``rho=0`` drops the inner max; ``rho=0, augment=none, samples=1`` is errmin-pgd's
  update, byte for byte (``tests/test_rem.py``).
- θ's M SGD steps train on the adversarial example of an augmented x + δ_u (the same ρ-PGD, the
  source in eval mode as in the reference code): the source is adversarially trained, so δ_u
  learns to minimize a loss that adversarial training cannot raise.
- Stopping: the paper trains the source for a fixed budget (5000 steps of 128 images, 12.8
  epochs of CIFAR-10) and then computes every δ_u once more with the final model; it has no λ.
  Here: ``max_iters`` outer iterations, each M θ-steps then a full δ_u pass (the last pass is
  the paper's final one), ``stop_error`` λ = 0 (off) by default.  The history's error is the
  source's on x + δ_u without δ_a.

Options (None = the default for the protocol; those of ``errmin-pgd`` keep their meaning):

==================  ==========  =============  ==========================================================
option              paper       cpu, cpu-full  why the CPU value
==================  ==========  =============  ==========================================================
``rho`` ρ_a         4/255       4/255
``steps`` K_u       10          10
``step_size`` α_u   ε/5         ε/5            (paper: 1.6/255 at ε = 8/255)
``adv_steps`` K_a   10          5              a δ_u step costs J·(K_a + 1) forward/backward passes an
                                               image; 5 steps of ρ/5 from a random start still reach
                                               every point of the ρ-ball
``adv_step_size``   ρ/5         ρ/5            (paper: 0.8/255)
``samples`` J       5           2              the same cost; J = 2 keeps an expectation over augmentations
``augment``         crop-flip   crop-flip      ``crop`` for datasets never mirrored (SVHN), ``none`` off
``model_steps`` M   100         protocol (40)  paper: M·512 ≈ one epoch of 50k per δ_u pass, what the
                                               paper's schedule (each batch's δ_u updated before its θ
                                               step) costs; the protocol's M = 10 would pass over δ_u
                                               10× as often
``max_iters``       13          6              the paper's θ budget, ≈ 12.8 epochs: 13 × 100 × 512 on
                                               50k; 6 × 40 × 256 on the cpu protocol's 5k
``stop_error`` λ    0 (off)     0 (off)        the paper stops on its θ budget alone
==================  ==========  =============  ==========================================================

``smoke``: K_u = K_a = J = 2 and the protocol's M and max_iters (tests, seconds).  ``source``,
``source_lr`` (paper 0.1) and ``batch_size`` come from the protocol as for ``errmin-pgd``.  Not
reproduced: the paper's learning-rate decay (×0.1 at steps 2000 and 4000; the loop keeps the
protocol's constant rate) and its restart of each δ_u from uniform noise at every update (the
loop warm-starts, as Algorithm 1 does).  Cost of a pass: K_u·J·(K_a + 1) forward/backward passes
an image (paper 550, cpu 120; errmin-pgd's Δs: 20); θ's steps (K_a + 1)× standard ones.  Measured
on 2 shared CPU cores (cnn-small, 512 images): a cpu-protocol pass 4.4× errmin-pgd Δs's, θ's M
steps 4.7× — about 25-30 min for the 6 iterations of a cpu cell, against ≈ 4 min for errmin-pgd
Δs (an estimate from those ratios and the board's errmin-pgd craft times, not a timed cell).

The paper's noise is sample-wise; ``form=class`` runs the same solver through the loop's
class-wise pass (δ_k the mean of its class's updates, on ``class_subset``) — not in the paper.
The augmentation draws (crops, flips, δ_a's random starts) come from the cell's craft stream.

Shapes: δ is N×C×H×W (sample) or K×C×H×W (class), float32 on the [0, 1] pixel scale.

Example: ``uebench run --attack rem --defense adv-train -o attack.rho=4/255 -o defense.eps=4/255``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch

from uebench.attacks.errmin_pgd import ErrMinPGD
from uebench.craft.solvers import MinMinCrafter, pgd
from uebench.hookspecs import hookimpl
from uebench.noise import apply_noise
from uebench.options import display_value, option
from uebench.train.augment import random_crop_flip
from uebench.train.loop import crop_generator

AUGMENTS = ("crop-flip", "crop", "none")
# the paper's CIFAR-10 settings (Fu et al. 2022, §5 and scripts/cifar10/gen_rem.sh); step sizes as
# fractions of their radius: ε/5 = 1.6/255 for δ_u, ρ/5 = 0.8/255 for δ_a
PAPER = {"steps": 10, "step_fraction": 1 / 5, "rho": 4 / 255, "adv_steps": 10, "adv_step_fraction": 1 / 5, "samples": 5,
         "stop_error": 0.0}
# protocol name → the settings scaled for it (module docstring); a protocol not named runs the
# paper's inner settings with its own M and max_iters
SCALE = {
    "paper": {"model_steps": 100, "max_iters": 13},
    "cpu": {"adv_steps": 5, "samples": 2, "max_iters": 6},
    "cpu-full": {"adv_steps": 5, "samples": 2, "max_iters": 6},
    "smoke": {"steps": 2, "adv_steps": 2, "samples": 2},
}


class RemCrafter(MinMinCrafter):
    """Algorithm 1's loop with REM's inner solver (min over δ_u of E_t max over δ_a) and an
    adversarially trained source."""

    def __init__(self, o, ctx):
        super().__init__(o, ctx)
        # crops, flips and δ_a's random starts: the craft stream (a generator on the device off the CPU)
        self.draws = crop_generator(ctx.generator, ctx.device)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """One random training augmentation t per image (differentiable in x)."""
        if self.o.augment == "none":
            return x
        return random_crop_flip(x, generator=self.draws, hflip=self.o.augment == "crop-flip" and self.ctx.hflip)

    def adversary(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + δ_a, the inner max: ``adv_steps`` of ascending ρ-PGD on ``model`` from a uniform
        random start in the ρ-ball (detached, in [0, 1]); x itself when ρ = 0."""
        o, ctx = self.o, self.ctx
        if o.rho == 0:
            return x
        start = (torch.rand(x.shape, generator=self.draws, device=self.draws.device).to(x.device) * 2 - 1) * o.rho
        delta = pgd(model, x, y, start, o.rho, o.adv_step_size, o.adv_steps, descend=False, device=ctx.device,
                    precision=ctx.precision, channels_last=ctx.channels_last)
        return apply_noise(x, delta).detach()

    def robust_view(self, x_u: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The J·B images δ_u's loss is taken on, from x' = clip(x + δ_u): t_j(x') + δ_a,j for J
        augmentations of each image, δ_a,j held fixed (its value is the worst case, its gradient
        the identity: Danskin), so ∇ reaches δ_u through t_j alone.  Copy j of image i is row
        j·B + i, its label ``labels[j·B + i]`` (``y.repeat(J)``)."""
        o = self.o
        x_t = self.augment(x_u.repeat(o.samples, 1, 1, 1) if o.samples > 1 else x_u)
        if o.rho == 0:
            return x_t
        x_a = self.adversary(self.frozen, x_t.detach(), labels)
        return x_a + (x_t - x_t.detach())

    def solve(self, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """K_u steps of x' ← Π_ε(x' − α_u·sign(∇ₓ' E_t max_δa L(f(t(x') + δ_a), y))) from x' = clip(x + δ_u)."""
        ctx, o = self.ctx, self.o
        if o.rho == 0 and o.augment == "none" and o.samples == 1:  # no inner max, no expectation: errmin-pgd's update
            return super().solve(x, y, delta, mask)
        labels = y.repeat(o.samples)
        return pgd(self.frozen, x, labels, delta, ctx.eps, o.step_size, o.steps, descend=True, device=ctx.device,
                   precision=ctx.precision, channels_last=ctx.channels_last, mask=mask,
                   augment=partial(self.robust_view, labels=labels))

    def train_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """θ trains on an adversarial example (radius ρ, the source in eval mode) of an augmented x + δ_u."""
        x = self.augment(x)
        if self.o.rho == 0:
            return x
        self.model.eval()
        try:
            return self.adversary(self.model, x, y)
        finally:
            self.model.train()


class REM(ErrMinPGD):
    """Robust error-minimizing noise: error-minimizing against adversarial training (Fu et al. 2022)."""

    name = "rem"
    revision = 1
    # the inner max's PGD does not exist at rho=0: its steps and step size are then None (not in the key or the row)
    inapplicable_when_none = (*ErrMinPGD.inapplicable_when_none, "adv_steps", "adv_step_size")

    @dataclass
    class Options(ErrMinPGD.Options):
        # errmin-pgd's options whose meaning or default differs here (the rest keep errmin-pgd's help)
        steps: int | None = option(None, help="K_u, PGD steps of δ_u per pass (paper: 10)")
        step_size: float | None = option(None, help="α_u, PGD step of δ_u on the [0,1] pixel scale (paper: ε/5)")
        stop_error: float | None = option(None, help="λ, stop when the source model's error on x+δ_u < λ "
                                                     "(paper: none, a fixed θ budget: 0 = off)")
        model_steps: int | None = option(None, help="M, adversarial SGD steps of the source between passes "
                                                    "(paper protocol: 100, ≈ one epoch; else the protocol's)")
        max_iters: int | None = option(None, help="outer iterations, REM's fixed θ budget of M·max_iters steps "
                                                  "(paper: 13, cpu: 6, ≈ 12.8 epochs; else the protocol's)")
        rho: float | None = option(None, help="ρ_a, L∞ radius of the adversary δ_a REM's noise must survive, written "
                                              "4/255 or 0.0157 (paper: 4/255)")
        adv_steps: int | None = option(None, help="K_a, PGD steps of the inner max over δ_a (paper: 10; cpu: 5)")
        adv_step_size: float | None = option(None, help="α_a, PGD step of δ_a on the [0,1] pixel scale (paper: ρ/5)")
        samples: int | None = option(None, help="J, augmentations drawn per δ_u step for the expectation (paper: 5; cpu: 2)")
        augment: str = option("crop-flip", help="the augmentations t the expectation is over: crop-flip (paper), "
                                                "crop (datasets never mirrored, e.g. svhn) or none", choices=AUGMENTS)

        def validate(self):
            super().validate()
            if self.rho is not None and not 0 <= self.rho <= 1:
                raise ValueError(f"rho must be in [0, 1], got {display_value(self.rho)}")
            for key in ("adv_steps", "samples"):
                value = getattr(self, key)
                if value is not None and value < 1:
                    raise ValueError(f"{key} must be >= 1, got {value}")
            if self.adv_step_size is not None and self.adv_step_size <= 0:
                raise ValueError(f"adv_step_size must be > 0, got {display_value(self.adv_step_size)}")
            if self.rho == 0 and (self.adv_steps is not None or self.adv_step_size is not None):
                raise ValueError("adv_steps and adv_step_size set the inner max over δ_a, which rho=0 turns off")

    def resolve(self, protocol, eps):
        o = self.options
        scale = {**PAPER, **SCALE.get(protocol.name, {})}
        loop = super().resolve(protocol, eps)  # errmin-pgd's: the protocol's source, lr, batch size, M, max_iters

        def pick(key, default):
            value = getattr(o, key)
            return value if value is not None else default

        rho = pick("rho", scale["rho"])
        adversary = rho > 0
        return replace(
            loop,
            steps=pick("steps", scale["steps"]),
            step_size=pick("step_size", eps * scale["step_fraction"]),
            stop_error=pick("stop_error", scale["stop_error"]),
            model_steps=pick("model_steps", scale.get("model_steps", loop.model_steps)),
            max_iters=pick("max_iters", scale.get("max_iters", loop.max_iters)),
            rho=rho,
            adv_steps=pick("adv_steps", scale["adv_steps"]) if adversary else None,
            adv_step_size=pick("adv_step_size", rho * scale["adv_step_fraction"]) if adversary else None,
            samples=pick("samples", scale["samples"]),
        )

    def craft(self, ctx):
        return RemCrafter(self.resolved(ctx), ctx).run(self.name)


@hookimpl
def register_attacks(register):
    register(REM)
