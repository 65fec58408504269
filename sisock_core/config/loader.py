"""Reading a site file: TOML parsed, every table structured and checked, node tables
handed to their plugins' options classes, the environment applied, every problem
collected into one :class:`~sisock_core.config.problems.ConfigError`."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping

import attrs

from sisock_core.config.converter import make_converter, make_env_converter
from sisock_core.config.default_site import DEFAULT_SITE_TOML, EMBEDDED_SOURCE
from sisock_core.config.environment import EnvOverrides
from sisock_core.config.problems import (
    ConfigError,
    KeyPath,
    did_you_mean,
    expected,
    format_key_path,
    format_problem,
    message,
    unknown_key,
)
from sisock_core.config.schema import (
    NODE_CORE_KEYS,
    NODE_NAME_RE,
    TOP_LEVEL_KEYS,
    HttpConfig,
    HubConfig,
    NodeConfig,
    NodeCore,
    RouterConfig,
    SiteConfig,
    bad_node_name,
    check_log_level,
    check_port,
    default_state_dir,
)
from sisock_core.config.validation import Structurer
from sisock_core.model import PluginSpec
from sisock_core.plugins import PluginError, installed_plugins, load_plugin

_TABLES: dict[str, type] = {"router": RouterConfig, "hub": HubConfig, "http": HttpConfig}
_PORTS = {("router", "tls_port"), ("router", "ocs_port"), ("http", "port")}
_ROUTER_PATHS = ("tls_cert", "tls_key", "ca_cert", "secrets_file")

PluginLoader = Callable[[str], tuple[Any, PluginSpec]]


def resolve_path(value: str | Path, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = base_dir / p
    return Path(os.path.normpath(p))


def toml_error(source: str, doc: str, exc: tomllib.TOMLDecodeError) -> str:
    """``file: line N, column M: reason`` from tomllib's message."""
    text = str(exc)
    m = re.match(r"^(.*) \(at line (\d+), column (\d+)\)$", text, re.S)
    if m:
        return f"{source}: line {m.group(2)}, column {m.group(3)}: {m.group(1)}"
    m = re.match(r"^(.*) \(at end of document\)$", text, re.S)
    if m:
        lines = doc.split("\n")
        return f"{source}: line {len(lines)}, column {len(lines[-1]) + 1}: {m.group(1)}"
    return f"{source}: {text}"


class Loader(EnvOverrides):
    """One load: parses, structures, applies the environment, collects problems."""

    def __init__(
        self,
        source: str,
        env: Mapping[str, str],
        base_dir: Path,
        plugin_loader: PluginLoader,
        installed: Callable[[], Iterable[str]],
        only_nodes: Collection[str] | None = None,
        only_plugins: Collection[str] | None = None,
    ) -> None:
        self.source = source
        self.only_nodes = None if only_nodes is None else set(only_nodes)
        self.only_plugins = None if only_plugins is None else set(only_plugins)
        self.env = {k: v for k, v in env.items() if v != ""}
        self.base_dir = base_dir
        self.plugin_loader = plugin_loader
        self.installed = installed
        self.conv = make_converter()
        self.env_conv = make_env_converter()
        self.raw: dict[str, Any] = {}
        self.file_problems: list[tuple[KeyPath, str]] = []
        self.env_problems: list[str] = []
        #: keys whose value came from the environment: path -> "env VAR"
        self.origins: dict[KeyPath, str] = {}
        self._plugins: dict[str, tuple[Any, PluginSpec] | str] = {}

    # -- problems ----------------------------------------------------------------

    def problem(self, path: KeyPath, reason: str) -> None:
        self.file_problems.append((path, reason))

    def env_problem(self, var: str, reason: str) -> None:
        self.env_problems.append(format_problem(self.source, f"env {var}", reason))

    def _position(self, path: KeyPath) -> tuple[int, ...]:
        """Where a key sits in the file: indexes of each component (tables in the order
        they first appear); keys missing from the file sort at the end of their table."""
        pos, value = [], self.raw
        for part in path:
            if isinstance(value, dict) and part in value:
                pos.append(list(value).index(part))
                value = value[part]
            elif isinstance(value, list) and isinstance(part, int) and part < len(value):
                pos.append(part)
                value = value[part]
            else:
                pos.append(len(value) if isinstance(value, (dict, list)) else 0)
                value = None
        return tuple(pos)

    def _label(self, path: KeyPath) -> str:
        for i in range(len(path), 0, -1):
            if path[:i] in self.origins:
                return self.origins[path[:i]]
        return format_key_path(path)

    def all_problems(self) -> list[str]:
        ordered = sorted(self.file_problems, key=lambda p: self._position(p[0]))
        lines = [format_problem(self.source, self._label(path), reason) for path, reason in ordered]
        lines += self.env_problems
        return list(dict.fromkeys(lines))  # the same problem once

    # -- the file ----------------------------------------------------------------

    def load(self, text: str) -> SiteConfig:
        try:
            self.raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([toml_error(self.source, text, exc)]) from None
        except RecursionError:  # tomllib recurses per nesting level
            raise ConfigError([f"{self.source}: arrays or tables nested too deeply to read"]) from None

        for key in self.raw:
            if key not in TOP_LEVEL_KEYS:
                self.problem((key,), unknown_key(key, TOP_LEVEL_KEYS))

        state_dir = self._state_dir()
        log_level = self._log_level()
        summaries_db = self._summaries_db()
        tables = {name: self._table(name, cl) for name, cl in _TABLES.items()}
        nodes = self._nodes()
        tables, nodes = self._apply_env(tables, nodes)

        problems = self.all_problems()
        if problems:
            raise ConfigError(problems)
        if "SISOCK_STATE_DIR" in self.env:
            state_dir = Path(os.path.abspath(Path(self.env["SISOCK_STATE_DIR"]).expanduser()))
        return SiteConfig(
            path=self.source,
            state_dir=state_dir,
            log_level=log_level,
            summaries_db=summaries_db,
            router=tables["router"],
            hub=tables["hub"],
            http=tables["http"],
            nodes=nodes,
        )

    def _state_dir(self) -> Path:
        if "state_dir" not in self.raw:
            return default_state_dir(self.env)
        value = self.raw["state_dir"]
        if not isinstance(value, str):
            self.problem(("state_dir",), str(expected("a string", value)))
            return default_state_dir(self.env)
        return resolve_path(value, self.base_dir)

    def _summaries_db(self) -> str | None:
        if "summaries_db" not in self.raw:
            return None
        value = self.raw["summaries_db"]
        if not isinstance(value, str):
            self.problem(("summaries_db",), str(expected("a string", value)))
            return None
        from sisock_core.sqldb import DatabaseConfigError, parse_db_url

        try:
            url = parse_db_url(value)
        except DatabaseConfigError as exc:
            self.problem(("summaries_db",), str(exc))
            return None
        if url.kind == "sqlite":  # a relative file is relative to the site file, as state_dir
            return f"sqlite:///{resolve_path(url.path, self.base_dir)}"
        return value

    def _log_level(self) -> str:
        level = "info"
        if "log_level" in self.raw:
            value = self.raw["log_level"]
            if not isinstance(value, str):
                self.problem(("log_level",), str(expected("a string", value)))
            else:
                checked, reason = check_log_level(value)
                if reason:
                    self.problem(("log_level",), reason)
                else:
                    level = checked or level
        if "LOGLEVEL" in self.env:
            checked, reason = check_log_level(self.env["LOGLEVEL"])
            if reason:
                self.env_problem("LOGLEVEL", reason)
            else:
                level = checked or level
        return level

    def _table(self, name: str, cl: type) -> Any:
        raw = self.raw.get(name, {})
        if not isinstance(raw, dict):
            self.problem((name,), str(expected("a table", raw)))
            return None
        value, problems = Structurer(self.conv).structure(raw, cl, (name,))
        for path, reason in problems:
            self.problem(path, reason)
        bad_port = False
        for table, field in _PORTS:
            port = raw.get(field)
            if table == name and isinstance(port, int) and not isinstance(port, bool):
                reason = check_port(port)
                if reason:
                    self.problem((name, field), reason)
                    bad_port = True
        if value is None:
            return None
        if name == "router":
            paths = {
                f: str(resolve_path(getattr(value, f), self.base_dir))
                for f in _ROUTER_PATHS
                if getattr(value, f) is not None
            }
            value = attrs.evolve(value, **paths)
        if name == "http" and value.password_file is not None:
            value = attrs.evolve(
                value, password_file=str(resolve_path(value.password_file, self.base_dir))
            )
        return None if bad_port else value

    def _nodes(self) -> dict[str, NodeConfig | None]:
        raw = self.raw.get("nodes", {})
        if not isinstance(raw, dict):
            self.problem(("nodes",), str(expected("a table", raw)))
            return {}
        nodes: dict[str, NodeConfig | None] = {}
        for name, table in raw.items():
            if self._wanted(name, table):
                nodes[name] = self._node(name, table)
        return nodes

    def _wanted(self, name: str, table: Any) -> bool:
        """Whether this load reads the node table ``name`` (and imports its plugin)."""
        if self.only_nodes is not None and name not in self.only_nodes:
            return False
        if self.only_plugins is not None:
            return isinstance(table, dict) and table.get("plugin") in self.only_plugins
        return True

    def _plugin(self, name: str) -> tuple[Any, PluginSpec] | str:
        """The loaded plugin, or why it cannot be loaded (cached per plugin name)."""
        if name not in self._plugins:
            installed = sorted(self.installed())
            if name not in installed:
                self._plugins[name] = (
                    f"plugin {name!r} is not installed{did_you_mean(name, installed)}; "
                    f"installed: {', '.join(installed) if installed else 'none'}"
                )
            else:
                try:
                    loaded = self.plugin_loader(name)
                except PluginError as exc:
                    self._plugins[name] = str(exc)
                except Exception as exc:  # a plugin bug: show it, keep checking the file
                    self._plugins[name] = f"plugin {name!r} failed to load: {message(exc)}"
                else:
                    options = loaded[1].options
                    if options is not None and not attrs.has(options):
                        self._plugins[name] = f"plugin {name!r}: options must be an attrs class"
                    else:
                        self._plugins[name] = loaded
        return self._plugins[name]

    def _node(self, name: str, table: Any) -> NodeConfig | None:
        path: KeyPath = ("nodes", name)
        ok = True
        if not NODE_NAME_RE.match(name):
            self.problem(path, bad_node_name(name))
            ok = False
        if not isinstance(table, dict):
            self.problem(path, str(expected("a table", table)))
            return None
        core_raw = {k: v for k, v in table.items() if k in NODE_CORE_KEYS}
        options_raw = {k: v for k, v in table.items() if k not in NODE_CORE_KEYS}
        core, problems = Structurer(self.conv).structure(core_raw, NodeCore, path)
        for p, reason in problems:
            self.problem(p, reason)
        max_points = table.get("max_points")
        if isinstance(max_points, int) and not isinstance(max_points, bool) and max_points < 0:
            self.problem(path + ("max_points",), f"must be >= 0, got {max_points}")
            ok = False
        process = table.get("process")
        if isinstance(process, str) and not NODE_NAME_RE.match(process):
            self.problem(path + ("process",), f'must be "own" or a group name (lowercase letters, digits '
                                              f"and '_', starting with a letter), got {process!r}")
            ok = False
        plugin_name = table.get("plugin")
        if not isinstance(plugin_name, str):
            return None  # reported above as missing or of the wrong type
        loaded = self._plugin(plugin_name)
        if isinstance(loaded, str):
            self.problem(path + ("plugin",), loaded)
            return None
        spec = loaded[1]
        options = self._options(path, plugin_name, spec, options_raw)
        if core is None or options is _FAILED or not ok:
            return None
        return NodeConfig(
            name=name,
            plugin=plugin_name,
            description=core.description if core.description is not None else spec.description,
            enabled=core.enabled,
            max_points=core.max_points or None,
            options=options,
            process=core.process,
        )

    def _options(self, path: KeyPath, plugin: str, spec: PluginSpec, raw: dict[str, Any]) -> Any:
        """The plugin's options instance, with the plugin's environment variables applied."""
        cl = spec.options
        if cl is None:
            for key in raw:
                reason = unknown_key(key, NODE_CORE_KEYS)
                if reason == "unknown key":
                    reason += f" (plugin {plugin!r} takes no options)"
                self.problem(path + (key,), reason)
            return _FAILED if raw else None
        env_values, failed_env = self._plugin_env_values(plugin, spec)
        merged = dict(raw)
        later: dict[str, tuple[str, Any]] = {}
        for option, (var, value) in env_values.items():
            if option in raw:
                later[option] = (var, value)
            else:  # fills a key the file leaves out (maybe a required one)
                merged[option] = value
                self.origins[path + (option,)] = f"env {var}"
        structurer = Structurer(self.conv, also_valid={path: list(NODE_CORE_KEYS)})
        value, problems = structurer.structure(merged, cl, path)
        for p, reason in problems:
            key = p[len(path)] if len(p) > len(path) else None
            if reason == "missing required key" and key in failed_env:
                continue  # the variable meant to provide it is malformed; reported already
            self.problem(p, reason)
        if value is None:
            return _FAILED
        for option, (var, new) in later.items():
            try:
                value = attrs.evolve(value, **{option: new})
            except Exception as exc:
                self.env_problem(var, message(exc))
                return _FAILED
        return value


_FAILED = object()  # marks options that could not be structured (problems recorded)


def load_config_text(
    text: str,
    source_name: str = "<string>",
    env: Mapping[str, str] = os.environ,
    *,
    base_dir: str | Path | None = None,
    plugin_loader: PluginLoader = load_plugin,
    installed: Callable[[], Iterable[str]] = installed_plugins,
    only_nodes: Collection[str] | None = None,
    only_plugins: Collection[str] | None = None,
) -> SiteConfig:
    """Parse site-config ``text``; ``source_name`` names it in problems and ``path``.

    Relative paths are resolved against ``base_dir`` (default: the directory of
    ``source_name``). ``plugin_loader`` (name -> ``(plugin manager, PluginSpec)``)
    and ``installed`` (plugin names) default to the real entry-point ones; tests
    inject fakes. Raises :class:`ConfigError` listing every problem.

    Only the node tables a process needs are read, and only their plugins imported:
    ``only_nodes`` (names of ``[nodes.<name>]`` tables) and ``only_plugins`` (plugin
    names) leave every other node out of :attr:`SiteConfig.nodes`, unchecked; ``()``
    reads no node (the router, hub, bridge and clients). ``None`` (the default) reads
    them all, as ``sisock check`` and ``sisock up`` do.
    """
    base = Path(base_dir) if base_dir is not None else Path(source_name).parent
    loader = Loader(source_name, env, Path(os.path.abspath(base)), plugin_loader, installed,
                    only_nodes=only_nodes, only_plugins=only_plugins)
    return loader.load(text)


def load_config(
    path: str | Path | None,
    env: Mapping[str, str] = os.environ,
    *,
    plugin_loader: PluginLoader = load_plugin,
    installed: Callable[[], Iterable[str]] = installed_plugins,
    only_nodes: Collection[str] | None = None,
    only_plugins: Collection[str] | None = None,
) -> SiteConfig:
    """Load the site file at ``path`` (``None``: :data:`DEFAULT_SITE_TOML`).

    The environment (``env``) overrides the file; see the module docstring. Raises
    :class:`ConfigError` listing every problem, one line each
    (``<file>: <key path>: <reason>``). ``only_nodes`` and ``only_plugins``: see
    :func:`load_config_text`.
    """
    if path is None:
        return load_config_text(
            DEFAULT_SITE_TOML, EMBEDDED_SOURCE, env,
            base_dir=Path.cwd(), plugin_loader=plugin_loader, installed=installed,
            only_nodes=only_nodes, only_plugins=only_plugins,
        )
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    return load_config_text(
        text, source, env, plugin_loader=plugin_loader, installed=installed,
        only_nodes=only_nodes, only_plugins=only_plugins,
    )
