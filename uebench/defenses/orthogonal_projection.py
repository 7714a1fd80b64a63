"""Orthogonal projection (Sandoval-Segura et al., NeurIPS 2023, "What Can We Learn from
Unlearnable Datasets?", https://arxiv.org/abs/2305.19254; code: psandovalsegura/learn-from-unlearnable).

Mechanism (the paper's Algorithm 1).  A class-wise poison adds one pattern δ_k to every image of
class k, and a *linear* model fits such a set almost perfectly by reading those patterns: its K
weight vectors are, up to scale, the recovered perturbations.  So fit a multinomial logistic
regression on the released (poisoned) training images, flattened, orthonormalise its K weight
vectors (QR: Q is D×r with orthonormal columns spanning them) and train on every image projected
onto their orthogonal complement, ``x - Q Qᵀ x``: whatever a linear read-out of the poison
used is gone, the rest of each image is untouched.  The defender projects every image they hold
(training, a carved validation split, clean originals: ``TrainData.map_images``).

The linear fit follows the authors' code: no bias, weights on raw [0, 1] pixels (no mean/std
normalisation), plain SGD at lr 0.1 with batch 1024 for 20 epochs, the lr divided by 10 at 50%
and 75% of the epochs; the projected images are not clamped, and the test images are not
projected (their ``--project-test`` is off by default).  Those are our defaults as well: the fit
is a few seconds even at full CIFAR-10 on a CPU, so the paper's numbers cost nothing here.  Ours
differs in two details, both for determinism: the weights start at zero (the problem is convex,
so the start only picks the path; the authors use PyTorch's random init) and each epoch visits
the images in an order drawn from the run's generator.  From a zero start the softmax gradients
of the K classes sum to zero, so the weights span K−1 directions; the basis keeps the columns
of QR whose diagonal entry of R is not negligible (the authors' random start makes the K-th
direction the initial weights' mean instead, which carries no information on the poison).

Measured (``cpu`` protocol, random Δc, seed 0, cnn-small): no defense 65.9%; this defense 24.7%
with the paper's unprojected test images, 53.8% with ``-o project_test=true``.  On CIFAR-10 the
K−1 fitted directions hold most of each image's brightness (the constant image lies 84% in their
span; 62% of the pixel energy is removed), so unprojected test images are far off the training
distribution for a small CNN trained without colour augmentation.

Why not clamp: clipping ``x - QQᵀx`` back to [0, 1] would put a part of the projected-out
component back (the clip depends on it), and the paper trains on the raw projection.  The loop
reads float training images as they are (``TrainData.batch``, random crop + flip pad with zeros
and never clamp), so the projected set trains end to end; the images are float32 and may lie
outside [0, 1] (``keeps_pixel_range = False``).  A defense listed *after* this one sees those
floats: the squeezes round to 8 bits (clamping), kornia/torchvision colour augmentations clamp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.options import option
from uebench.train.data import as_float

# images projected per matrix product: bounds the float copy of a chunk (4096 × 3072 × 4 B = 50 MB)
CHUNK = 4096


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator, epochs: int = 20,
               lr: float = 0.1, batch_size: int = 1024, bar=None) -> torch.Tensor:
    """K×D weights of a bias-free multinomial logistic regression on the flattened float pixels
    of ``x`` (uint8 or float N×C×H×W), trained by minibatch SGD from zero on ``x``'s device;
    the visiting order is drawn from ``generator``, so the result is a function of it."""
    n, device = len(x), x.device
    weight = torch.zeros(num_classes, x[0].numel(), device=device, requires_grad=True)
    opt = torch.optim.SGD([weight], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(epochs * 0.5), int(epochs * 0.75)], gamma=0.1)
    drawn_on = generator.device
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator, device=drawn_on).to(device)
            for first in range(0, n, batch_size):
                index = order[first : first + batch_size]
                logits = as_float(x[index]).flatten(1) @ weight.T
                loss = F.cross_entropy(logits, y[index])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
            if bar is not None:
                bar.update(1, loss=loss.item())
    return weight.detach()


def orthonormal_basis(weight: torch.Tensor, rtol: float = 1e-4) -> torch.Tensor:
    """D×r orthonormal columns spanning the rows of ``weight`` (K×D), r ≤ K: QR of the normalised
    rows, keeping the columns whose |R_ii| is above ``rtol`` of the largest (dependent rows add none)."""
    norms = weight.norm(dim=1, keepdim=True)
    rows = weight[norms.squeeze(1) > 0] / norms[norms.squeeze(1) > 0]
    if not len(rows):
        return weight.new_zeros(weight.shape[1], 0)
    q, r = torch.linalg.qr(rows.T.double())  # reduced: D×K, K×K
    diag = r.diagonal().abs()
    return q[:, diag > rtol * diag.max()].to(weight.dtype).contiguous()


def project_out(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``x - Q Qᵀ x`` for every image of ``x`` (uint8 or float N×C×H×W): float32, chunked."""
    parts = []
    for first in range(0, len(x), CHUNK):
        flat = as_float(x[first : first + CHUNK]).flatten(1)
        parts.append(flat - (flat @ basis) @ basis.T)
    out = torch.cat(parts) if parts else as_float(x).flatten(1)
    return out.view(x.shape)


class OrthogonalProjection(Defense):
    """Project the directions of a linear model fitted on the poisoned set out of every image (Sandoval-Segura et al. 2023)."""

    name = "orthogonal-projection"
    keeps_pixel_range = False

    @dataclass
    class Options:
        epochs: int = option(20, help="epochs of the linear (logistic-regression) fit; the paper: 20")
        lr: float = option(0.1, help="SGD learning rate of the linear fit, /10 at 50% and 75% of the epochs; the paper: 0.1")
        batch_size: int = option(1024, help="batch size of the linear fit; the paper: 1024")
        project_test: bool = option(False, help="project the test images too (the authors' --project-test; off in the paper)")

        def validate(self):
            if self.epochs < 1:
                raise ValueError(f"epochs must be >= 1, got {self.epochs}")
            if not (self.lr > 0 and math.isfinite(self.lr)):
                raise ValueError(f"lr must be > 0, got {self.lr}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def __init__(self, options=None):
        super().__init__(options)
        self.weight: torch.Tensor | None = None  # K×D, the fitted linear model (the recovered perturbations)
        self.basis: torch.Tensor | None = None  # D×r, orthonormal

    def prepare(self, data, generator):
        o = self.options
        bar = self.reporter.task("orthogonal projection: linear fit (epochs)", total=o.epochs, transient=True)
        self.weight = fit_linear(data.x, data.y, data.num_classes, generator, o.epochs, o.lr, o.batch_size, bar)
        bar.close()
        self.basis = orthonormal_basis(self.weight)
        return data.map_images(lambda x: project_out(x, self.basis))

    def eval_images(self, x):
        if not self.options.project_test or self.basis is None:
            return x
        return project_out(x, self.basis.to(x.device)).to(x.dtype)


@hookimpl
def register_defenses(register):
    register(OrthogonalProjection)
