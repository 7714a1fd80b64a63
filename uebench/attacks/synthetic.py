"""Synthetic noise that needs no model: LSP and AR, both budgeted in L2 per image.

Neither attack trains or queries a network: each draws a small random *generative rule* per
class from the cell's craft seed stream and samples every image's δ from its class's rule, so
crafting costs milliseconds to seconds at every protocol and nothing is scaled for the CPU
protocols.  Both return ``norm="l2"`` noise: every image's δ is rescaled to Euclidean norm
exactly ``radius`` over its C×H×W values on the [0, 1] scale (``--eps`` is ignored; the noise's
``eps`` records the largest |δ|); the released image is clamp(x + δ, 0, 1), so a pixel pushed
past the range spends a little less than ``radius``.

``lsp`` — linear-separable synthetic perturbations (Yu, Zhang, Chen, Yin & Liu, "Availability
Attacks Create Shortcuts", KDD 2022, https://arxiv.org/abs/2111.00898; reference code
github.com/dayu11/Availability-Attacks-Create-Shortcuts, ``synthetic_perturbations/``, read to get
the method right, none of it copied).  Mechanism, as the reference generates it with
scikit-learn's ``make_classification`` (re-derived here in torch): an image is cut into a grid of
``patch`` × ``patch`` squares, one value per square and channel, F = C·⌈H/p⌉·⌈W/p⌉ values in
all.  Each class k has a centre c_k, a distinct random vertex of the hypercube {−s, +s}^F
(s = ``class_sep``), and a random mixing matrix A_k with entries uniform in [−1, 1]; an image of
class k gets v = z·A_k + c_k with z ~ N(0, I_F) drawn for that image, each value repeated over
its square (the paper's upsampled patches; the last row/column of squares is cut at the image's
edge), scaled to ‖δ‖₂ = ``radius``.  The classes are Gaussian clusters around far-apart
centres, so the noise alone is linearly separable by class — the paper's thesis that this,
not the error-minimizing objective, makes a poison work.  ``form="sample"`` (default) is the
reference's: each image its own draw, sample-wise δ (N×C×H×W).  ``form="class"`` gives every
image of class k the upsampled centre c_k alone (one δ per class, K×C×H×W): the same
shortcut without the within-class spread, not a setting of the paper.
Defaults, the reference's: ``patch`` = 8 (``--patchsize``, and APBench's for 32-pixel data),
``class_sep`` = 10, ``radius`` = 6/255·√3072 ≈ 1.304 — the reference scales every δ to the L2
norm of a 6/255 L∞ perturbation of a 3×32×32 image (``comput_l2norm_lim(6/255, 3072)``;
APBench ships the same).  The ISS table in ../shared/FIELD.md labels its LSP row "L2 = 1.0":
``-o radius=1.0`` gives that budget.  For other image sizes the reference's rule is
6/255·√(C·H·W); pass it as ``radius``.

``ar`` — autoregressive perturbations (Sandoval-Segura, Singla, Geiping, Goldblum, Goldstein &
Jacobs, "Autoregressive Perturbations for Data Poisoning", NeurIPS 2022,
https://arxiv.org/abs/2206.03693; reference code github.com/psandovalsegura/autoregressive-poisoning,
``autoregressive.py`` and ``autoregressive_param_finder.py``, read, not copied).  Mechanism:
class k owns an AR process, per channel eight coefficients b on a causal 3×3 window (the
window's bottom-right entry is the pixel being written and has none): drawn N(0, 1) and divided
by their sum (the reference's normalisation: a constant signal stays constant).  An image's δ
starts as Gaussian noise of size (H + ``crop``) × (W + ``crop``); in raster order, every pixel
from the third row and column on is overwritten by the weighted sum of its eight causal
neighbours, per channel; the first ``crop`` rows and columns are cut off and the rest scaled to
‖δ‖₂ = ``radius``.  Sample-wise: each image a fresh sample of its class's process.  The
class-k filter — b with −1 at the written pixel — maps its own class's δ to 0 at every
position (up to rounding) and another class's to a large response: a one-layer CNN with those
filters separates the noise perfectly (the paper's Appendix A.2).  The
recurrence is computed along anti-diagonals (a pixel depends only on pixels above and to its
left, so a whole anti-diagonal is written at once): H + W − 5 vectorised steps over all images,
channels and positions of a diagonal, never a loop per pixel or per image.

Choosing the processes (the reference's parameter finder, with its 2024 fix for non-finite
output made a rule): candidates are drawn and kept greedily.  A candidate is rejected when any
of ``trials`` samples of it, from fresh unit-variance starts at the data's own size, is not
finite or has an RMS above ``max_rms`` (its output grows: the reference's bound, ‖·‖₂ ≤ 50 on a
3×32×32 crop, as a per-value RMS so it holds at any size); most random draws diverge, so a
cheap exact pre-check on the top-left corner runs first (a pixel depends only on pixels above
and to its left, so the corner's output is part of the full output with the same start, and
its norm can only be smaller).  A stable candidate is kept only if every process kept before
responds to it with at least ``min_response`` (the sum over positions of ReLU(filter ∗ δ̂), δ̂
its sample at unit L2 norm on a 32×32 crop — at other sizes the same mean per position, δ̂ at
the same RMS).  The published CIFAR-100 coefficient file had a process (class 9) whose output
is not finite — every image of that class black — which its authors fixed in 2024 and APBench
still ships; here every process is checked before it is used, for any number of classes, and
the crafted δ is checked finite again.  ``noise.meta["coefficients"]`` holds the K processes
(K×C×3×3, b[2, 2] = 0) and ``meta["processes_drawn"]`` how many candidates the search drew.
Defaults, the reference's: ``radius`` = 1.0 (its CIFAR-10/100 and SVHN poisons, "ε = 1 in L2";
STL-10 used 3), ``crop`` = 4 (36 × 36 generated for 32 × 32), ``trials`` = 3, ``max_rms`` =
50/√3072.  ``min_response`` = 3 is the reference's CIFAR-100 file's; its CIFAR-10 file used 10,
which makes the greedy search's tail long (measured, 10 classes, one seed: 3 → one batch of
2,048 candidates, 0.1 s; 10 → 370,688 candidates, ~20 s on a busy CPU core, most of them for
the last two classes; for 100 classes 10 is out of reach), so one value serves every number of
classes and ``-o min_response=10`` gives the CIFAR-10 file's rule.  The search draws candidates
``AR_BATCH`` at a time and gives up, naming ``min_response``, after ``MAX_AR_DRAWS``.

Cost and caching: neither attack is cached (``cacheable = False``): redoing either is cheaper
than storing its sample-wise δ (60 MB for the 5,000 images of the ``cpu`` protocol, 600 MB for
50,000).  ``lsp`` is a few matrix products (well under a second for 5,000 images); ``ar`` takes
about 1-2 s for 5,000 images on one CPU core (its process search 0.1 s for 10 classes, a few
seconds for 100), against minutes of victim training per cell.

Examples: ``uebench run --attack lsp``, ``uebench run --attack lsp -o radius=1.0 -o form=class``,
``uebench run --attack ar``, ``uebench run --attack ar -o radius=0.5``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from uebench.attacks.base import Attack, CraftContext
from uebench.hookspecs import hookimpl
from uebench.noise import FORMS, Noise
from uebench.options import option

LSP_RADIUS = 6 / 255 * math.sqrt(3 * 32 * 32)  # the reference's comput_l2norm_lim(6/255, 3072) ≈ 1.304
AR_MAX_RMS = 50 / math.sqrt(3 * 32 * 32)  # the reference's --gen_norm_upper_bound 50 on a 3×32×32 crop, per value
AR_REFERENCE_VALUES = 3 * 32 * 32  # min_response is calibrated on a unit-L2 3×32×32 crop ...
AR_REFERENCE_POSITIONS = 30 * 30  # ... whose 3×3 filter responses have 30×30 positions
AR_BATCH = 2048  # candidate processes drawn at once
MAX_AR_DRAWS = 2_000_000  # the reference samples up to 10⁶ candidates; give up after this many
AR_CHUNK = 256  # images generated at once (a small working set is faster on CPU than one big batch)


def _scaled_to(v: torch.Tensor, radius: float) -> torch.Tensor:
    """Each row of ``v`` scaled to Euclidean norm ``radius``, as float32 (float32 throughout: some
    accelerators have no float64; the rounding, ~1e-7 relative, is far inside the budget check's 1e-5)."""
    v = v.float()
    norms = torch.linalg.vector_norm(v.flatten(1), dim=1).clamp_min(1e-30)
    return v * (radius / norms).view(-1, *[1] * (v.dim() - 1))


# --- LSP --------------------------------------------------------------------------------------


def _distinct_vertices(k: int, f: int, g: torch.Generator) -> torch.Tensor:
    """``k`` distinct random vertices of {0, 1}^f (int64 k×f), as make_classification's centres."""
    if f < 63 and k > 2**f:
        raise ValueError(f"lsp: {k} classes need {k} distinct patch patterns, but {f} patch values have only {2**f}: "
                         f"use a smaller patch")
    if f <= 20:  # few enough vertices to draw k of them without replacement
        codes = torch.randperm(2**f, generator=g)[:k]
        return (codes[:, None] >> torch.arange(f)) & 1
    bits = torch.randint(0, 2, (k, f), generator=g)
    while len(torch.unique(bits, dim=0)) < k:  # a collision: vanishingly rare at f > 20
        bits = torch.randint(0, 2, (k, f), generator=g)
    return bits


def lsp_noise(y: torch.Tensor, num_classes: int, shape: tuple[int, int, int], patch: int, class_sep: float, radius: float,
              form: str, g: torch.Generator) -> torch.Tensor:
    """LSP δ on CPU: N×C×H×W for ``form="sample"`` (one draw per label of ``y``), K×C×H×W for
    ``"class"`` (the class centres), every row at L2 norm ``radius``."""
    c, h, w = shape
    gh, gw = math.ceil(h / patch), math.ceil(w / patch)
    f = c * gh * gw
    centres = (2 * _distinct_vertices(num_classes, f, g).float() - 1) * class_sep  # K×F, ±class_sep
    mixing = 2 * torch.rand(num_classes, f, f, generator=g) - 1  # A_k, uniform in [-1, 1] (drawn for both forms: same centres)
    if form == "class":
        values = centres
    else:
        y = y.cpu()
        z = torch.randn(len(y), f, generator=g)
        values = torch.empty(len(y), f)
        for k in range(num_classes):  # one matrix product per class, over all its images
            members = torch.nonzero(y == k).flatten()
            values[members] = z[members] @ mixing[k] + centres[k]
    grid = values.view(-1, c, gh, gw).repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :h, :w]
    return _scaled_to(grid, radius)


class LinearSeparableSynthetic(Attack):
    """Linear-separable synthetic perturbations: class-clustered random patch noise, L2 (Yu et al., KDD 2022)."""

    name = "lsp"
    cacheable = False  # a few matrix products: cheaper to redo than to store sample-wise δ

    @dataclass
    class Options:
        radius: float = option(LSP_RADIUS, help="‖δ‖₂ of every image on the [0,1] scale (reference: 6/255·√3072 ≈ 1.304; "
                                                "the ISS table's 1.0)")
        patch: int = option(8, help="side of the squares sharing one value (reference: 8 for 32-pixel images)")
        class_sep: float = option(10.0, help="class centres at ±class_sep on every value (reference: 10)")
        form: str = option("sample", help="sample: each image its own draw of its class's cluster (reference); "
                                          "class: every image of a class its centre", choices=FORMS)

        def validate(self):
            if not self.radius > 0:
                raise ValueError(f"radius must be > 0, got {self.radius}")
            if self.patch < 1:
                raise ValueError(f"patch must be >= 1 (pixels), got {self.patch}")
            if not self.class_sep > 0:
                raise ValueError(f"class_sep must be > 0, got {self.class_sep}")

    def craft(self, ctx: CraftContext) -> Noise:
        o = self.resolved(ctx)
        delta = lsp_noise(ctx.y, ctx.num_classes, tuple(ctx.x.shape[1:]), o.patch, o.class_sep, o.radius, o.form, ctx.generator)
        meta = {"attack": self.name, "patch": o.patch, "class_sep": o.class_sep}
        return Noise(delta.to(ctx.device), o.form, float(delta.abs().max()), meta, norm="l2", radius=o.radius)


# --- AR ---------------------------------------------------------------------------------------

_TAPS = [(u, v) for u in range(3) for v in range(3)][:8]  # the causal 3×3 window without its bottom-right entry


def ar_fill(start: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Run AR processes over ``start`` (B×C×H×W, float): every pixel from row 2 and column 2 on,
    in raster order, becomes Σ b[u, v]·x[r−2+u, c−2+v] over its causal 3×3 window, with
    ``coefficients`` (B×C×3×3, one process per signal and channel; the [2, 2] entry is unused).
    Computed one anti-diagonal at a time (H + W − 5 steps); returns a new tensor."""
    b, c, h, w = start.shape
    if h < 3 or w < 3:  # no pixel has a full causal window
        return start.clone()
    flat = start.permute(2, 3, 0, 1).reshape(h * w, b * c).clone()  # pixel-major: a diagonal's neighbours are whole rows
    weights = coefficients.reshape(b * c, 9)[:, :8].t().to(flat.dtype).contiguous()  # 8×(B·C)
    offsets = [(u - 2) * w + (v - 2) for u, v in _TAPS]
    for d in range(4, h + w - 1):
        first, last = max(2, d - (w - 1)), min(h - 1, d - 2)  # the diagonal's rows
        # its pixels r·w + (d − r) step by w − 1 through ``flat``: strided views, no gather
        pixels = slice(first * (w - 1) + d, last * (w - 1) + d + 1, w - 1)
        acc = torch.zeros(last - first + 1, b * c, dtype=flat.dtype, device=flat.device)
        for k, offset in enumerate(offsets):
            acc.addcmul_(flat[pixels.start + offset:pixels.stop + offset:w - 1], weights[k])
        flat[pixels] = acc
    return flat.reshape(h, w, b, c).permute(2, 3, 0, 1).contiguous()


def ar_filters(coefficients: torch.Tensor) -> torch.Tensor:
    """The filters that answer to each process (K×C×3×3 → K×C×3×3 conv weights): its
    coefficients with −1 at the written pixel, so filter k ∗ (a sample of process k) = 0."""
    filters = coefficients.clone()
    filters[:, :, 2, 2] = -1
    return filters


def ar_response(signals: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """B×K responses: Σ over positions of ReLU(filter_k ∗ signal) (channels summed), each signal
    first scaled to the RMS of a unit-L2 3×32×32 image, as the mean per position × 900 (on a
    32×32 signal exactly the reference's ``response``)."""
    rms = signals.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-30)
    scaled = signals / (rms * math.sqrt(AR_REFERENCE_VALUES)).view(-1, 1, 1, 1)
    return F.relu(F.conv2d(scaled, filters.to(scaled))).mean((2, 3)) * AR_REFERENCE_POSITIONS


def _draw_coefficients(n: int, channels: int, g: torch.Generator) -> torch.Tensor:
    b = torch.randn(n, channels, 3, 3, generator=g)
    b[:, :, 2, 2] = 0
    return b / b.sum((2, 3), keepdim=True)  # a zero sum gives inf/nan: rejected as not finite


def _bounded(out: torch.Tensor, crop: int, bound: float) -> torch.Tensor:
    """Per signal: finite and ‖output after the crop‖₂ ≤ ``bound``."""
    kept = out[:, :, crop:, crop:].flatten(1)
    return torch.isfinite(kept).all(1) & (kept.norm(dim=1) <= bound)


def select_ar_processes(num_classes: int, shape: tuple[int, int, int], crop: int, trials: int, max_rms: float,
                        min_response: float, g: torch.Generator, on_accept=None) -> tuple[torch.Tensor, int]:
    """``num_classes`` AR processes (K×C×3×3 coefficients, CPU) for images of ``shape``, every one
    stable (``trials`` samples finite, RMS ≤ ``max_rms``) and answered by every earlier one's
    filter with ≥ ``min_response``; and the number of candidates drawn."""
    c, h, w = shape
    size = (h + crop, w + crop)
    bound = max_rms * math.sqrt(c * h * w)
    corner = (min(size[0], crop + 8), min(size[1], crop + 8))  # the cheap pre-check's window
    kept: list[torch.Tensor] = []
    drawn = 0
    while len(kept) < num_classes:
        if drawn >= MAX_AR_DRAWS:
            raise RuntimeError(f"ar: found only {len(kept)} of {num_classes} AR processes in {drawn:,} candidates; "
                               f"lower min_response (now {min_response:g})")
        b = _draw_coefficients(AR_BATCH, c, g)
        drawn += AR_BATCH
        # most draws diverge: an exact pre-check on the top-left corner first (the corner's output
        # is part of the full one from the same start, so its norm can only be smaller)
        small = torch.randn(AR_BATCH, c, *corner, generator=g)
        alive = torch.nonzero(_bounded(ar_fill(small, b), crop, bound)).flatten()
        if not len(alive):
            continue
        starts = torch.randn(len(alive), trials, c, *size, generator=g)
        starts[:, 0, :, :corner[0], :corner[1]] = small[alive]  # trial 0 continues the pre-checked start
        out = ar_fill(starts.flatten(0, 1), b[alive].repeat_interleave(trials, 0)).view(len(alive), trials, c, *size)
        stable = _bounded(out.flatten(0, 1), crop, bound).view(len(alive), trials).all(1)
        candidates, samples = b[alive[stable]], out[stable, -1, :, crop:, crop:]
        # greedy, in draw order: a candidate must draw min_response from every process kept before it
        earlier = ar_response(samples, ar_filters(torch.stack(kept))).amin(1) if kept else torch.full((len(samples),), math.inf)
        fresh: list[torch.Tensor] = []  # kept from this batch: not in ``earlier``
        for i in range(len(candidates)):
            if earlier[i] < min_response:
                continue
            if fresh and ar_response(samples[i:i + 1], ar_filters(torch.stack(fresh))).min() < min_response:
                continue
            fresh.append(candidates[i])
            if on_accept is not None:
                on_accept()
            if len(kept) + len(fresh) == num_classes:
                break
        kept += fresh
    return torch.stack(kept), drawn


def ar_noise(y: torch.Tensor, coefficients: torch.Tensor, shape: tuple[int, int, int], crop: int, radius: float,
             g: torch.Generator, device: torch.device, on_chunk=None) -> torch.Tensor:
    """Sample-wise AR δ on ``device``: image i a fresh sample of process ``y[i]`` (from a Gaussian
    start drawn on CPU from ``g``), cropped, at L2 norm ``radius``."""
    c, h, w = shape
    coefficients = coefficients.to(device)
    labels = y.to(device)
    delta = torch.empty(len(y), c, h, w, device=device)
    for start in range(0, len(y), AR_CHUNK):
        s = slice(start, start + AR_CHUNK)
        noise = torch.randn(len(labels[s]), c, h + crop, w + crop, generator=g).to(device)
        out = ar_fill(noise, coefficients[labels[s]])[:, :, crop:, crop:]
        if not torch.isfinite(out).all():  # every process was checked stable: this would be a bug
            raise RuntimeError("ar: a sample of a checked AR process is not finite")
        delta[s] = _scaled_to(out, radius)
        if on_chunk is not None:
            on_chunk()
    return delta


class Autoregressive(Attack):
    """Autoregressive perturbations: per class a stable AR process, a fresh sample per image, L2 (Sandoval-Segura et al. 2022)."""

    name = "ar"
    cacheable = False  # seconds to redo (5,000 images); a cached copy of sample-wise δ is 60 MB

    @dataclass
    class Options:
        radius: float = option(1.0, help="‖δ‖₂ of every image on the [0,1] scale (reference: 1.0)")
        crop: int = option(4, help="rows and columns generated beyond the image and cut off its top-left (reference: 4)")
        trials: int = option(3, help="samples of a candidate process that must stay finite and bounded (reference: 3)")
        max_rms: float = option(AR_MAX_RMS, help="largest RMS of a trial sample from a unit-variance start "
                                                 "(reference: 50/√3072 ≈ 0.902)")
        min_response: float = option(3.0, help="least response of every earlier process's filter to a new one "
                                               "(reference: 3 for CIFAR-100; 10 for CIFAR-10, a far longer search)")

        def validate(self):
            if not self.radius > 0:
                raise ValueError(f"radius must be > 0, got {self.radius}")
            if self.crop < 0 or self.trials < 1:
                raise ValueError(f"crop must be >= 0 and trials >= 1, got {self.crop}, {self.trials}")
            if not self.max_rms > 0:
                raise ValueError(f"max_rms must be > 0, got {self.max_rms}")
            if self.min_response < 0:
                raise ValueError(f"min_response must be >= 0, got {self.min_response}")

    def craft(self, ctx: CraftContext) -> Noise:
        o = self.resolved(ctx)
        shape = tuple(ctx.x.shape[1:])
        if min(shape[1:]) < 3:
            raise ValueError(f"ar needs images of at least 3×3 pixels, got {shape[1]}×{shape[2]}")
        bar = ctx.reporter.task("choosing AR processes (ar)", total=ctx.num_classes)
        coefficients, drawn = select_ar_processes(ctx.num_classes, shape, o.crop, o.trials, o.max_rms, o.min_response,
                                                  ctx.generator, on_accept=lambda: bar.update(1))
        bar.close()
        bar = ctx.reporter.task("sampling AR noise (ar)", total=math.ceil(len(ctx.y) / AR_CHUNK))
        delta = ar_noise(ctx.y, coefficients, shape, o.crop, o.radius, ctx.generator, ctx.device, on_chunk=lambda: bar.update(1))
        bar.close()
        meta = {"attack": self.name, "processes_drawn": drawn, "coefficients": coefficients.tolist()}
        return Noise(delta, "sample", float(delta.abs().max()), meta, norm="l2", radius=o.radius)


@hookimpl
def register_attacks(register):
    register(LinearSeparableSynthetic)
    register(Autoregressive)
