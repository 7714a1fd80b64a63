"""AutoAugment (Cubuk et al., CVPR 2019, https://arxiv.org/abs/1805.09501) as a defense.

The paper's Table 3 used *Fast* AutoAugment (Lim et al. 2019), whose CIFAR-10 policy ships with
no maintained library; this is torchvision's AutoAugment with its **CIFAR-10 policy** (25
sub-policies of two operations, each firing with its own probability at a fixed magnitude), the
closest maintained batched implementation.

Per-image random choices, batched: ``torchvision.transforms.v2.AutoAugment`` draws one
sub-policy per call, i.e. per batch.  Here every image draws its own sub-policy, whether each of
its two operations fires, and the sign of signed magnitudes; then, for each of the two stages,
the images that share a (sub-policy, sign) are transformed together by torchvision's own
operation.  A batch costs at most one torchvision call per (sub-policy, sign) of a stage (≤ 50),
whatever the batch size; no per-image loop, no PIL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.options import option

POLICIES = {"cifar10": v2.AutoAugmentPolicy.CIFAR10, "svhn": v2.AutoAugmentPolicy.SVHN, "imagenet": v2.AutoAugmentPolicy.IMAGENET}


class AutoAugment(Defense):
    """AutoAugment with torchvision's CIFAR-10 policy, a sub-policy drawn per image (paper: Fast AutoAugment)."""

    name = "autoaugment"

    @dataclass
    class Options:
        policy: str = option("cifar10", help="torchvision AutoAugment policy", choices=tuple(POLICIES))

    def __init__(self, options=None):
        super().__init__(options)
        self.transform = v2.AutoAugment(POLICIES[self.options.policy])
        self._tables: dict[tuple[int, int], list] = {}

    def tables(self, height: int, width: int) -> list[tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per stage: each sub-policy's operation, probability, magnitude and whether it is signed
        (translations scale with the image size, so one table per size)."""
        if (height, width) not in self._tables:
            stages = []
            for stage in zip(*self.transform._policies, strict=True):
                ops, probs, mags, signed = [], [], [], []
                for op, prob, bin_ in stage:
                    magnitudes_fn, is_signed = self.transform._AUGMENTATION_SPACE[op]
                    magnitudes = magnitudes_fn(10, height, width)
                    ops.append(op)
                    probs.append(prob)
                    mags.append(float(magnitudes[bin_]) if magnitudes is not None else 0.0)
                    signed.append(bool(is_signed and magnitudes is not None))
                stages.append((ops, torch.tensor(probs), torch.tensor(mags), torch.tensor(signed)))
            self._tables[(height, width)] = stages
        return self._tables[(height, width)]

    def augment(self, x, target, generator):
        n, _, h, w = x.shape
        choice = torch.randint(len(self.transform._policies), (n,), generator=generator)
        out = x.clone()
        for ops, probs, mags, signed in self.tables(h, w):
            fires = torch.rand(n, generator=generator) <= probs[choice]
            negative = signed[choice] & (torch.rand(n, generator=generator) <= 0.5)
            key = choice * 2 + negative.long()  # sub-policy × sign: the images one call transforms
            for k in torch.unique(key[fires]).tolist():
                sub, neg = divmod(k, 2)
                index = torch.nonzero(fires & (key == k)).flatten().to(x.device)
                out[index] = self.transform._apply_image_or_video_transform(
                    out[index], ops[sub], -mags[sub].item() if neg else mags[sub].item(),
                    interpolation=self.transform.interpolation, fill=self.transform._fill)
        return out, target


@hookimpl
def register_defenses(register):
    register(AutoAugment)
