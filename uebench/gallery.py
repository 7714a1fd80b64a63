"""Pictures of a released poisoned set: clean | poisoned | noise δ of the same training images.

Every paper of the field shows its poison this way; this module makes those pictures from what a
cell releases (``uebench.runner.release_cell``): the clean training images, the released uint8
images and their labels.  Pure functions, no file or cell of their own: ``uebench noise show``
writes :func:`grid_png`, ``uebench leaderboard gallery`` (``uebench.gallery_board``) writes one
small PNG per image (:func:`png_bytes`).

- **Which images** (:func:`choose`): the first ``per_class`` images of each class in the
  protocol's training subset, by dataset index (the subset is sorted, so the first in the
  released set's order).  They depend on the protocol and the dataset only — never on the attack,
  its seed or the poison scope — so every attack's gallery shows the same images, and a
  class-wise noise shows its K patterns, one per row.
- **What δ is**: released − clean, in grey levels, as a viewer receives it: after the clamp to
  [0, 1] and the uint8 rounding (not the float δ the attack made; a pixel that saturates loses
  part of its noise here, exactly as in the released set).
- **How δ is shown** (:func:`amplify`): per image, ``0.5 + δ / (2·max|δ|)``, so zero is mid-grey
  (128) and the image's largest |δ| is 0 or 255.  Per image, not per attack or per ε, because the
  budgets differ by orders of magnitude (8/255 L∞, an L2 patch, OPS's one pixel moved by up to
  255 levels, CUDA's blur with no Lp budget): one fixed scale would show most of them as flat
  grey or clip the others; the per-image scale shows every pattern at full contrast, and how
  large δ is lives in the PSNR beside it (and ``delta_max``, the grey levels full range stands
  for).  An image the release left unchanged is flat mid-grey, its PSNR ``None`` (∞).
- **PSNR**: ``uebench.imperceptibility.per_image`` (kornia, [0, 1] scale), the code every
  results row's ``psnr_mean`` comes from.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import torch

MID_GREY = 128  # what δ = 0 shows as: round(255 · 0.5), halves to even
PSNR_DIGITS = 4  # as the results rows keep psnr_mean


@dataclass(frozen=True)
class Shown:
    """One training image of a gallery: the three pictures (uint8 C×H×W) and its numbers."""

    position: int  # row in the released set (the protocol's subset order)
    index: int  # the image's index in the dataset's training split
    label: int
    class_name: str
    clean: torch.Tensor
    poisoned: torch.Tensor
    delta: torch.Tensor  # released − clean, amplified (:func:`amplify`)
    delta_max: int  # max |released − clean| of the image in grey levels: what 0 and 255 stand for
    psnr: float | None  # dB; None when the release left the image unchanged (PSNR ∞)


def choose(labels: torch.Tensor, index: torch.Tensor | None = None, num_classes: int | None = None,
           per_class: int = 1) -> torch.Tensor:
    """Positions (into ``labels``' order) of the first ``per_class`` images of each class by
    dataset index (``index``: the dataset index of each position; ``None`` = the positions
    themselves), classes in order.  Raises ``ValueError`` if a class has fewer images."""
    labels = labels.cpu().long()
    index = torch.arange(len(labels)) if index is None else torch.as_tensor(index).cpu().long()
    if len(index) != len(labels):
        raise ValueError(f"{len(index)} dataset indices for {len(labels)} labels")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    picks = []
    for c in range(k):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} image(s) in the set, the gallery shows {per_class}")
        picks.append(members[torch.argsort(index[members], stable=True)[:per_class]])
    return torch.cat(picks)


def difference(clean: torch.Tensor, released: torch.Tensor) -> torch.Tensor:
    """released − clean in grey levels (int16), uint8 images of equal shape."""
    if clean.shape != released.shape:
        raise ValueError(f"clean images {tuple(clean.shape)} and released images {tuple(released.shape)} differ in shape")
    if clean.dtype != torch.uint8 or released.dtype != torch.uint8:
        raise ValueError(f"the gallery shows uint8 releases; got {clean.dtype} clean and {released.dtype} released images")
    return released.to(torch.int16) - clean.to(torch.int16)


def amplify(delta: torch.Tensor) -> torch.Tensor:
    """δ (N×C×H×W, grey levels or any scale) → uint8 pictures: ``0.5 + δ / (2·max|δ|)`` per
    image, times 255, rounded.  0 → 128 (mid-grey), the image's largest +|δ| → 255, −|δ| → 0; an
    all-zero δ stays mid-grey."""
    d = delta.to(torch.float64)
    top = d.abs().flatten(1).amax(1).clamp(min=torch.finfo(torch.float64).tiny).view(-1, *([1] * (d.dim() - 1)))
    return (0.5 + d / (2 * top)).mul_(255).round_().clamp_(0, 255).to(torch.uint8)


def gallery(clean: torch.Tensor, released: torch.Tensor, labels: torch.Tensor, class_names, index: torch.Tensor | None = None,
            per_class: int = 1) -> tuple[Shown, ...]:
    """The gallery of a released set: for the :func:`choose` images, clean, poisoned and
    amplified δ with PSNR.  ``clean`` and ``released``: uint8 N×C×H×W (on any device),
    ``labels`` N, ``class_names`` one per class, ``index`` the dataset index of each row."""
    from uebench.imperceptibility import per_image

    positions = choose(labels, index, len(class_names), per_class)
    rows = positions.to(clean.device)
    c, r = clean[rows].cpu(), released[rows].cpu()
    delta = difference(c, r)
    psnr = per_image(c, r)["psnr"].double()
    dataset_index = positions if index is None else torch.as_tensor(index).cpu().long()[positions]
    pictures = amplify(delta)
    label_of = labels.cpu().long()[positions]
    out = []
    for i, position in enumerate(positions.tolist()):
        value = float(psnr[i])
        out.append(Shown(position, int(dataset_index[i]), int(label_of[i]), str(class_names[int(label_of[i])]), c[i], r[i],
                         pictures[i], int(delta[i].abs().max()),
                         round(value, PSNR_DIGITS) if math.isfinite(value) else None))
    return tuple(out)


def png_bytes(image: torch.Tensor) -> bytes:
    """One uint8 C×H×W image (C = 1 or 3) as PNG bytes at native resolution: lossless, no
    timestamp, the same bytes for the same pixels (``torchvision.io.encode_png``)."""
    from torchvision.io import encode_png

    return encode_png(image.detach().cpu().contiguous(), compression_level=9).numpy().tobytes()


def upscale(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Nearest-neighbour: each pixel of a C×H×W image becomes a ``scale``×``scale`` block."""
    return image.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def psnr_text(psnr: float | None) -> str:
    return "unchanged (PSNR ∞)" if psnr is None else f"PSNR {psnr:.1f} dB"


COLUMNS = ("clean", "poisoned", "noise δ (amplified)")


def grid_png(shown: tuple[Shown, ...], title: str, scale: int = 4) -> bytes:
    """The gallery as one PNG: a row per image (its class name and dataset index on the left, its
    PSNR and the grey levels δ's full range stands for on the right), columns clean | poisoned |
    noise δ, each picture upscaled ``scale``× with nearest-neighbour (never smoothed)."""
    import matplotlib

    matplotlib.use("Agg")  # never a window
    from matplotlib.figure import Figure

    if not shown:
        raise ValueError("an empty gallery has nothing to draw")
    h, w = (int(s) * scale for s in shown[0].clean.shape[-2:])
    dpi = 100
    label_w, note_w, head_h, title_h, gap = 150, 190, 22, 40, 4
    width = label_w + 3 * (w + gap) + note_w
    height = title_h + head_h + len(shown) * (h + gap)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    fig.text(0.5, 1 - 12 / height, title, ha="center", va="top", fontsize=10, wrap=True)
    for j, name in enumerate(COLUMNS):
        x = (label_w + j * (w + gap) + w / 2) / width
        fig.text(x, 1 - (title_h + head_h / 2) / height, name, ha="center", va="center", fontsize=9, weight="bold")
    for i, s in enumerate(shown):
        top = title_h + head_h + i * (h + gap)
        for j, picture in enumerate((s.clean, s.poisoned, s.delta)):
            ax = fig.add_axes(((label_w + j * (w + gap)) / width, 1 - (top + h) / height, w / width, h / height))
            big = upscale(picture, scale).permute(1, 2, 0).numpy()
            ax.imshow(big.squeeze(-1) if big.shape[-1] == 1 else big, interpolation="nearest", cmap="gray", vmin=0, vmax=255)
            ax.set_axis_off()
        y = 1 - (top + h / 2) / height
        fig.text((label_w - 8) / width, y, f"{s.class_name}\n#{s.index}", ha="right", va="center", fontsize=9)
        fig.text((width - note_w + 8) / width, y, f"{psnr_text(s.psnr)}\nmax |δ| {s.delta_max}/255", ha="left", va="center",
                 fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()
