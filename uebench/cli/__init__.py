"""The ``uebench`` command line: ``run`` and noun → verb listings (``uebench attacks list``)."""

from __future__ import annotations

import click

from uebench import __version__
from uebench.cli.errors import ErrorHandlingGroup


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="uebench")
@click.option(
    "--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(file_okay=False),
    help="Also load every *.py in this folder as a plugin (repeatable; or set UEBENCH_PLUGINS_DIR).",
)
@click.pass_context
def cli(ctx: click.Context, plugins_dirs: tuple[str, ...]):
    """Unlearnable-examples benchmark: craft noise, train victims under defenses, compare."""
    ctx.obj = {"plugins_dirs": tuple(plugins_dirs)}


def _register_subcommands() -> None:
    from uebench.cli import listing, run, sweep

    cli.add_command(run.run)
    cli.add_command(sweep.sweep)
    for group in listing.GROUPS:
        cli.add_command(group)
    cli.add_command(listing.plugins)


_register_subcommands()


def main() -> None:
    cli(prog_name="uebench")
