"""The noise request: which noise a cell needs, named once.

Everything that decides a noise — the attack, its revision and resolved options (files it reads
by their content's digest), the dataset, the protocol and its version, the seed, ε, the size of
the crafting set, the uebench release, the data's digest and the numerics — is one frozen value.
Its :attr:`~NoiseRequest.key` names the noise-cache file and the row's ``noise_key``; its
:attr:`~NoiseRequest.identity` is stored inside the file and checked on every read.  The runner,
the sweep's plan and dry run, the Ray executor and ``leaderboard migrate`` all ask this one
value, so they cannot disagree about a key.

A request is complete before any data is loaded: the crafting set's size is the protocol's
per-class count times the dataset's classes (or the dataset's declared training-set size).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from uebench.craft.cache import noise_key


@dataclass(frozen=True)
class NoiseRequest:
    """One noise, named by everything that determines it (compared and hashed by those fields).

    ``attack_impl`` and ``resolved`` are the attack instance and its resolved options that craft
    it (absent in a request rebuilt from a row: such a request names a noise, it cannot make one).
    """

    attack: str
    attack_revision: int
    options: dict  # the resolved options as keys hold them (``runner.identity_options``)
    dataset: str
    protocol: str
    protocol_version: int
    seed: int
    eps: float
    train_size: int | None  # images the noise is crafted on; None only for :meth:`group`
    uebench_version: str
    provenance: dict | None = None  # the data's digest and the numerics; None: a key from before they joined
    attack_impl: object = field(default=None, compare=False, repr=False)
    resolved: object = field(default=None, compare=False, repr=False)

    @property
    def fields(self) -> dict:
        """What the key hashes (the order and names the keys of every committed row were made with)."""
        return {
            "attack": self.attack, "attack_revision": self.attack_revision, "options": self.options, "dataset": self.dataset,
            "protocol": self.protocol, "protocol_version": self.protocol_version, "seed": self.seed,
            "eps": round(self.eps, 10), "uebench": self.uebench_version, "train_size": self.train_size,
            **(self.provenance or {}),
        }

    @property
    def key(self) -> str:
        """The noise-cache key: 20 hex characters of sha256 over :attr:`fields`."""
        return noise_key(self.fields)

    @property
    def identity(self) -> dict:
        """The part of :attr:`fields` stored in the noise file and checked on every read, beside
        the key: a file put under a name it does not belong to (copied, renamed, a colliding key)
        is never served to a cell it was not crafted for."""
        provenance = self.provenance or {}
        return {"attack": self.attack, "dataset": self.dataset, "protocol": self.protocol,
                "protocol_version": self.protocol_version, "cell_eps": round(self.eps, 10), "seed": self.seed,
                "data_digest": provenance.get("data_digest", ""), "threads": provenance.get("threads")}

    @property
    def group(self) -> str:
        """Requests with equal groups are one noise: the sweep crafts each group once."""
        return json.dumps(self.fields, sort_keys=True, default=str)

    def at(self, **changes) -> NoiseRequest:
        """This request with some fields changed (another seed, another size)."""
        from dataclasses import replace

        return replace(self, **changes)

    @classmethod
    def from_row(cls, row: dict, *, options: dict, revision: int, train_size: int | None,
                 provenance: dict | None) -> NoiseRequest:
        """The request a results row's noise was crafted under, from the row's fields
        (``uebench.migrate`` rebuilds older rows' keys with it: ``provenance`` None gives the key
        as it was before the data and the numerics joined it)."""
        return cls(attack=row["attack"], attack_revision=revision, options=options, dataset=row["dataset"],
                   protocol=row["protocol"], protocol_version=int(row["protocol_version"]), seed=int(row["seed"]),
                   eps=float(row["eps"]), train_size=train_size, uebench_version=row["uebench_version"], provenance=provenance)
