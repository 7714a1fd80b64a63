"""The linear-separability test of Yu et al. ("Availability Attacks Create Shortcuts", KDD 2022,
https://arxiv.org/abs/2111.00898).

Mechanism: Yu et al. show that the perturbations of availability poisons (error-minimizing,
error-maximizing, NTGA, ...) are almost perfectly *linearly separable* by class, where natural
images are not — that is why a network learns the noise first.  Their test fits a linear model
and reports how well it fits.  Here a multinomial logistic regression is trained for a fixed,
short budget (``epochs``) on the suspect set, and the score is its training accuracy: a shortcut
is fitted in that budget, natural images are not.

``inputs``: ``images`` (default) is what a defender who downloaded a set holds; ``perturbation``
is Yu et al.'s own analysis, on δ = released − clean, and needs the clean originals (a cell has
them; ``uebench detect PATH --clean CLEAN``).  The two scales differ: each has its own default
threshold (``threshold`` None picks it).

Default thresholds, calibrated at the ``cpu`` protocol's scale on CIFAR-10 (5,000 training
images; ``leaderboards/cpu/detections.csv``): ``images`` 0.7 — a clean set's short-budget fit is
about 0.5 there; ``perturbation`` 0.5 — a zero or i.i.d. random perturbation carries no class
information (chance, 0.1).  With 5,000 images of 3,072 pixels a linear model can in principle
fit *any* labelling (Cover: n < 2d), so the short budget, not the model's capacity, separates
the two; the budget is part of the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

from uebench.detectors.base import Detector, Verdict
from uebench.detectors.fitting import accuracy, build, features, fit, standardiser
from uebench.hookspecs import hookimpl
from uebench.options import option

THRESHOLDS = {"images": 0.7, "perturbation": 0.5}
CALIBRATION = "CIFAR-10, cpu protocol scale (5,000 training images); see leaderboards/cpu/detections.csv"


class LinearSeparability(Detector):
    """Flag a set a linear model fits within a short budget: availability poisons are linear shortcuts (Yu et al. 2022)."""

    name = "linear-separability"

    @dataclass
    class Options:
        inputs: str = option("images", help="what the linear model sees: the released images, or the perturbation "
                                            "(needs the clean originals)", choices=("images", "perturbation"))
        threshold: float | None = option(None, help="flag when the training accuracy exceeds this; "
                                                    "default: 0.7 on images, 0.5 on perturbations")
        epochs: int = option(5, help="training epochs of the linear model (the budget)")
        lr: float = option(1e-3, help="Adam learning rate")
        batch_size: int = option(256, help="mini-batch size")

        def validate(self):
            if self.inputs not in THRESHOLDS:
                raise ValueError(f"inputs must be one of {', '.join(THRESHOLDS)}, got {self.inputs!r}")
            if self.threshold is not None and not 0 <= self.threshold <= 1:
                raise ValueError(f"threshold is an accuracy in [0, 1], got {self.threshold}")
            if self.epochs < 1 or self.batch_size < 1:
                raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")

    def detect(self, suspect, generator, device, reporter=None):
        o = self.options
        if o.inputs == "perturbation":
            if suspect.x_clean is None:
                raise ValueError("linear-separability with inputs=perturbation needs the clean originals "
                                 "(a cell has them; for a folder pass --clean PATH), or use inputs=images")
            f = features(suspect.x.to(device)) - features(suspect.x_clean.to(device))
        else:
            f = features(suspect.x.to(device))
        y = suspect.y.to(device)
        f = standardiser(f)(f)
        model = build(f.shape[1], suspect.num_classes, None, generator)
        fit(model, f, y, epochs=o.epochs, lr=o.lr, batch_size=o.batch_size, weight_decay=0.0, generator=generator)
        score = accuracy(model, f, y)
        threshold = o.threshold if o.threshold is not None else THRESHOLDS[o.inputs]
        return Verdict(score=score, threshold=threshold, calibration=CALIBRATION, inputs=o.inputs,
                       details={"fit_acc": score, "epochs": o.epochs})


@hookimpl
def register_detectors(register):
    register(LinearSeparability)
