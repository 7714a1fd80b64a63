"""Finding and loading plugins: built-ins, the ``uebench`` entry-point group, ``--plugins-dir``.

Loading is lazy (nothing happens at import time) and happens once per set of plugin folders.
``UEBENCH_LOAD_PLUGINS`` controls third-party loading: unset loads every installed plugin, an
empty string loads none, and a comma-separated list loads only those entry points (by
entry-point or distribution name).  Built-ins always load.  A plugin that fails to import or to
register is recorded with its error and skipped; the rest keep working.

Every hook is called through pluggy (``pm.hook.register_attacks(register=...)``), so
``tryfirst``/``trylast`` and wrappers mean what pluggy says.  Each plugin is registered with the
plugin manager as a stand-in whose hook implementations credit what they register to it, so each
registry entry and command still names its plugin.  A plugin's registrations are held until
every hook has run, then added all together or not at all: a name clash (or any other bad
entry, or a hook that raised) leaves none of that plugin's components registered, and its error
says which name clashed with whose and what else the plugin offered.  Plugins are checked in load
order (built-ins, entry points, plugin folders), so a built-in always keeps its name.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import click
import pluggy

from uebench import hookspecs
from uebench.attacks.base import Attack
from uebench.datasets.base import Dataset
from uebench.defenses.base import Defense
from uebench.detectors.base import Detector
from uebench.registry import NAME_RE, Registry
from uebench.victims.base import Victim

ENTRY_POINT_GROUP = "uebench"
BUILTIN_PLUGINS = (
    "uebench.attacks.baselines",
    "uebench.attacks.errmin_pgd",
    "uebench.attacks.errmin_adam",
    "uebench.attacks.from_file",
    "uebench.attacks.errmax",
    "uebench.attacks.mixtures",
    "uebench.attacks.synthetic",
    "uebench.attacks.cuda",
    "uebench.attacks.source_poisons",
    "uebench.attacks.rem",
    "uebench.defenses.standard",
    "uebench.defenses.cutmix",
    "uebench.defenses.mixup",
    "uebench.defenses.cutout",
    "uebench.defenses.autoaugment",
    "uebench.defenses.adversarial",
    "uebench.defenses.early_stop",
    "uebench.defenses.squeeze",
    "uebench.defenses.ueraser",
    "uebench.defenses.orthogonal_projection",
    "uebench.defenses.gaussian",
    "uebench.victims.cifar",
    "uebench.victims.timm_victims",
    "uebench.datasets.cifar10",
    "uebench.datasets.cifar100",
    "uebench.datasets.svhn",
    "uebench.datasets.imagenet_subset",
    "uebench.detectors.simple_networks",
    "uebench.detectors.linear_separability",
)
KINDS = {  # hook name → (registry kind, base class)
    "register_attacks": ("attack", Attack),
    "register_defenses": ("defense", Defense),
    "register_victims": ("victim", Victim),
    "register_datasets": ("dataset", Dataset),
    "register_detectors": ("detector", Detector),
}


@dataclass
class PluginInfo:
    name: str
    source: str  # builtin | entry-point | plugins-dir
    module: str
    version: str | None = None
    path: str | None = None
    error: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CommandEntry:
    """A command a plugin added to the ``uebench`` command line (``register_commands``)."""

    name: str
    command: click.Command
    plugin: str  # which plugin registered it


class PluginHost:
    """The plugin manager plus one registry per kind, filled through the ``register_*`` hooks,
    and the plugins' commands (``commands``: name → :class:`CommandEntry`)."""

    def __init__(self, plugins_dirs: tuple[str, ...] = ()):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.registries = {kind: Registry(kind, base) for kind, base in KINDS.values()}
        self.commands: dict[str, CommandEntry] = {}
        self._modules: dict[str, object] = {}  # plugin name → the module (or object) it was loaded from
        self._staged: dict[str, list[tuple[str, object, str | None]]] = {}  # plugin → (kind, object, name)
        self._crediting: str | None = None  # the plugin whose hook implementation runs now
        self._load_builtins()
        self._load_entry_points()
        for folder in plugins_dirs:
            self._load_folder(Path(folder))
        self._check_pending()
        self._collect()

    # registries by kind --------------------------------------------------------------------
    @property
    def attacks(self) -> Registry:
        return self.registries["attack"]

    @property
    def defenses(self) -> Registry:
        return self.registries["defense"]

    @property
    def victims(self) -> Registry:
        return self.registries["victim"]

    @property
    def datasets(self) -> Registry:
        return self.registries["dataset"]

    @property
    def detectors(self) -> Registry:
        return self.registries["detector"]

    @property
    def failures(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.error]

    # loading -------------------------------------------------------------------------------
    def _register(self, module, info: PluginInfo) -> None:
        try:
            other = next((name for name, m in self._modules.items() if m is module), None)
            if other is not None:
                raise ValueError(f"plugin {info.module!r} is already loaded as {other!r}")
            self.pm.register(_Credited(module, info.name, self), name=info.name)
            self._modules[info.name] = module
        except Exception as exc:  # e.g. a hook implementation with arguments the spec lacks
            info.error = f"{type(exc).__name__}: {exc}"
        self.infos.append(info)

    def _load_builtins(self) -> None:
        from uebench import __version__

        for modname in BUILTIN_PLUGINS:
            module = importlib.import_module(modname)
            self._register(module, PluginInfo(modname, "builtin", modname, __version__))

    def _load_entry_points(self) -> None:
        for ep in _wanted_entry_points():
            dist = getattr(ep, "dist", None)
            info = PluginInfo(ep.name, "entry-point", ep.value, dist.version if dist is not None else None)
            try:
                module = ep.load()
            except Exception as exc:
                info.error = _describe(exc)
                self.infos.append(info)
                continue
            info.path = getattr(module, "__file__", None)
            self._register(module, info)

    def _load_folder(self, folder: Path) -> None:
        if not folder.is_dir():
            raise FileNotFoundError(f"plugins folder {folder} does not exist")
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            modname = f"uebench_plugin_{path.stem}"
            info = PluginInfo(path.stem, "plugins-dir", modname, None, str(path))
            try:
                spec = importlib.util.spec_from_file_location(modname, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[modname] = module
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(modname, None)
                info.error = _describe(exc)
                self.infos.append(info)
                continue
            self._register(module, info)

    def _check_pending(self) -> None:
        """A misspelt hook name (``register_attack``) is reported against its plugin, which is
        then unloaded; the other plugins keep working."""
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin)
                self.pm.unregister(exc.plugin)
                for info in self.infos:
                    if info.name == name:
                        info.error = f"PluginValidationError: {exc}"

    def _collect(self) -> None:
        """Call every ``register_*`` hook through pluggy, then add each plugin's registrations
        all together or not at all (:meth:`_commit`)."""
        for hook_name, (kind, _) in KINDS.items():
            getattr(self.pm.hook, hook_name)(register=functools.partial(self._stage, kind))
        self.pm.hook.register_commands(cli=_CommandCollector(self))
        self._commit()

    # crediting -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _credit(self, plugin: str):
        """While a hook implementation of ``plugin`` runs, what it registers is ``plugin``'s."""
        saved, self._crediting = self._crediting, plugin
        try:
            yield
        finally:
            self._crediting = saved

    def _stage(self, kind: str, obj, name: str | None = None) -> None:
        """The ``register`` callback of every hook: hold ``obj`` for the plugin running now."""
        if self._crediting is None:
            raise RuntimeError(f"register({obj!r}) was called outside a uebench hook call; call it inside the hook")
        self._staged.setdefault(self._crediting, []).append((kind, obj, name))

    def _fail(self, plugin: str, error: str) -> None:
        info = self._info(plugin)
        if info is not None and info.error is None:  # the first error is the one to fix
            info.error = error

    def _info(self, plugin: str) -> PluginInfo | None:
        return next((i for i in self.infos if i.name == plugin), None)

    # all or nothing ------------------------------------------------------------------------
    def _commit(self) -> None:
        """Add each plugin's held registrations, in load order (built-ins first, so they keep
        their names), after checking every one of them; a plugin with an error (a hook that
        raised, a name clash, a bad class) gets none added and is unregistered."""
        reserved = _builtin_command_names()
        for info in self.infos:
            staged = self._staged.pop(info.name, [])
            if info.error is None:
                try:
                    self._check_all(info.name, staged, reserved)
                except (TypeError, ValueError) as exc:
                    info.error = f"{type(exc).__name__}: {exc}"
            if info.error is not None:
                if staged:
                    offered = ", ".join(f"{kind} {_name_of(obj, name)!r}" for kind, obj, name in staged)
                    info.error += f". None of the components of plugin {info.name!r} is registered (it offered {offered})"
                if self.pm.has_plugin(info.name):
                    self.pm.unregister(name=info.name)
                continue
            for kind, obj, name in staged:
                if kind == "command":
                    name = _name_of(obj, name)
                    self.commands.setdefault(name, CommandEntry(name, obj, info.name))
                    credited = self.commands[name].plugin == info.name
                else:
                    credited = self.registries[kind].add(obj, plugin=info.name).plugin == info.name
                if credited and _name_of(obj, name) not in info.provides.get(kind, []):
                    info.provides.setdefault(kind, []).append(_name_of(obj, name))

    def _check_all(self, plugin: str, staged, reserved: set[str]) -> None:
        """Raise for the first of ``plugin``'s registrations that cannot be added."""
        mine: dict[tuple[str, str], object] = {}
        for kind, obj, name in staged:
            if kind == "command":
                name = self._check_command(plugin, obj, name, reserved)
            else:
                self.registries[kind].check(obj, plugin)
                name = obj.name
            if mine.setdefault((kind, name), obj) is not obj:
                raise ValueError(f"plugin {plugin!r} registers two different {kind}s named {name!r}")

    def _check_command(self, plugin: str, command, name: str | None, reserved: set[str]) -> str:
        if not isinstance(command, click.Command):
            raise TypeError(f"command {command!r} from {plugin} must be a click.Command (use @cli.command())")
        name = _name_of(command, name)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(f"command {name!r} from {plugin} needs a lowercase kebab-case name (e.g. 'show-noise')")
        if name in reserved:
            raise ValueError(f"command {name!r} from {plugin} clashes with uebench's own command {name!r}")
        if name in self.commands and self.commands[name].command is not command:
            raise ValueError(f"command {name!r} from {plugin} clashes with the one from {self.commands[name].plugin}")
        return name


class _Credited:
    """A plugin as the plugin manager sees it: the plugin's hook implementations, each wrapped so
    that what it registers is credited to the plugin and what it raises fails that plugin alone
    (the hook call goes on to the others).  The wrappers keep the implementation's signature (so
    pluggy passes the arguments it asks for) and options (``tryfirst``, ``trylast``, ``wrapper``,
    ``hookwrapper``, ``specname``), so pluggy orders and calls them exactly as the originals."""

    def __init__(self, plugin, name: str, host: PluginHost):
        self._repr = repr(plugin)
        marker = f"{hookspecs.PROJECT}_impl"
        for attr in dir(plugin):
            opts = host.pm.parse_hookimpl_opts(plugin, attr)  # pluggy's own reading of what is a hook implementation
            if opts is None:
                continue
            function = getattr(plugin, attr)
            credited = _credited_wrapper(function, name, host) if inspect.isgeneratorfunction(function) else \
                _credited_call(function, name, host)
            setattr(credited, marker, dict(opts))
            setattr(self, attr, credited)

    def __repr__(self) -> str:
        return self._repr


def _credited_call(function, plugin: str, host: PluginHost):
    @functools.wraps(function)
    def call(*args, **kwargs):
        with host._credit(plugin):
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                host._fail(plugin, _describe(exc))
                return None

    return call


def _credited_wrapper(function, plugin: str, host: PluginHost):
    """A hook wrapper (``wrapper=True`` or ``hookwrapper=True``): its code before and after the
    ``yield`` runs credited to ``plugin``; an error in it fails ``plugin`` and the call goes on."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        gen = None
        with host._credit(plugin):
            try:
                gen = function(*args, **kwargs)
                next(gen)
            except StopIteration:
                host._fail(plugin, f"RuntimeError: hook wrapper {function.__qualname__} did not yield")
                gen = None
            except Exception as exc:
                host._fail(plugin, _describe(exc))
                gen = None
        try:
            value = yield
        except BaseException as exc:  # pluggy throws the inner error into a new-style wrapper
            if gen is None:
                raise
            with host._credit(plugin):
                try:
                    gen.throw(exc)
                except StopIteration as stop:
                    return stop.value
            raise
        if gen is None:
            return value
        with host._credit(plugin):
            try:
                gen.send(value)
            except StopIteration as stop:
                return stop.value
            except Exception as exc:
                host._fail(plugin, _describe(exc))
                return value
            gen.close()
            host._fail(plugin, f"RuntimeError: hook wrapper {function.__qualname__} has a second yield")
            return value

    return wrapper


class _CommandCollector(click.Group):
    """The ``cli`` a ``register_commands`` implementation receives: a group whose
    ``add_command`` (behind ``@cli.command()`` and ``@cli.group()``) registers the command for
    the plugin running now.  It stands in for the root group, which the CLI fills from
    :attr:`PluginHost.commands`."""

    def __init__(self, host: PluginHost):
        super().__init__(name="uebench")
        self._host = host

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        self._host._stage("command", cmd, name)


def _name_of(obj, name: str | None = None):
    return name or getattr(obj, "name", None) or repr(obj)


def _builtin_command_names() -> set[str]:
    """The command names uebench's own CLI takes: no plugin command may take one of them."""
    from uebench.cli import cli

    return set(cli.commands)


def has_third_party_plugins(plugins_dirs: tuple[str, ...] | list[str] = ()) -> bool:
    """Whether any plugin but the built-ins could load (a plugin folder, or an entry point that
    ``UEBENCH_LOAD_PLUGINS`` lets through), without loading any: only those add commands, so
    ``uebench --help`` builds the plugin host only then."""
    if plugins_dirs or os.environ.get("UEBENCH_PLUGINS_DIR"):
        return True
    return any(True for _ in _wanted_entry_points())


def _wanted_entry_points():
    """The ``uebench`` entry points ``UEBENCH_LOAD_PLUGINS`` lets through (all when it is unset)."""
    value = os.environ.get("UEBENCH_LOAD_PLUGINS")
    wanted = None if value is None else {v.strip() for v in value.split(",") if v.strip()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        if wanted is None or ep.name in wanted or (dist is not None and dist.name in wanted):
            yield ep


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


_HOSTS: dict[tuple[str, ...], PluginHost] = {}


def get_host(plugins_dirs: tuple[str, ...] | list[str] = ()) -> PluginHost:
    """The plugin host for these plugin folders, built on first use (lazy) and then reused."""
    extra = os.environ.get("UEBENCH_PLUGINS_DIR")
    key = tuple(str(Path(p).resolve()) for p in plugins_dirs) + ((str(Path(extra).resolve()),) if extra else ())
    if key not in _HOSTS:
        _HOSTS[key] = PluginHost(key)
    return _HOSTS[key]


def reset() -> None:
    """Forget loaded hosts (tests, or after installing a plugin in-process)."""
    _HOSTS.clear()
