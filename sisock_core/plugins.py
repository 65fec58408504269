"""Finding and loading plugins.

Bundled plugins and third-party ``sisock-plugin-*`` packages are found the same
way: through the ``sisock.plugins`` entry-point group, whose entry name is the
plugin name used in ``site/nodes.toml`` (``plugin = "weather"``).
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any, Mapping

import attrs
import pluggy

from sisock_core import hookspecs
from sisock_core.model import PluginSpec

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
