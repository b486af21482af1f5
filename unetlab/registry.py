"""The block registry: a pluggy ``PluginManager("unetlab")`` fed by entry points.

Built-in blocks live in :mod:`unetlab.plugins` and reach the registry through the same
entry-point group (``unetlab``) that third-party packages use.
"""
from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

import pluggy

from . import hookspecs
from .errors import UnetlabError
from .frameworks import FRAMEWORKS
from .options import Option, OptionSet
from .portable import PortableClass, portable

SLOTS = ("resblock", "attention", "time_embedding", "downsample", "upsample", "norm")

#: An implementation reference: a class, ``"module:attr"``, or a zero-argument callable
#: returning the class (so that a framework is imported only when its block is built).
ImplRef = Any

__all__ = ["DISABLE_AUTOLOAD_ENV", "FRAMEWORKS", "PLUGINS_ENV", "SLOTS", "BlockDef", "PluginFailure", "PluginSelection",
           "Registry", "get_registry", "make_plugin_manager", "portable"]


@dataclass
class BlockDef:
    """A block that can fill one slot of the U-Net, in every framework it supports."""

    slot: str
    name: str
    impls: Mapping[str, ImplRef]
    options: tuple[Option, ...] = ()
    doc: str = ""
    provider: str = field(default="", compare=False)
    #: optional ``check(options, where)`` raising UnetlabError for option combinations that
    #: cannot work together (run when a spec is resolved, before anything is built)
    check: Callable[[dict, str], None] | None = field(default=None, compare=False)
    #: option sets (mappings) :func:`unetlab.testing.check_block` tries besides the defaults and
    #: the variations it derives itself (other choices, flipped booleans), e.g. ``({"heads": 2},)``
    variations: tuple = field(default=(), compare=False)

    def __post_init__(self):
        if isinstance(self.impls, PortableClass):
            self.impls = self.impls.loaders()
        if self.slot not in SLOTS:
            raise UnetlabError(f"block {self.name!r}: unknown slot {self.slot!r} (slots: {', '.join(SLOTS)})")
        bad = sorted(set(self.impls) - set(FRAMEWORKS))
        if bad:
            raise UnetlabError(f"block {self.slot}/{self.name}: unknown framework {bad[0]!r} "
                               f"(frameworks: {', '.join(FRAMEWORKS)})")
        self.options = tuple(self.options)
        self.variations = tuple(dict(v) for v in self.variations)

    @property
    def key(self) -> tuple[str, str]:
        return (self.slot, self.name)

    @property
    def frameworks(self) -> tuple[str, ...]:
        return tuple(f for f in FRAMEWORKS if f in self.impls)

    def resolve_options(self, given: Mapping, where: str) -> dict:
        resolved = OptionSet(self.options).resolve(dict(given), where)
        if self.check is not None:
            self.check(resolved, where)
        return resolved

    def implementation(self, framework: str) -> type:
        """The module class for ``framework``, imported on first use."""
        if framework not in self.impls:
            raise UnetlabError(f"block {self.slot}/{self.name} has no {framework} implementation "
                               f"(it has: {', '.join(self.frameworks) or 'none'})")
        return _load_impl(self.impls[framework])


def _load_impl(ref: ImplRef) -> type:
    if isinstance(ref, type):
        return ref
    if isinstance(ref, str):
        module, _, attr = ref.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    if callable(ref):
        return ref()
    raise UnetlabError(f"cannot load block implementation from {ref!r}")


class Registry:
    """Every block and preset the installed plugins provide."""

    def __init__(self, plugin_manager: pluggy.PluginManager):
        self.pm = plugin_manager
        #: :class:`PluginFailure` of each plugin that could not be loaded
        self.failures: list[PluginFailure] = list(getattr(plugin_manager, "unetlab_failures", []))
        self.blocks: dict[tuple[str, str], BlockDef] = {}
        self.presets: dict[str, dict] = {}
        preset_providers: dict[str, str] = {}
        for provider, blocks in _hook_results(plugin_manager, "unetlab_blocks"):
            for block in blocks or []:
                if block.key in self.blocks:
                    other = self.blocks[block.key].provider
                    raise UnetlabError(f"block {block.slot}/{block.name} is registered twice: "
                                       f"by {other} and by {provider}")
                block.provider = provider
                self.blocks[block.key] = block
        for provider, presets in _hook_results(plugin_manager, "unetlab_presets"):
            for name, preset in (presets or {}).items():
                if name in self.presets:
                    raise UnetlabError(f"preset {name!r} is registered twice: "
                                       f"by {preset_providers[name]} and by {provider}")
                self.presets[name] = preset
                preset_providers[name] = provider

    def block(self, slot: str, name: str, where: str = "") -> BlockDef:
        """The block for ``slot``/``name``, or an error listing the valid names."""
        prefix = f"{where}: " if where else ""
        if slot not in SLOTS:
            raise UnetlabError(f"{prefix}unknown slot {slot!r} (slots: {', '.join(SLOTS)})")
        if (slot, name) not in self.blocks:
            valid = ", ".join(sorted(n for s, n in self.blocks if s == slot))
            broken = "".join(f"; plugin {f.distribution} failed to load" for f in self.failures)
            raise UnetlabError(f"{prefix}unknown {slot} block {name!r} (valid {slot} blocks: {valid}){broken}")
        return self.blocks[(slot, name)]

    def preset(self, name: str) -> dict:
        if name not in self.presets:
            raise UnetlabError(f"unknown preset {name!r} (presets: {', '.join(sorted(self.presets))})")
        return self.presets[name]

    def blocks_in(self, slot: str) -> list[BlockDef]:
        return [b for (s, _), b in sorted(self.blocks.items()) if s == slot]


def _hook_results(pm: pluggy.PluginManager, hook: str):
    """``(provider, result)`` of each plugin implementing ``hook``, in a stable order.

    The hook is called through pluggy, once per implementing plugin (a subset caller without
    the other implementations; wrappers stay), so that each result is credited to its provider.
    """
    impls = [i for i in getattr(pm.hook, hook).get_hookimpls() if not (i.wrapper or i.hookwrapper)]
    results = []
    for impl in impls:
        others = [i.plugin for i in impls if i.plugin is not impl.plugin]
        for result in pm.subset_hook_caller(hook, remove_plugins=others)():
            results.append((_provider_name(pm, impl.plugin_name, impl.plugin), result))
    return sorted(results, key=lambda r: r[0])


def _provider_name(pm: pluggy.PluginManager, plugin_name: str, plugin) -> str:
    module = getattr(plugin, "__name__", type(plugin).__name__)
    dist = getattr(pm, "unetlab_dists", {}).get(plugin_name)
    return f"{dist} ({module})" if dist else module


#: Set (to anything but empty or 0) to load only unetlab's own blocks and the plugins named
#: with ``-p`` (as pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``).
DISABLE_AUTOLOAD_ENV = "UNETLAB_DISABLE_PLUGIN_AUTOLOAD"
#: Comma-separated plugins to load (``NAME``) or skip (``no:NAME``): an entry-point name, a
#: distribution name or, to load, a module.  ``unetlab -p NAME`` adds to it, so that the
#: processes a command starts see the same plugins.
PLUGINS_ENV = "UNETLAB_PLUGINS"
BUILTIN_DISTRIBUTION = "unetlab"


@dataclass(frozen=True)
class PluginSelection:
    """Which third-party plugins to load: all (autoload) or only those named, minus those skipped."""

    autoload: bool = True
    named: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls, environ=None) -> "PluginSelection":
        environ = os.environ if environ is None else environ
        names = [n.strip() for n in environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
        return cls(autoload=environ.get(DISABLE_AUTOLOAD_ENV, "") in ("", "0"),
                   named=tuple(n for n in names if not n.startswith("no:")),
                   skipped=tuple(n[3:] for n in names if n.startswith("no:")))

    def wants(self, dist_name: str, ep_name: str) -> bool:
        if dist_name == BUILTIN_DISTRIBUTION:
            return True
        if {dist_name, ep_name} & set(self.skipped):
            return False
        return self.autoload or bool({dist_name, ep_name} & set(self.named))


@dataclass(frozen=True)
class PluginFailure:
    """A plugin entry point that could not be imported."""

    distribution: str
    entry_point: str
    value: str
    error: str

    def __str__(self) -> str:
        return (f"plugin {self.distribution} (entry point {self.entry_point} = {self.value}) failed to load, "
                f"its blocks are unavailable: {self.error}")


def make_plugin_manager(extra_plugins: Iterable = (), selection: PluginSelection | None = None
                        ) -> pluggy.PluginManager:
    """A plugin manager with the selected ``unetlab`` entry points loaded, plus ``extra_plugins``.

    ``selection`` defaults to :meth:`PluginSelection.from_environment`.  Each entry point is
    registered under ``distribution:name``, so two packages that happen to use the same
    entry-point name are both loaded (and any block they both provide is reported as a
    duplicate) instead of one silently shadowing the other.  An entry point that fails to
    import is recorded in ``pm.unetlab_failures`` and skipped; a plugin named explicitly that
    cannot be found or loaded is an error.
    """
    from importlib.metadata import distributions

    selection = selection or PluginSelection.from_environment()
    pm = pluggy.PluginManager("unetlab")
    pm.add_hookspecs(hookspecs)
    pm.unetlab_dists = {}
    pm.unetlab_failures = []
    seen, found = set(), set()
    for dist in distributions():
        dist_name = dist.metadata["Name"]
        for ep in dist.entry_points:
            if ep.group != "unetlab" or (dist_name, ep.name) in seen:
                continue
            seen.add((dist_name, ep.name))
            found |= {dist_name, ep.name}
            if not selection.wants(dist_name, ep.name):
                continue
            name = f"{dist_name}:{ep.name}"
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin is one clear line
                failure = PluginFailure(dist_name, ep.name, ep.value, f"{type(exc).__name__}: {exc}".splitlines()[0])
                if {dist_name, ep.name} & set(selection.named):
                    raise UnetlabError(str(failure)) from None
                pm.unetlab_failures.append(failure)
                continue
            pm.unetlab_dists[name] = dist_name
            register_checked(pm, plugin, name)
    for module_name in selection.named:
        if module_name not in found:
            module = _import_plugin_module(module_name)
            if not pm.is_registered(module):
                register_checked(pm, module, module_name)
    for plugin in extra_plugins:
        register_checked(pm, plugin)
    check_hook_names(pm)
    return pm


def register_checked(pm: pluggy.PluginManager, plugin, name: str | None = None) -> None:
    """``pm.register``, with a hook implementation that does not fit its spec as one line."""
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        plugin_name = name or pm.get_name(plugin) or _provider_name(pm, "", plugin)
        detail = " ".join(str(exc).split())
        raise UnetlabError(f"plugin {_provider_name(pm, plugin_name, plugin)}: {detail}") from None


def check_hook_names(pm: pluggy.PluginManager) -> None:
    """Raise one line naming the plugin and the hook when a plugin implements a hook unetlab
    does not have (a misspelling such as ``unetlab_blokcs``), as ``pm.check_pending()`` finds."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        known = sorted(name for name, caller in vars(pm.hook).items() if getattr(caller, "spec", None))
        for hook, caller in sorted(vars(pm.hook).items()):
            if getattr(caller, "spec", None) is not None or not hasattr(caller, "get_hookimpls"):
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                close = difflib.get_close_matches(hook, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UnetlabError(f"plugin {_provider_name(pm, impl.plugin_name, impl.plugin)}: unknown hook "
                                   f"{hook!r} (unetlab's hooks: {', '.join(known)}){hint}") from None
        raise


def _import_plugin_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise UnetlabError(f"plugin {name!r}: no unetlab entry point, distribution or module of that name "
                           f"({type(exc).__name__}: {exc})") from None


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (entry points are read once).

    A plugin that failed to load is reported once, one line on stderr; the rest works.
    """
    registry = Registry(make_plugin_manager())
    if not any(b.provider.startswith(f"{BUILTIN_DISTRIBUTION} (") for b in registry.blocks.values()):
        raise UnetlabError("no built-in blocks found: install unetlab (pip install -e .) so that "
                           "its entry points are registered")
    for failure in registry.failures:
        print(f"unetlab: {failure}", file=sys.stderr)
    return registry
