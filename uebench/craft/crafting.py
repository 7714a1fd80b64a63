"""Crafting a requested noise, through the noise cache.

:func:`craft` is the one way a cell's noise comes to be: found under its request's key in the
cache (and checked against the request's identity), or crafted by the attack with the options
resolved when the cell was prepared (``ctx.options``), checked, and stored.  Two cells needing
the same noise wait for each other on the cache's lock and craft it once.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from uebench.attacks.base import CraftContext
from uebench.craft.cache import NoiseCache
from uebench.craft.request import NoiseRequest
from uebench.datasets.base import DataUnavailableError
from uebench.failures import CellFailure, ComponentError, check_crafted
from uebench.noise import Noise
from uebench.options import OptionError, applied_options, build_options
from uebench.progress import NULL_REPORTER, Reporter
from uebench.seeds import seed_global, seed_streams

# errors that already say what went wrong; anything else a component raises is wrapped with its name
PASS_THROUGH = (CellFailure, OptionError, DataUnavailableError, OSError)


@dataclass
class Crafted:
    """A request's noise and how it came: ``key`` is the cache key ("" when the attack is not
    cached or made no noise), ``seconds`` what crafting cost (read back from the file on a hit)."""

    noise: Noise | None
    key: str
    cached: bool
    seconds: float


def craft(request: NoiseRequest, ctx: CraftContext, cache_dir: Path | None, reporter: Reporter = NULL_REPORTER) -> Crafted:
    """The noise ``request`` names, crafted on ``ctx`` (its data, seed stream, device), from the
    cache when a valid entry exists."""
    attack = request.attack_impl
    if len(ctx.y) != request.train_size:
        raise CellFailure(f"the noise request of {request.attack!r} expects {request.train_size} crafting images, the loaded "
                          f"data has {len(ctx.y)}: the dataset's files changed between preparing and loading the cell")
    ctx = dataclasses.replace(ctx, options=request.resolved)
    if not attack.cacheable:
        start = time.perf_counter()
        noise = _craft_checked(attack, ctx)
        return Crafted(noise, "", False, time.perf_counter() - start)
    key, identity, cache = request.key, request.identity, NoiseCache(cache_dir)
    with cache.lock(key):
        cache.remove_orphans(key)
        noise, why = cache.get(key, tuple(ctx.x.shape), identity)
        if noise is not None:
            reporter.log(f"noise cache hit: {cache.path(key)}")
            return Crafted(noise.to(ctx.device), key, True, float(noise.meta.get("craft_seconds", 0.0)))
        if why != "miss":
            reporter.log(f"[yellow]discarded invalid cached noise: {why}[/]")
        start = time.perf_counter()
        noise = _craft_checked(attack, ctx)
        seconds = time.perf_counter() - start
        if noise is not None:
            noise.meta.update(options=applied_options(request.resolved), craft_seconds=seconds, identity=identity)
            cache.put(key, noise)
    return Crafted(noise, key if noise is not None else "", False, seconds)


def _craft_checked(attack, ctx: CraftContext):
    """``attack.craft(ctx)``, its exceptions and unusable results named after the attack (a
    :class:`~uebench.failures.CellFailure`), so a broken plugin ends its cell with a clear message
    and nothing of it is cached."""
    try:
        noise = attack.craft(ctx)
    except PASS_THROUGH:
        raise
    except Exception as exc:
        raise ComponentError.wrap(f"attack {attack.name!r} (crafting)", exc) from exc
    check_crafted(noise, attack.name, ctx.x, ctx.num_classes, ctx.eps)
    return noise


def other_crafter(host, request_of, ctx: CraftContext, cache_dir: Path | None, reporter: Reporter):
    """``ctx.craft_other``: the noise of another attack at another seed, through the same cache,
    so a composed attack (``mix-or``) reuses noise other cells crafted.  ``request_of(attack,
    resolved, seed)`` names it as the cell names its own noise."""

    def craft_other(name: str, options: dict, seed: int):
        entry = host.attacks.get(name)
        attack = entry.cls(build_options(entry.cls.Options, options, f"attack {name!r}"))
        resolved = attack.resolve(ctx.protocol, ctx.eps)
        streams = seed_streams(seed)
        seed_global(streams.craft)
        sub = dataclasses.replace(ctx, seed=seed, generator=streams.generator("craft"))
        return craft(request_of(attack, resolved, seed), sub, cache_dir, reporter).noise

    return craft_other
