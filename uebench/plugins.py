"""Finding and loading plugins: built-ins, the ``uebench`` entry-point group, ``--plugins-dir``.

Loading is lazy (nothing happens at import time) and happens once per set of plugin
folders.  ``UEBENCH_LOAD_PLUGINS`` controls third-party loading: unset loads every installed
plugin, an empty string loads none, and a comma-separated list loads only those entry points
(by entry-point or distribution name).  Built-ins always load.  A plugin that fails to import or
to register is recorded with its error and skipped; the rest keep working.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import pluggy

from uebench import hookspecs
from uebench.attacks.base import Attack
from uebench.datasets.base import Dataset
from uebench.defenses.base import Defense
from uebench.registry import Registry
from uebench.victims.base import Victim

ENTRY_POINT_GROUP = "uebench"
BUILTIN_PLUGINS = (
    "uebench.attacks.baselines",
    "uebench.attacks.errmin_pgd",
    "uebench.attacks.errmin_adam",
    "uebench.attacks.from_file",
    "uebench.attacks.errmax",
    "uebench.attacks.mixtures",
    "uebench.defenses.standard",
    "uebench.defenses.cutmix",
    "uebench.defenses.mixup",
    "uebench.defenses.cutout",
    "uebench.defenses.autoaugment",
    "uebench.defenses.adversarial",
    "uebench.defenses.early_stop",
    "uebench.defenses.squeeze",
    "uebench.defenses.ueraser",
    "uebench.victims.cifar",
    "uebench.victims.timm_victims",
    "uebench.datasets.cifar10",
    "uebench.datasets.cifar100",
    "uebench.datasets.svhn",
    "uebench.datasets.imagenet_subset",
)
KINDS = {  # hook name → (registry kind, base class)
    "register_attacks": ("attack", Attack),
    "register_defenses": ("defense", Defense),
    "register_victims": ("victim", Victim),
    "register_datasets": ("dataset", Dataset),
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


class PluginHost:
    """The plugin manager plus one registry per kind, filled through the ``register_*`` hooks."""

    def __init__(self, plugins_dirs: tuple[str, ...] = ()):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.registries = {kind: Registry(kind, base) for kind, base in KINDS.values()}
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
    def failures(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.error]

    # loading -------------------------------------------------------------------------------
    def _register(self, module, info: PluginInfo) -> None:
        try:
            self.pm.register(module, name=info.name)
        except Exception as exc:  # e.g. a hook implementation with arguments the spec lacks
            info.error = f"{type(exc).__name__}: {exc}"
        self.infos.append(info)

    def _load_builtins(self) -> None:
        from uebench import __version__

        for modname in BUILTIN_PLUGINS:
            module = importlib.import_module(modname)
            self._register(module, PluginInfo(modname, "builtin", modname, __version__))

    def _wanted(self) -> set[str] | None:
        value = os.environ.get("UEBENCH_LOAD_PLUGINS")
        if value is None:
            return None
        return {v.strip() for v in value.split(",") if v.strip()}

    def _load_entry_points(self) -> None:
        wanted = self._wanted()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.name if dist is not None else None
            if wanted is not None and ep.name not in wanted and dist_name not in wanted:
                continue
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
        """Call each plugin's ``register_*`` hooks, tagging every entry with its plugin."""
        by_name = {i.name: i for i in self.infos}
        for hook_name, (kind, _) in KINDS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():  # registration order: built-ins first, they win clashes
                info = by_name.get(impl.plugin_name)
                registry = self.registries[kind]

                def register(cls, _plugin=impl.plugin_name, _registry=registry, _info=info, _kind=kind):
                    _registry.add(cls, plugin=_plugin)
                    if _info is not None:
                        _info.provides.setdefault(_kind, []).append(cls.name)

                try:
                    impl.function(**{arg: register for arg in impl.argnames})
                except Exception as exc:
                    if info is not None:
                        info.error = _describe(exc)

    def commands(self, cli) -> None:
        """Let plugins add click commands to ``cli``."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(**{arg: cli for arg in impl.argnames})
            except Exception as exc:
                info = next((i for i in self.infos if i.name == impl.plugin_name), None)
                if info is not None:
                    info.error = _describe(exc)


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
