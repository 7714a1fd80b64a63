"""The hooks a uebench plugin implements — this module is their reference documentation.

Every hook receives a ``register`` callback (``register_commands``: a ``cli`` group) and calls it
once per thing it adds.  Built-in attacks, defenses, victims and datasets register through
exactly these hooks (the modules listed in ``uebench.plugins.BUILTIN_PLUGINS``), so a
third-party package is a first-class citizen: declare an entry point in the ``uebench`` group
(or drop a ``.py`` file into a folder passed with ``--plugins-dir``), import what you need from
:mod:`uebench.api` (the stable surface: base classes, ``option``, ``hookimpl``, the dataset
writers) and implement any subset of the hooks with ``@hookimpl``.

An implementation may accept fewer arguments than the spec names (pluggy passes only those it
asks for), so hooks can grow arguments later without breaking plugins.  uebench calls the hooks
through pluggy, so ``@hookimpl(tryfirst=True)`` / ``trylast=True`` order the calls and
``@hookimpl(wrapper=True)`` wraps the other implementations, as pluggy documents.

What a plugin registers is credited to it (``uebench plugins``, the ``plugin`` column of every
listing) and is added all together or not at all: a name another plugin (or a built-in, which
loads first) already has, a class that does not subclass the kind's base, or a hook that raises
fails that plugin, and *none* of its components is registered; the others load as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # uebench.api imports hookimpl from here; the annotations only name its classes
    from collections.abc import Callable

    import click

    from uebench.api import Attack, Dataset, Defense, Detector, Victim

PROJECT = "uebench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_attacks(register: Callable[[type[Attack]], None]):
    """Add attacks (noise generators).

    Call ``register(cls)`` for each subclass of :class:`uebench.api.Attack`.  The class names
    itself (``cls.name``, kebab-case), declares its options as a dataclass (``cls.Options``,
    fields made with :func:`uebench.api.option`) and implements
    ``craft(ctx: uebench.api.CraftContext) -> uebench.api.Noise``.
    """


@hookspec
def register_defenses(register: Callable[[type[Defense]], None]):
    """Add training-time defenses.

    Call ``register(cls)`` for each subclass of :class:`uebench.api.Defense`.  A defense is a
    callback on the training loop's events and implements only those it needs: ``prepare``
    (once before training: squeeze the training images, carve a validation split; gets and
    returns a :class:`uebench.api.TrainData`), ``augment`` (each batch), ``loss`` (the batch's
    training loss; one defense per cell may replace it), ``after_epoch`` / ``after_fit`` (read
    the :class:`uebench.api.TrainState`, log, keep or restore weights, ask to stop through the
    :class:`uebench.api.TrainControl`) and ``eval_images`` (test images).  The event table, with
    signatures, is the docstring of ``uebench.defenses.base``; which defenses compose is
    ``uebench.defenses.compose``'s.  A defense that purifies the training images with a model
    of its own (AVATAR's diffusion model) subclasses :class:`uebench.api.Purifier` instead and
    implements ``load(device) -> model`` (once) and ``purify(model, x, generator) -> x`` (a
    float batch in [0, 1]); the base runs it over every held image, batched, and clamps.
    """


@hookspec
def register_victims(register: Callable[[type[Victim]], None]):
    """Add victim architectures (also usable as source models for attacks).

    Call ``register(cls)`` for each subclass of :class:`uebench.api.Victim`; it implements
    ``build(num_classes, image_shape) -> torch.nn.Module`` (N×C×H×W float images in [0, 1] →
    N×K logits).  A class with ``takes_argument = True`` is addressed as ``name:argument``
    (e.g. ``timm:resnet18``).
    """


@hookspec
def register_datasets(register: Callable[[type[Dataset]], None]):
    """Add datasets.

    Call ``register(cls)`` for each subclass of :class:`uebench.api.Dataset` (``name``,
    ``classes``, ``image_shape``); it loads (or downloads into) uebench's dataset-cache layout
    and returns uint8 tensors.  ``download(folder)`` writes the layout with
    :func:`uebench.api.write_layout` (uint8 N×H×W×C arrays and int64 labels) or
    :func:`uebench.api.write_splits` (torchvision-style splits with ``.data`` and ``.targets``).
    """


@hookspec
def register_detectors(register: Callable[[type[Detector]], None]):
    """Add poison detectors (``uebench detect``).

    Call ``register(cls)`` for each subclass of :class:`uebench.api.Detector`; it declares
    ``Options`` (with a ``threshold``) and implements ``detect(suspect, generator, device,
    reporter) -> Verdict``: ``suspect`` is a :class:`uebench.api.SuspectSet` (the released
    training images and labels, and the clean originals where the defender has them), the
    :class:`uebench.api.Verdict` a score, its threshold and what the threshold was calibrated on.
    """


@hookspec
def register_commands(cli: click.Group):
    """Add commands to the ``uebench`` command line.

    ``cli`` is a :class:`click.Group` standing in for the root: add to it with
    ``@cli.command()``, ``@cli.group()`` or ``cli.add_command(cmd)``.  The commands are listed
    in ``uebench --help`` under "Plugin commands", with the plugin that added them.  Names are
    kebab-case; a name one of uebench's own commands or another plugin's command has is a clash
    (none of the plugin's components is registered).
    """
