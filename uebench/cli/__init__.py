"""The ``uebench`` command line: ``run`` and noun → verb listings (``uebench attacks list``)."""

from __future__ import annotations

import click

from uebench import __version__
from uebench.cli.errors import ErrorHandlingGroup


class RootGroup(ErrorHandlingGroup):
    """uebench's own commands, then those plugins add (the ``register_commands`` hook), which
    ``--help`` lists under "Plugin commands"; a plugin never takes a built-in command's name."""

    def _plugin_commands(self, ctx: click.Context) -> dict:
        from uebench.plugins import get_host, has_third_party_plugins

        dirs = (ctx.obj or {}).get("plugins_dirs") or ctx.params.get("plugins_dirs") or ()
        if not has_third_party_plugins(dirs):  # built-ins add no command: --help stays fast
            return {}
        try:
            return get_host(dirs).commands
        except OSError as exc:  # a --plugins-dir that is not there
            raise click.ClickException(str(exc)) from None

    def get_command(self, ctx, name):
        command = click.Group.get_command(self, ctx, name)  # built-ins first; plugins load only for another name
        entry = self._plugin_commands(ctx).get(name) if command is None else None
        return entry.command if entry is not None else command

    def list_commands(self, ctx):
        return sorted({*self.commands, *self._plugin_commands(ctx)})

    def format_commands(self, ctx, formatter):
        plugin = self._plugin_commands(ctx)
        sections = [("Commands", [(n, c, "") for n, c in sorted(self.commands.items())]),
                    ("Plugin commands", [(n, e.command, f" [{e.plugin}]") for n, e in sorted(plugin.items())])]
        width = max((len(n) for _, rows in sections for n, _, _ in rows), default=0)
        for title, rows in sections:
            rows = [(n, c.get_short_help_str(formatter.width - 6 - width - len(by)) + by) for n, c, by in rows if not c.hidden]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="uebench")
@click.option(
    "--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(file_okay=False), is_eager=True,
    help="Also load every *.py in this folder as a plugin (repeatable; or set UEBENCH_PLUGINS_DIR); "
         "before --help, its commands are listed too.",
)
@click.pass_context
def cli(ctx: click.Context, plugins_dirs: tuple[str, ...]):
    """Unlearnable-examples benchmark: craft noise, train victims under defenses, compare."""
    ctx.obj = {"plugins_dirs": tuple(plugins_dirs)}


def _register_subcommands() -> None:
    from uebench.cli import detect, leaderboard, listing, noise, run, sweep

    cli.add_command(run.run)
    cli.add_command(detect.detect)
    cli.add_command(noise.noise_group)
    cli.add_command(sweep.sweep)
    for group in listing.GROUPS:
        cli.add_command(group)
    cli.add_command(listing.plugins)
    cli.add_command(leaderboard.leaderboard_group)


_register_subcommands()


def main() -> None:
    cli(prog_name="uebench")
