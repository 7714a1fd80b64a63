"""PGD adversarial training (Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083).

Each batch is replaced by its L∞ PGD adversarial examples (uniform random start in the ε-ball,
``steps`` ascent steps of ``step_size`` on the batch's cross-entropy, projected to the ball and
to [0, 1]); the model then trains on those.  Defaults: ε = 8/255, 10 steps of 2/255 — the
seed paper's Figure 6 setting, where adversarial training recovers most clean accuracy against
ε = 8/255 error-minimizing noise.

The inner PGD runs the model in **train mode** by default, as Madry et al.'s code does (batch
statistics of the adversarial batch), with BatchNorm's running statistics restored afterwards
so only the real training step moves them.  The seed paper's own code attacks in eval mode:
``-o attack_mode=eval`` reproduces that.  Cost: (steps + 1) forward/backward passes a batch,
~11× standard training at the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.options import display_value, option


class AdversarialTraining(Defense):
    """PGD adversarial training (Madry et al. 2018): train on L∞ PGD examples of each batch."""

    name = "adv-train"

    @dataclass
    class Options:
        eps: float = option(8 / 255, help="L∞ radius on the [0, 1] pixel scale, written 8/255 or 0.031 (Madry/paper: 8/255)")
        steps: int = option(10, help="PGD steps per batch")
        step_size: float = option(2 / 255, help="PGD step on the [0, 1] pixel scale, written 2/255 or 0.0078 (Madry: 2/255)")
        attack_mode: str = option("train", help="model mode during the inner PGD: train (Madry) or eval (the seed paper's code)",
                                  choices=("train", "eval"))

        def validate(self):
            if not 0 < self.eps <= 1:
                raise ValueError(f"eps must be in (0, 1], got {display_value(self.eps)}")
            if self.steps < 1:
                raise ValueError(f"steps must be >= 1, got {self.steps}")
            if self.step_size <= 0:
                raise ValueError(f"step_size must be > 0, got {display_value(self.step_size)}")

    def loss(self, model, x, target, generator=None):
        x_adv = self.perturb(model, x, target, generator)
        logits = model(x_adv)
        return F.cross_entropy(logits.float(), target), logits

    def perturb(self, model, x, target, generator=None):
        """The PGD adversarial examples of ``x`` (same shape and layout, in [0, 1])."""
        o = self.options
        was_training = model.training
        buffers = [b.detach().clone() for b in model.buffers()] if o.attack_mode == "train" else None
        model.train(o.attack_mode == "train")
        start = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x.device) * o.eps
        x_adv = (x + start.to(x.dtype)).clamp(0, 1)
        for _ in range(o.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv).float(), target)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = torch.min(torch.max(x_adv.detach() + o.step_size * grad.sign(), x - o.eps), x + o.eps).clamp_(0, 1)
        if buffers is not None:  # the inner passes must not move BatchNorm's running statistics
            for b, saved in zip(model.buffers(), buffers, strict=True):
                b.copy_(saved)
        model.train(was_training)
        return x_adv.detach()


@hookimpl
def register_defenses(register):
    register(AdversarialTraining)
