"""The hooks a uebench plugin implements — this module is their reference documentation.

Every hook receives a ``register`` callback and calls it once per thing it adds.  Built-in
attacks, defenses, victims and datasets register through exactly these hooks (the modules
listed in ``uebench.plugins.BUILTIN_PLUGINS``), so a third-party package is a first-class citizen: declare an entry
point in the ``uebench`` group (or drop a ``.py`` file into a folder passed with
``--plugins-dir``) and implement any subset of the hooks with ``@uebench.hookspecs.hookimpl``.

An implementation may accept fewer arguments than the spec names (pluggy passes only those it
asks for), so hooks can grow arguments later without breaking plugins.
"""

from __future__ import annotations

import pluggy

PROJECT = "uebench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_attacks(register):
    """Add attacks (noise generators).

    Call ``register(cls)`` for each subclass of :class:`uebench.attacks.base.Attack`.  The
    class names itself (``cls.name``, kebab-case), declares its options as a dataclass
    (``cls.Options``) and implements ``craft(ctx) -> Noise``.
    """


@hookspec
def register_defenses(register):
    """Add training-time defenses.

    Call ``register(cls)`` for each subclass of :class:`uebench.defenses.base.Defense`.  A
    defense is a callback on the training loop's events and implements only those it needs:
    ``prepare`` (once before training: squeeze the training images, carve a validation split),
    ``augment`` (each batch), ``loss`` (the batch's training loss; one defense per cell may
    replace it), ``after_epoch`` / ``after_fit`` (read the state, log, keep or restore weights,
    ask to stop) and ``eval_images`` (test images).  The event table, with signatures, is the
    docstring of ``uebench.defenses.base``; which defenses compose is ``uebench.defenses.compose``'s.
    """


@hookspec
def register_victims(register):
    """Add victim architectures (also usable as source models for attacks).

    Call ``register(cls)`` for each subclass of :class:`uebench.victims.base.Victim`.  A class
    with ``takes_argument = True`` is addressed as ``name:argument`` (e.g. ``timm:resnet18``).
    """


@hookspec
def register_datasets(register):
    """Add datasets.

    Call ``register(cls)`` for each subclass of :class:`uebench.datasets.base.Dataset`; it
    loads (or downloads into) uebench's dataset-cache layout and returns uint8 tensors.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``uebench`` command line; ``cli`` is the root :class:`click.Group`."""
