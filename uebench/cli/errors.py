"""Turn uebench's own exceptions into one-paragraph CLI errors (no tracebacks), with exit codes:
2 for bad input (unknown name, malformed option, value out of range), 1 for runtime failures (data
missing or damaged, a plugin that raised or returned unusable noise, diverged training, a full
disk).  ``UEBENCH_DEBUG=1`` lets the runtime failures through with their traceback."""

from __future__ import annotations

import os

import click

from uebench.datasets.base import DataUnavailableError
from uebench.failures import CellFailure
from uebench.noise import NoiseFileError
from uebench.options import OptionError
from uebench.registry import UnknownNameError


class BadInput(click.UsageError):
    """Exit code 2 with the message, and no usage banner (the message says what to do)."""

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


class ErrorHandlingGroup(click.Group):
    """A group whose commands' uebench errors become one-paragraph messages with exit codes."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (UnknownNameError, OptionError) as exc:
            raise BadInput(str(exc)) from None
        except (DataUnavailableError, NoiseFileError, CellFailure, OSError) as exc:
            if os.environ.get("UEBENCH_DEBUG"):
                raise
            raise click.ClickException(str(exc)) from None
