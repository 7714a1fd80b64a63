"""Small classifiers fitted on flattened images: what both built-in detectors train.

A detector must answer in seconds to a minute at the ``cpu`` scale, so these are a linear model
and a one-hidden-layer MLP on standardised pixels, trained with Adam in mini-batches; every draw
(split, initial weights, batch order) comes from the caller's generator, so a verdict
reproduces bit for bit on the same machine and thread count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uebench.seeds import seed_global


def features(x: torch.Tensor) -> torch.Tensor:
    """N×C×H×W uint8 or float images → N×D float pixels in [0, 1] (perturbations keep their scale)."""
    flat = x.flatten(1)
    return flat.float().div_(255) if flat.dtype == torch.uint8 else flat.float()


def standardiser(train: torch.Tensor):
    """Per-feature standardisation fitted on the training features (a constant feature stays 0)."""
    mean, std = train.mean(0), train.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return lambda f: (f - mean) / std


def stratified_split(y: torch.Tensor, held_out: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (fit, held out): ``held_out`` of each class drawn at random into the second part."""
    fit, hold = [], []
    for k in torch.unique(y).tolist():
        idx = torch.nonzero(y == k).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator).to(idx.device)]
        cut = int(round(len(idx) * held_out))
        hold.append(idx[:cut])
        fit.append(idx[cut:])
    return torch.cat(fit), torch.cat(hold)


def build(dim: int, num_classes: int, hidden: int | None, generator: torch.Generator) -> nn.Module:
    """A linear model (``hidden`` None) or a 2-layer MLP, initialised from ``generator``."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        seed_global(seed)
        if hidden is None:
            return nn.Linear(dim, num_classes)
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, batch_size: int,
        weight_decay: float, generator: torch.Generator, step=None) -> nn.Module:
    """Train ``model`` on features ``x`` with cross-entropy; ``step()`` is called once an epoch."""
    model.to(x.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(x.device)
        for start in range(0, len(y), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        if step is not None:
            step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    hits = sum(int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum()) for s in range(0, len(y), batch_size))
    return hits / max(len(y), 1)
