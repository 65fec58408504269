"""Finding and loading plugins.

Bundled plugins and third-party ``sisock-plugin-*`` packages are found the same
way: through the ``sisock.plugins`` entry-point group, whose entry name is the
plugin name used in ``site/nodes.toml`` (``plugin = "weather"``).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from typing import TYPE_CHECKING, Any, Collection, Mapping

import attrs
import pluggy

from sisock_core import hookspecs
from sisock_core.model import Command, PluginSpec, Service

if TYPE_CHECKING:
    from sisock_core.config import SiteConfig

ENTRY_POINT_GROUP = "sisock.plugins"

#: Set to 1 to log every hook call, its arguments and its result (pluggy's tracing).
TRACE_ENV = "SISOCK_TRACE_PLUGINS"


class PluginError(Exception):
    """A plugin could not be found, loaded or does not declare itself properly."""


@attrs.frozen
class InstalledPlugin:
    """An entry point in the ``sisock.plugins`` group (not yet imported)."""

    name: str
    value: str
    distribution: str | None
    version: str | None


def installed_plugins() -> dict[str, InstalledPlugin]:
    """Every plugin installed in this environment, by name (nothing is imported)."""
    found: dict[str, InstalledPlugin] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found.setdefault(
            ep.name,
            InstalledPlugin(
                name=ep.name,
                value=ep.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            ),
        )
    return found


def load_plugin_object(name: str) -> Any:
    """Import the plugin named ``name`` and return its module or object."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:  # the plugin's own import error
                raise PluginError(f"plugin {name!r} ({ep.value}) failed to import: {exc}") from exc
    raise PluginError(f"plugin {name!r} is not installed")


def tracing_requested(env: Mapping[str, str] = os.environ) -> bool:
    """Whether ``SISOCK_TRACE_PLUGINS`` asks for hook-call tracing (1, true, yes, on)."""
    return env.get(TRACE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def enable_tracing(pm: pluggy.PluginManager) -> None:
    """Log every hook call of ``pm`` (arguments, then result) to twisted.logger at info
    level, namespace ``sisock.plugins.trace``."""
    from twisted.logger import Logger

    log = Logger(namespace="sisock.plugins.trace")

    def write(message: str) -> None:
        log.info("{trace}", trace=message.rstrip("\n"))

    pm.trace.root.setwriter(write)
    pm.enable_tracing()


def make_plugin_manager(plugin: Any = None, name: str | None = None) -> pluggy.PluginManager:
    """Build a PluginManager holding the hook specs and, optionally, one plugin.

    Registration is checked with ``check_pending`` so a misspelt hook name fails
    loudly instead of being ignored. With ``SISOCK_TRACE_PLUGINS=1`` in the
    environment every hook call is logged (:func:`enable_tracing`).
    """
    pm = pluggy.PluginManager("sisock")
    pm.add_hookspecs(hookspecs)
    if tracing_requested():
        enable_tracing(pm)
    if plugin is not None:
        pm.register(plugin, name=name)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from exc
    return pm


def plugin_spec(pm: pluggy.PluginManager, name: str) -> PluginSpec:
    """Ask the registered plugin for its :class:`PluginSpec`."""
    spec = pm.hook.sisock_plugin_spec()
    if not isinstance(spec, PluginSpec):
        raise PluginError(
            f"plugin {name!r} must implement sisock_plugin_spec() returning a PluginSpec, "
            f"got {type(spec).__name__}"
        )
    if spec.options is not None and not attrs.has(spec.options):
        raise PluginError(f"plugin {name!r}: options must be an attrs class")
    return spec


def load_plugin(name: str) -> tuple[pluggy.PluginManager, PluginSpec]:
    """Import plugin ``name``, register it and return its manager and spec."""
    obj = load_plugin_object(name)
    pm = make_plugin_manager(obj, name=name)
    return pm, plugin_spec(pm, name)


#: names a plugin's service cannot take (the core's own children of ``sisock up``)
RESERVED_SERVICE_NAMES = frozenset({"router", "hub", "http", "up", "site"})
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def _declared(plugin: str, hook: str, kind: type, problems: list[str], **kwargs: Any) -> list[Any]:
    """What plugin ``plugin`` returns from the list hook ``hook``: the values of type
    ``kind``; anything else, and the plugin failing to load or the hook raising, is a
    line in ``problems``."""
    try:
        pm, _spec = load_plugin(plugin)
        results = getattr(pm.hook, hook)(**kwargs)
        declared = [value for result in results for value in (result or ())]
    except Exception as exc:  # a broken plugin: say so, keep the others'
        problems.append(f"plugin {plugin!r}: {hook} failed: {type(exc).__name__}: {exc}")
        return []
    wrong = [v for v in declared if not isinstance(v, kind)]
    for value in wrong:
        problems.append(f"plugin {plugin!r}: {hook} must return {kind.__name__} values, "
                        f"got {type(value).__name__}")
    return [v for v in declared if isinstance(v, kind)]


def plugin_commands(reserved: Collection[str] = ()) -> tuple[dict[str, tuple[str, Command]], list[str]]:
    """The commands every installed plugin adds (hook ``plugin_commands``), by command
    name: ``(plugin name, Command)``; and the problems met (a plugin that cannot load, a
    command named like one in ``reserved`` or like another plugin's), one line each."""
    found: dict[str, tuple[str, Command]] = {}
    problems: list[str] = []
    for name in sorted(installed_plugins()):
        for command in _declared(name, "plugin_commands", Command, problems):
            if command.name in reserved or command.name in found:
                owner = f"plugin {found[command.name][0]!r}" if command.name in found else "the core"
                problems.append(f"plugin {name!r}: command {command.name!r} is already {owner}'s")
            else:
                found[command.name] = (name, command)
    return found, problems


def plugin_services(cfg: "SiteConfig") -> tuple[list[tuple[str, Service]], list[str]]:
    """The services the plugins of ``cfg``'s enabled nodes declare (hook
    ``plugin_services``), as ``(plugin name, Service)`` in node order; and the problems
    met (a hook raising, a bad or duplicate service name), one line each."""
    by_plugin: dict[str, list[Any]] = {}
    for node in cfg.nodes.values():
        if node.enabled:
            by_plugin.setdefault(node.plugin, []).append(node)
    services: list[tuple[str, Service]] = []
    problems: list[str] = []
    names: set[str] = set()
    for plugin, nodes in by_plugin.items():
        for service in _declared(plugin, "plugin_services", Service, problems, site=cfg, nodes=nodes):
            if not SERVICE_NAME_RE.match(service.name) or service.name in RESERVED_SERVICE_NAMES:
                problems.append(f"plugin {plugin!r}: invalid service name {service.name!r} (lowercase "
                                f"letters, digits, '_' and '-'; not {', '.join(sorted(RESERVED_SERVICE_NAMES))})")
            elif service.name in names:
                problems.append(f"plugin {plugin!r}: service {service.name!r} is declared twice")
            elif not service.command:
                problems.append(f"plugin {plugin!r}: service {service.name!r} has no command")
            else:
                names.add(service.name)
                services.append((plugin, service))
    return services, problems
