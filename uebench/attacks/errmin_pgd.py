"""Error-minimizing noise by PGD — Huang et al., "Unlearnable Examples", ICLR 2021, Algorithm 1.

https://arxiv.org/abs/2101.04898.  Norm: L∞.  Solves min_θ E[min_{‖δ‖∞≤ε} L(f_θ(x+δ), y)] by
alternating M SGD steps on θ with a PGD pass over the data that *descends* the loss in δ:
x' ← Π_ε(x' − α·sign(∇ₓL)), until the source model's error on (x+δ) is below λ.

Options (None = paper default for the form, or the protocol's value):

- ``form``: ``sample`` (Δs, one δ per image) or ``class`` (Δc, one δ per class, updated on a
  stratified ``class_subset`` fraction of the data (0.2; Δc only, so it is not in a Δs
  cell's key or row), δ_k averaged over each batch's class-k
  examples as in the reference code; the source model's M steps still sweep the whole set,
  with each image's class δ added, as the reference code's do — trained on the subset alone
  the source memorises it and the noise comes out weak).
- ``steps`` T (20 for Δs, 1 for Δc), ``step_size`` α (ε/10), ``stop_error`` λ (0.01 / 0.1).
- ``model_steps`` M, ``source`` (any registered victim), ``source_lr``, ``batch_size``,
  ``max_iters`` (cap on outer iterations): from the protocol.

Shapes: δ is N×C×H×W (sample) or K×C×H×W (class), float32 on the [0, 1] pixel scale.

Example: ``uebench run --attack errmin-pgd -o form=class -o max_iters=50``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from uebench.attacks.base import Attack, CraftContext
from uebench.craft.solvers import MinMinCrafter
from uebench.hookspecs import hookimpl
from uebench.noise import FORMS, Noise
from uebench.options import option

PAPER_DEFAULTS = {"sample": {"steps": 20, "stop_error": 0.01}, "class": {"steps": 1, "stop_error": 0.1}}
PAPER_CLASS_SUBSET = 0.2  # Δc is crafted on 20% of the training set


class ErrMinPGD(Attack):
    """Error-minimizing (min-min) noise by PGD, sample-wise or class-wise (Huang et al. 2021)."""

    name = "errmin-pgd"
    # 2: θ trains on the whole set for Δc, not only on the class subset
    # 3: the cell's craft seed stream (SeedSequence) replaces the raw seed; Δc's subset pass is shuffled
    revision = 3
    # ``class_subset`` applies to Δc only: None (not in the key or the row) for Δs
    inapplicable_when_none = ("patch", "class_subset")

    @dataclass
    class Options:
        form: str = option("sample", help="sample: one δ per image (Δs); class: one δ per class (Δc)", choices=FORMS)
        steps: int | None = option(None, help="T, PGD steps per pass (paper: 20 for Δs, 1 for Δc)")
        step_size: float | None = option(None, help="α, PGD step on the [0,1] pixel scale (paper: ε/10)")
        stop_error: float | None = option(None, help="λ, stop when the source model's error on x+δ < λ (paper: 0.01 Δs, 0.1 Δc)")
        model_steps: int | None = option(None, help="M, SGD steps of the source model between passes (protocol)")
        source: str | None = option(None, help="source model, any registered victim (protocol)")
        source_lr: float | None = option(None, help="source model's SGD learning rate (protocol)")
        batch_size: int | None = option(None, help="batch size for model steps and PGD passes (protocol)")
        max_iters: int | None = option(None, help="cap on outer iterations; the row records if it, not λ, ended crafting "
                                                  "(protocol)")
        class_subset: float | None = option(None, help="form=class only: fraction of the data δ is crafted on (paper: 0.2)")
        patch: int | None = option(None, help="p: craft a p×p patch (random place while crafting) "
                                              "pasted at a random place of each image (Table 5)")

        def validate(self):
            for key in ("steps", "model_steps", "batch_size", "max_iters"):
                value = getattr(self, key)
                if value is not None and value < 1:
                    raise ValueError(f"{key} must be >= 1, got {value}")
            if self.step_size is not None and self.step_size <= 0:
                raise ValueError(f"step_size must be > 0, got {self.step_size}")
            if self.stop_error is not None and not 0 <= self.stop_error <= 1:
                raise ValueError(f"stop_error must be in [0, 1], got {self.stop_error}")
            if self.class_subset is not None and not 0 < self.class_subset <= 1:
                raise ValueError(f"class_subset must be in (0, 1], got {self.class_subset}")
            if self.class_subset is not None and self.form != "class":
                raise ValueError(f"class_subset applies to class-wise noise only (form=class), got form={self.form}")
            if self.patch is not None and self.patch < 1:
                raise ValueError(f"patch must be >= 1 (pixels), got {self.patch}")

    def resolve(self, protocol, eps):
        o = self.options
        paper = PAPER_DEFAULTS[o.form]
        scale = protocol.craft(o.form)
        return replace(
            o,
            steps=o.steps if o.steps is not None else paper["steps"],
            step_size=o.step_size if o.step_size is not None else eps / 10,
            stop_error=o.stop_error if o.stop_error is not None else paper["stop_error"],
            model_steps=o.model_steps if o.model_steps is not None else scale.model_steps,
            source=o.source if o.source is not None else protocol.source,
            source_lr=o.source_lr if o.source_lr is not None else scale.lr,
            batch_size=o.batch_size if o.batch_size is not None else scale.batch_size,
            max_iters=o.max_iters if o.max_iters is not None else scale.max_iters,
            class_subset=(o.class_subset if o.class_subset is not None else PAPER_CLASS_SUBSET) if o.form == "class" else None,
        )

    def craft(self, ctx: CraftContext) -> Noise:
        o = self.resolved(ctx)
        return MinMinCrafter(o, ctx).run(self.name)


@hookimpl
def register_attacks(register):
    register(ErrMinPGD)
