"""UDP's simple-network learnability test (Zhu et al., "Detection and Defense of Unlearnable
Examples", AAAI 2024, https://arxiv.org/abs/2312.08898).

Mechanism: an availability poison works because its noise is a shortcut simple enough for a
network to learn before, and instead of, the image content.  A model far too simple to learn
natural images well — a linear model, a 2-layer MLP on raw pixels — learns that shortcut too.
So: split the suspect training set per class (``held_out`` of each class aside), fit both simple
models on the rest, and score the better one's accuracy on the held-out part.  On clean CIFAR-10
such models generalise poorly (about 0.4 at our scale); on a class-wise or otherwise linearly
separable poison they generalise almost perfectly, because the held-out images carry the same
per-class noise.

Default threshold: 0.6, calibrated on clean CIFAR-10 at the ``cpu`` protocol's scale (5,000
training images, 500 a class; held-out accuracies measured in ``leaderboards/cpu/detections.csv``,
attack ``none``).  Another dataset or scale needs its own clean calibration (``-o
simple-networks.threshold=…``): the verdict's ``calibration`` says what the number rests on.
UDP's paper trains its simple networks longer on full CIFAR-10; ``epochs`` is scaled so one
verdict takes seconds to a minute on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass

from uebench.detectors.base import Detector, Verdict
from uebench.detectors.fitting import accuracy, build, features, fit, standardiser, stratified_split
from uebench.hookspecs import hookimpl
from uebench.options import option

CALIBRATION = "clean CIFAR-10, cpu protocol scale (5,000 training images); see leaderboards/cpu/detections.csv"


class SimpleNetworks(Detector):
    """UDP: flag a set whose held-out part a linear model or 2-layer MLP fits far above clean data (Zhu et al. 2024)."""

    name = "simple-networks"

    @dataclass
    class Options:
        threshold: float = option(0.6, help="flag when the better simple model's held-out accuracy exceeds this")
        held_out: float = option(0.2, help="fraction of each class held out to score the simple models on")
        hidden: int = option(512, help="hidden units of the 2-layer MLP")
        epochs: int = option(15, help="training epochs of each simple model")
        lr: float = option(1e-3, help="Adam learning rate")
        batch_size: int = option(256, help="mini-batch size")

        def validate(self):
            if not 0 < self.held_out < 1:
                raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")
            if not 0 <= self.threshold <= 1:
                raise ValueError(f"threshold is an accuracy in [0, 1], got {self.threshold}")
            if self.hidden < 1 or self.epochs < 1 or self.batch_size < 1:
                raise ValueError(f"hidden, epochs and batch_size must be >= 1, got {self.hidden}, {self.epochs}, "
                                 f"{self.batch_size}")

    def detect(self, suspect, generator, device, reporter=None):
        o = self.options
        y = suspect.y.to(device)
        fit_idx, hold_idx = stratified_split(y, o.held_out, generator)
        if len(hold_idx) == 0 or len(fit_idx) == 0:
            raise ValueError(f"{len(suspect)} images are too few to hold out {o.held_out:g} of each class")
        f = features(suspect.x.to(device))
        scale = standardiser(f[fit_idx])
        f = scale(f)
        task = reporter.task(f"{self.name}: fitting", total=2 * o.epochs, transient=True) if reporter else None
        step = (lambda: task.update()) if task else None
        scores = {}
        for label, hidden in (("linear", None), ("mlp", o.hidden)):
            model = build(f.shape[1], suspect.num_classes, hidden, generator)
            fit(model, f[fit_idx], y[fit_idx], epochs=o.epochs, lr=o.lr, batch_size=o.batch_size, weight_decay=0.0,
                generator=generator, step=step)
            scores[f"{label}_held_out_acc"] = accuracy(model, f[hold_idx], y[hold_idx])
            scores[f"{label}_fit_acc"] = accuracy(model, f[fit_idx], y[fit_idx])
        if task:
            task.close()
        score = max(scores["linear_held_out_acc"], scores["mlp_held_out_acc"])
        return Verdict(score=score, threshold=o.threshold, calibration=CALIBRATION, inputs="images", details=scores)


@hookimpl
def register_detectors(register):
    register(SimpleNetworks)
