"""One-Pixel Shortcut (OPS): a model-free, class-wise L0 availability poison — one pixel per image.

Wu, Chen, Xie & Huang, "One-Pixel Shortcut: on the Learning Preference of Deep Neural Networks",
ICLR 2023, https://arxiv.org/abs/2205.12141; the authors' code is
https://github.com/cychomatica/One-Pixel-Shotcut (``perturb.py``, ``pixel_search``).

**What it does.**  For each class k, OPS picks one pixel position σ_k and one target colour ξ_k, a
corner of the colour cube (every channel 0 or 1: 8 colours for RGB), and sets that pixel of every
training image of class k to ξ_k.  The search is over the images alone (no model, no seed): for
every position σ and colour ξ it measures the change the setting causes in each image of the
class and scores

    score(σ, ξ) = mean_k(G) / (std_k(G) + 1e-6),     G = change of one image (see ``score``)

(mean and population std over the class's images), so the chosen pixel moves *a lot* and *by the
same amount* in every image of the class — a feature the network learns before anything
semantic.  The best-scoring (σ, ξ) of each class wins.  Batched with tensor ops, no loop over
images or positions: on uint8 pixels |255ξ_c − x_c| is linear in x_c, so every score of a class
follows exactly from its per-position channel sums and cross-products (``class_scores``).

``score`` picks G; the two differ in how channels enter:

* ``l1`` (default): G = Σ_c |ξ_c − x_{σ,c}|, the pixel's L1 change summed over channels (the
  paper's G), one number per image; score = mean / (std + 1e-6) over the class's images.
* ``pooled``: what ``perturb.py`` computes — |ξ_c − x_{σ,c}| of each channel, mean and std
  pooled over images × channels (it has no constant: a pixel that every image already holds at
  ξ gives 0/0 = NaN there, which numpy's argsort ranks *first*; the 1e-6 here ranks it last).

Both divide by the standard deviation, as the authors' code does (the ratio is then free of
the pixel scale); the constant only matters when a class's change is (nearly) the same in
every image.

**Several classes, several pixels.**  The paper does not require distinct positions.  As in the
authors' code, classes are searched in label order and a (position, colour) *pair* taken by an
earlier class is excluded for the later ones, so two classes may share a position only with
different colours (their shortcuts stay distinguishable).  ``pixels`` > 1 (the code's
``sparsity``) takes the ``pixels`` best pairs of a class at *distinct* positions (the code could
pick one position twice with two colours, wasting a pixel).  Ties go to the lowest position
(row-major), then the lowest colour index.

**Norm, and how it fits uebench.**  OPS is an L0 attack: ``pixels`` positions per image (all
channels of each), each set to an extreme value, so |δ| reaches 1 — it is *not* inside the
L∞ ε-ball that ``--eps`` sets, and it ignores ``--eps``.  Because δ depends on each image, it is
expressed as sample-wise noise (``form="sample"``, N×C×H×W): δ = ξ_k − x at the chosen pixel(s)
and 0 elsewhere, so ``clamp(x + δ, 0, 1)`` is exactly ξ_k there (0 or 255 after quantization)
and x everywhere else.  The noise says so: ``norm="l0"``, ``pixels`` its budget, and ``eps``
the true max |δ| (≤ 1), never ``ctx.eps``; uebench checks noise files against that budget and
records it in the results row (``norm`` = ``l0:<pixels>``, ``eps`` = max |δ|).  ``noise.meta``
records the chosen positions and colours.

Options (``-o key=value``):

* ``pixels`` (int, default 1): perturbed pixel positions per image (the paper's setting is 1).
* ``score`` (``l1`` | ``pooled``, default ``l1``): the search objective's G, above.

Shapes: ``ctx.x`` uint8 N×C×H×W (any C, H, W), ``ctx.y`` int64 N → δ float32 N×C×H×W on
``ctx.device``.  Cost: one pass of C(C+1)/2 integer products over the set (N·H·W each), seconds
for CIFAR-10 on a CPU; the noise is not cached (``cacheable = False``): a dense N×C×H×W float
tensor is dearer to store than to redo.

Example::

    pip install --no-deps -e plugins/uebench-ops
    uebench run --protocol smoke --attack ops
    uebench run --attack ops -o pixels=2 -o score=pooled --defense adv-train
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uebench.api import Attack, Noise, hookimpl, option, to_unit_float

SCORES = ("l1", "pooled")
SCORE_EPS = 1e-6  # added to the std: a perfectly consistent change scores high, no change scores 0 (never 0/0)
MAX_CLASS_SIZE = 3_900_000  # images per class for which n²·Var stays exact in int64 (n² · 765² < 2⁶³)


def corner_colours(channels: int) -> torch.Tensor:
    """The 2^C corners of the colour cube, (2^C, C) float32 in {0, 1}.  Colour index i has
    channel j = bit (C-1-j) of i, as in the authors' code: for RGB, 5 = 0b101 = (1, 0, 1)."""
    index = torch.arange(2**channels).view(-1, 1)
    shifts = torch.arange(channels - 1, -1, -1).view(1, -1)
    return ((index >> shifts) & 1).float()


def class_moments(images: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Exact integer moments of one class: ``images`` uint8 n×C×H×W → (n, Σ x_c (C×H×W),
    Σ x_c·x_d (C×C×H×W)), int64 on the images' device.  They are all the search needs."""
    n, c = images.shape[:2]
    if n > MAX_CLASS_SIZE:
        raise ValueError(f"a class of {n} images is beyond the exact integer search ({MAX_CLASS_SIZE} at most)")
    channels = [images[:, j].to(torch.int32) for j in range(c)]  # n×H×W each; a product (≤ 255²) fits int32
    sums = torch.stack([ch.sum(0, dtype=torch.int64) for ch in channels])
    cross = torch.empty(c, c, *images.shape[2:], dtype=torch.int64, device=images.device)
    for a in range(c):  # a loop over channel pairs (6 for RGB), each a batched reduction over the class
        for b in range(a, c):
            cross[a, b] = cross[b, a] = (channels[a] * channels[b]).sum(0, dtype=torch.int64)
    return n, sums, cross


def class_scores(images: torch.Tensor, score: str = "l1") -> torch.Tensor:
    """The search objective for one class: ``images`` uint8 n×C×H×W → float64 (2^C, H, W),
    ``score[i, h, w]`` for setting pixel (h, w) of every image to corner colour i.

    On uint8 pixels |255·ξ_c − x_c| is linear in x_c (x_c if ξ_c = 0, 255 − x_c if ξ_c = 1), so
    with s_c = 1 − 2ξ_c the per-image change is G = 255·Σξ + s·x: its mean and variance follow
    from the class's channel sums and cross-products (``class_moments``) — one pass over the
    images instead of one per colour, and exact (integer sums, then one float64 division and
    square root: the same bits on every device).  ``tests/test_ops_plugin.py`` checks the result
    against the definition computed pixel by pixel.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    n, sums, cross = class_moments(images)
    c = images.shape[1]
    xi = corner_colours(c).to(torch.int64).to(images.device)  # 2^C × C, in {0, 1}
    sign = 1 - 2 * xi
    if score == "l1":  # G = Σ_c |ξ_c − x_c|: one number per image, n of them
        count = n
        linear = (sign.view(-1, c, 1, 1) * sums).sum(1)  # Σ_i s·x_i
        total = 255 * n * xi.sum(1).view(-1, 1, 1) + linear  # Σ_i G_i, in 1/255 steps
        squares = (sign.view(-1, c, 1, 1, 1) * sign.view(-1, 1, c, 1, 1) * cross).sum((1, 2))  # Σ_i (s·x_i)²
        var_num = n * squares - linear**2  # n²·Var(G): G − s·x is constant; exact in int64
    else:  # |ξ_c − x_c| of every channel, pooled: n·C numbers
        count = n * c
        diag = torch.stack([cross[j, j] for j in range(c)])  # Σ x_c²
        per_channel = torch.where(xi.view(-1, c, 1, 1) == 1, 255 * n - sums, sums)  # Σ_i |255ξ_c − x_ic|
        per_channel_sq = torch.where(xi.view(-1, c, 1, 1) == 1, 255 * 255 * n - 510 * sums + diag, diag)
        total = per_channel.sum(1)
        var_num = count * per_channel_sq.sum(1) - total**2
    mean = total.to(torch.float64) / (255 * count)
    std = var_num.to(torch.float64).sqrt() / (255 * count)
    return mean / (std + SCORE_EPS)


def search(x: torch.Tensor, y: torch.Tensor, num_classes: int, pixels: int = 1,
           score: str = "l1") -> tuple[torch.Tensor, torch.Tensor]:
    """OPS's model-free search over the whole set: x uint8 N×C×H×W, y int64 N.

    Returns ``positions`` int64 (K, pixels, 2) — (row, column), -1 for a class with no images —
    and ``colours`` float32 (K, pixels, C) in {0, 1}, both on the CPU.  Classes are searched in
    label order; a (position, colour) pair an earlier class took is excluded for later ones, and
    a class's own ``pixels`` picks are at distinct positions.
    """
    n, c, h, w = x.shape
    if not 1 <= pixels <= h * w:
        raise ValueError(f"pixels must be in [1, {h * w}] for {h}×{w} images, got {pixels}")
    corners = corner_colours(c)
    positions = torch.full((num_classes, pixels, 2), -1, dtype=torch.int64)
    colours = torch.zeros(num_classes, pixels, c)
    taken = torch.zeros(h * w, 2**c, dtype=torch.bool)  # (position, colour) pairs of earlier classes
    for k in range(num_classes):
        members = x[y == k]
        if len(members) == 0:
            continue
        scores = class_scores(members, score).flatten(1).T.cpu().contiguous()  # (H·W, 2^C), position-major
        scores[taken] = -torch.inf
        for j in range(pixels):
            best = int(torch.argmax(scores))  # the first maximum: lowest position, then lowest colour
            if scores.view(-1)[best] == -torch.inf:
                raise ValueError(f"class {k}: no free (position, colour) pair left for pixel {j + 1} of {pixels}")
            position, colour = divmod(best, 2**c)
            positions[k, j] = torch.tensor(divmod(position, w))
            colours[k, j] = corners[colour]
            taken[position, colour] = True
            scores[position] = -torch.inf  # one colour per position within a class
    return positions, colours


def one_pixel_delta(x: torch.Tensor, y: torch.Tensor, positions: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Sample-wise δ (float32 N×C×H×W on x's device) that sets, in image i, pixel
    ``positions[y_i, j]`` to ``colours[y_i, j]`` for every j and leaves every other pixel alone:
    δ = target − x/255 there, 0 elsewhere (so x/255 + δ lands on the target, inside [0, 1])."""
    n = len(x)
    pos = positions.to(x.device)[y]  # n×P×2
    target = colours.to(x.device)[y]  # n×P×C
    rows, cols = pos[..., 0], pos[..., 1]
    image = torch.arange(n, device=x.device).view(n, 1).expand_as(rows)
    delta = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    delta[image, :, rows, cols] = target - to_unit_float(x[image, :, rows, cols])  # n×P×C, no copy of the whole set
    return delta


class OnePixelShortcut(Attack):
    """One-Pixel Shortcut (Wu et al., ICLR 2023): one pixel per image set to a class-wise searched colour; L0, model-free."""

    name = "ops"
    cacheable = False  # seconds to search; the dense N×C×H×W δ would cost more to store than to redo

    @dataclass
    class Options:
        pixels: int = option(1, help="perturbed pixel positions per image (the paper: 1); each class's are distinct")
        score: str = option("l1", help="search objective: l1 = per-image L1 change over channels, mean/(std+1e-6); "
                            "pooled = per-channel changes pooled over images×channels (the authors' code)", choices=SCORES)

        def validate(self):
            if self.pixels < 1:
                raise ValueError(f"pixels must be >= 1, got {self.pixels}")

    def craft(self, ctx):
        o = self.options
        positions, colours = search(ctx.x, ctx.y, ctx.num_classes, o.pixels, o.score)
        delta = one_pixel_delta(ctx.x, ctx.y, positions, colours)
        eps = float(delta.abs().max()) if delta.numel() else 0.0  # the true L∞ size (≤ 1), not ctx.eps: OPS is L0
        ctx.reporter.log(f"ops: L0 attack, {o.pixels} pixel(s) per image; --eps is ignored (max |δ| = {eps:.3f})")
        meta = {"attack": self.name, "score": o.score, "positions": positions.tolist(),
                "colours": colours.to(torch.int64).tolist()}
        return Noise(delta, "sample", eps, meta, norm="l0", pixels=o.pixels)


@hookimpl
def register_attacks(register):
    register(OnePixelShortcut)
