"""Mixtures of class-wise noise — the seed paper's Table 5, last two columns.

- ``mix-or`` (Δc1 ∨ Δc2): two class-wise noises crafted independently (seeds 2s and 2s + 1 of
  the component attack, so the components are the very noises those seeds' cells use, read from
  the noise cache); each training image gets one of the two, at random.
- ``mix-add`` (Δc1 + Δu): the class-wise noise of seed 2s plus uniform random noise in [−ε, ε]
  drawn per image, the sum clipped to ε.

Both are released as sample-wise N×C×H×W noise (the random choices are part of the artifact),
composed in seconds from cached components, so they are not cached themselves.  The component
is ``errmin-pgd`` with ``form=class`` by default; ``attack`` names another class-wise attack
(``random``, ``errmax-universal``).

Example: ``uebench run --attack mix-or``, ``uebench run --attack mix-add -o attack=random``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uebench.attacks.base import Attack, CraftContext
from uebench.hookspecs import hookimpl
from uebench.noise import Noise
from uebench.options import option


def component(ctx: CraftContext, attack: str, seed: int) -> torch.Tensor:
    """The K×C×H×W class-wise δ of ``attack`` at ``seed`` (through the cache when the runner
    provides ``ctx.craft_other``)."""
    from uebench.plugins import get_host

    entry = (ctx.host or get_host()).attacks.get(attack)
    declared = {f for f in getattr(entry.cls.Options, "__dataclass_fields__", {})}
    options = {"form": "class"} if "form" in declared else {}
    if ctx.craft_other is not None:
        noise = ctx.craft_other(attack, options, seed)
    else:
        from dataclasses import replace

        from uebench.options import build_options
        from uebench.seeds import seed_global, seed_streams

        streams = seed_streams(seed)
        seed_global(streams.craft)
        noise = entry.cls(build_options(entry.cls.Options, options)).craft(
            replace(ctx, seed=seed, generator=streams.generator("craft")))
    if noise is None or noise.form != "class":
        raise ValueError("mixtures need a class-wise component; "
                         f"{attack!r} gave {None if noise is None else noise.form + '-wise'} noise")
    return noise.delta.to(ctx.device)


class _Mixture(Attack):
    """What both mixtures share: a class-wise component attack, named by the ``attack`` option."""

    cacheable = False

    def check(self, resolved, host) -> None:
        """The component must be an attack of this run's plugins (``--plugins-dir`` included):
        an unknown name fails while the cell is prepared, not after the data is loaded."""
        host.attacks.get(self.options.attack)


class MixOr(_Mixture):
    """Δc1 ∨ Δc2: each image carries one of two independently crafted class-wise noises (Huang et al. 2021, Table 5)."""

    name = "mix-or"

    @dataclass
    class Options:
        attack: str = option("errmin-pgd", help="the class-wise component attack (crafted at seeds 2s and 2s+1)")

    def craft(self, ctx):
        first, second = (component(ctx, self.options.attack, 2 * ctx.seed + i) for i in (0, 1))
        pick = (torch.rand(len(ctx.y), generator=ctx.generator) < 0.5).to(ctx.device).view(-1, 1, 1, 1)
        delta = torch.where(pick, first[ctx.y], second[ctx.y])
        return Noise(delta, "sample", ctx.eps, {"attack": self.name, "component": self.options.attack,
                                                "component_seeds": [2 * ctx.seed, 2 * ctx.seed + 1]})


class MixAdd(_Mixture):
    """Δc1 + Δu: class-wise noise plus per-image uniform noise, clipped to ε (Huang et al. 2021, Table 5)."""

    name = "mix-add"

    @dataclass
    class Options:
        attack: str = option("errmin-pgd", help="the class-wise component attack (crafted at seed 2s)")

    def craft(self, ctx):
        base = component(ctx, self.options.attack, 2 * ctx.seed)
        uniform = ((torch.rand(ctx.x.shape, generator=ctx.generator) * 2 - 1) * ctx.eps).to(ctx.device)
        delta = (base[ctx.y] + uniform).clamp_(-ctx.eps, ctx.eps)
        return Noise(delta, "sample", ctx.eps,
                     {"attack": self.name, "component": self.options.attack, "component_seeds": [2 * ctx.seed]})


@hookimpl
def register_attacks(register):
    register(MixOr)
    register(MixAdd)
