"""The environment variables of the original sisock containers, applied over the site file.

``CROSSBAR_HOST``, ``CROSSBAR_TLS_PORT``, ``CROSSBAR_OCS_PORT``, ``CROSSBAR_PATH``,
``WAMP_USER``, ``PORT``, ``LOGLEVEL`` and ``MAX_POINTS`` set the core's keys (a remote
``CROSSBAR_HOST`` also turns off starting the router and the hub here); each plugin's
:attr:`~sisock_core.model.PluginSpec.env` maps further variables to its options, or to
the node's ``name`` or ``description``. A malformed variable is a problem named
``env VAR``.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from sisock_core.config.converter import env_int
from sisock_core.config.problems import WrongValue, message
from sisock_core.config.schema import NODE_NAME_RE, NodeConfig, bad_node_name, check_port, check_ws_path
from sisock_core.config.validation import Structurer
from sisock_core.hosts import is_loopback
from sisock_core.model import PluginSpec


class EnvOverrides:
    """The environment part of a site-file load (mixed into the loader, whose ``env``,
    ``raw``, ``env_conv``, ``origins``, loaded plugins and ``env_problem`` it uses)."""

    env: dict[str, str]
    raw: dict[str, Any]

    def _env_target(
        self, plugin: str, spec: PluginSpec, var: str, target: str
    ) -> tuple[str, Any] | None:
        """``("option", type)`` or ``("node", key)`` for a plugin variable, or None."""
        cl = spec.options
        if cl is not None:
            try:
                attrs.resolve_types(cl)
            except Exception as exc:
                reason = f"plugin {plugin!r}: cannot resolve option types: {message(exc)}"
                self.env_problem(var, reason)
                return None
            fields = attrs.fields_dict(cl)
            if target in fields and fields[target].init:
                return "option", fields[target].type
        if target in ("name", "description"):
            return "node", target
        self.env_problem(var, f"plugin {plugin!r} maps it to unknown option {target!r}")
        return None

    def _plugin_env_values(
        self, plugin: str, spec: PluginSpec
    ) -> tuple[dict[str, tuple[str, Any]], set[str]]:
        """Option values from the plugin's variables, converted to the option types."""
        values: dict[str, tuple[str, Any]] = {}
        failed: set[str] = set()
        for var, target in spec.env.items():
            if var not in self.env:
                continue
            kind = self._env_target(plugin, spec, var, target)
            if kind is None or kind[0] != "option":
                continue
            value, problems = Structurer(self.env_conv).structure(self.env[var], kind[1], ())
            if problems:
                for _, reason in problems:
                    self.env_problem(var, reason)
                failed.add(target)
            else:
                values[target] = (var, value)
        return values, failed

    def _env_int(self, var: str, check: Callable[[int], str | None]) -> int | None:
        if var not in self.env:
            return None
        try:
            value = env_int(self.env[var], int)
        except WrongValue as exc:
            self.env_problem(var, str(exc))
            return None
        reason = check(value)
        if reason:
            self.env_problem(var, reason)
            return None
        return value

    def _apply_env(
        self, tables: dict[str, Any], nodes: dict[str, NodeConfig | None]
    ) -> tuple[dict[str, Any], dict[str, NodeConfig]]:
        router: dict[str, Any] = {}
        if "CROSSBAR_HOST" in self.env:
            router["host"] = self.env["CROSSBAR_HOST"].strip()
        for var, field in (("CROSSBAR_TLS_PORT", "tls_port"), ("CROSSBAR_OCS_PORT", "ocs_port")):
            port = self._env_int(var, check_port)
            if port is not None:
                router[field] = port
        if "WAMP_USER" in self.env:
            router["wamp_user"] = self.env["WAMP_USER"]
        if "CROSSBAR_PATH" in self.env:
            path = self.env["CROSSBAR_PATH"].strip()
            try:
                check_ws_path(path)
            except ValueError as exc:
                self.env_problem("CROSSBAR_PATH", str(exc))
            else:
                router["path"] = path
        http_port = self._env_int("PORT", check_port)
        max_points = self._env_int(
            "MAX_POINTS", lambda n: f"must be >= 0, got {n}" if n < 0 else None
        )

        if "host" in router and not is_loopback(router["host"]):
            # the router runs elsewhere (the original's CROSSBAR_HOST=sisock-crossbar)
            for name in ("router", "hub"):
                raw = self.raw.get(name)
                explicit = isinstance(raw, dict) and "start" in raw
                if not explicit and tables[name] is not None:
                    tables[name] = attrs.evolve(tables[name], start=False)
        if tables["router"] is not None and router:
            tables["router"] = attrs.evolve(tables["router"], **router)
        if tables["http"] is not None and http_port is not None:
            tables["http"] = attrs.evolve(tables["http"], port=http_port)

        renamed: dict[str, tuple[str, str]] = {}  # old name -> (new name, variable)
        for name, node in list(nodes.items()):
            if node is None:
                continue
            if max_points is not None:
                node = attrs.evolve(node, max_points=max_points or None)
            loaded = self._plugins.get(node.plugin)
            if isinstance(loaded, tuple):
                node, new_name = self._node_env(node, loaded[1])
                if new_name is not None:
                    renamed[name] = new_name
            nodes[name] = node

        final: dict[str, NodeConfig] = {}
        owners: dict[str, list[str | None]] = {}
        for name, node in nodes.items():
            new, var = renamed.get(name, (name, None))
            owners.setdefault(new, []).append(var)
            if node is not None:
                final.setdefault(new, attrs.evolve(node, name=new))
        for new, vars_ in owners.items():
            if len(vars_) > 1:
                var = next((v for v in vars_ if v is not None), None)
                if var is not None:
                    self.env_problem(var, f"duplicate node name {new!r}")
        return tables, final

    def _node_env(
        self, node: NodeConfig, spec: PluginSpec
    ) -> tuple[NodeConfig, tuple[str, str] | None]:
        """Apply the node-level targets ("name", "description") of a plugin's variables."""
        new_name = None
        for var, target in spec.env.items():
            if var not in self.env or target not in ("name", "description"):
                continue
            if spec.options is not None and target in attrs.fields_dict(spec.options):
                continue  # an option of that name: applied with the options
            value = self.env[var].strip()
            if target == "description":
                node = attrs.evolve(node, description=value)
            elif not NODE_NAME_RE.match(value):
                self.env_problem(var, bad_node_name(value))
            else:
                new_name = (value, var)
        return node, new_name
