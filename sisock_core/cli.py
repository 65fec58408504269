"""The ``sisock`` command line.

``sisock up`` runs a whole site (router, hub, the data nodes: by default one process per
plugin, see :mod:`sisock_core.nodegroups`);
``sisock check`` validates a site file; ``sisock nodes``, ``fields`` and ``get``
query a running site. ``hub``, ``node``, ``http`` and ``router`` run one component alone.
Plugins add their own commands (hook ``plugin_commands``); they are imported only when
one of those, or the help listing them, is asked for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from typing import Any, Mapping, Sequence

CONFIG_HELP = (
    "site file (TOML); default: $SISOCK_CONFIG, else the embedded defaults "
    "(the example weather node)"
)


# -- helpers -------------------------------------------------------------------


def _config_path(arg: str | None) -> str | None:
    return arg or os.environ.get("SISOCK_CONFIG") or None


#: ``_load(..., nodes=NO_NODES)``: read no node table, import no plugin (router, hub,
#: bridge, clients)
NO_NODES: tuple[str, ...] = ()


def _load(arg: str | None, nodes: Sequence[str] | None = None,
          plugins: Sequence[str] | None = None):
    """The site config (exit 2 with its problems); ``nodes``/``plugins``: only these node
    tables, or the nodes of these plugins, are read and their plugins imported (``None``:
    all, as ``check`` and ``up``)."""
    from sisock_core.config import ConfigError, load_config

    try:
        return load_config(_config_path(arg), only_nodes=nodes, only_plugins=plugins)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2)


def _config_args(arg: str | None) -> list[str]:
    path = _config_path(arg)
    return ["--config", os.path.abspath(path)] if path else []


def parse_time(text: str) -> float:
    """A sisock time: a UNIX time, a number <= 0 (seconds before now), or ISO-8601 UTC.

    An ISO time is absolute whatever its value: one at or before the epoch becomes
    :data:`~sisock_core.timeutil.EARLIEST_ABSOLUTE_TIME`, never "seconds before now"."""
    from sisock_core.timeutil import absolute

    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use a UNIX time, -3600 for an hour ago, or 2017-07-20T00:00Z)"
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return absolute(when.timestamp())


def _run_reactor(main: Any, *args: Any) -> None:
    """Run ``main(reactor, *args)`` (a coroutine function) under the reactor."""
    from twisted.internet import defer, task

    def runner(reactor: Any) -> Any:
        return defer.Deferred.fromCoroutine(main(reactor, *args))

    task.react(runner)


# -- client commands ---------------------------------------------------------------


async def _with_consumer(reactor: Any, cfg: Any, work: Any, timeout: float = 15.0) -> Any:
    from sisock_core.client import with_session

    return await with_session(reactor, cfg, work, timeout=timeout)


def _fail(msg: str) -> None:
    sys.stderr.write(f"sisock: {msg}\n")
    raise SystemExit(1)


def _wamp_error_text(exc: Exception) -> str:
    from autobahn.wamp.exception import ApplicationError

    if isinstance(exc, ApplicationError):
        if exc.error == "wamp.error.no_such_procedure":
            return "no such node is serving (see 'sisock nodes')"
        return f"{exc.error}: {' '.join(str(a) for a in exc.args)}"
    return str(exc)


def cmd_nodes(args: argparse.Namespace) -> None:
    from sisock_core.wamp import HUB_LIST

    cfg = _load(args.config, NO_NODES)

    async def main(reactor: Any) -> None:
        try:
            nodes = await _with_consumer(reactor, cfg, lambda s: s.call(HUB_LIST))
        except Exception as exc:
            _fail(_wamp_error_text(exc))
        if args.json:
            print(json.dumps(nodes, indent=1))
            return
        if not nodes:
            print("no data nodes are live")
        width = max((len(n["name"]) for n in nodes), default=4)
        for n in nodes:
            print(f"{n['name']:<{width}}  {n['description']}")

    _run_reactor(main)


def cmd_fields(args: argparse.Namespace) -> None:
    from sisock_core.wamp import node_uri

    cfg = _load(args.config, NO_NODES)

    async def main(reactor: Any) -> None:
        try:
            fields, timelines = await _with_consumer(
                reactor, cfg, lambda s: s.call(node_uri(args.node, "get_fields"), args.start, args.end)
            )
        except Exception as exc:
            _fail(f"{args.node}: {_wamp_error_text(exc)}")
        if args.json:
            print(json.dumps({"fields": fields, "timelines": timelines}, indent=1))
            return
        rows = [("FIELD", "TYPE", "UNITS", "TIMELINE", "DESCRIPTION")]
        for name in sorted(fields):
            f = fields[name]
            rows.append((name, f.get("type") or "", f.get("units") or "", f.get("timeline") or "",
                         f.get("description") or ""))
        _print_table(rows)

    _run_reactor(main)


def _print_table(rows: Sequence[Sequence[Any]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())


def _fmt_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


#: Points per field ``sisock get`` asks for unless told otherwise (a wide Grafana panel's).
DEFAULT_GET_POINTS = 2000


def _points(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 2:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 2, got {text!r}")
    return n


async def _get_data(session: Any, args: argparse.Namespace) -> dict:
    """``sisock get``'s call(s): ``--max-points`` per field (retried as a ``min_stride`` for a
    sisock 0.2 node, which has no such keyword), or with ``--all`` every sample, in pieces."""
    import time

    from autobahn.wamp.exception import ApplicationError

    from sisock_core.client import get_data_in_pieces
    from sisock_core.timeutil import resolve_range
    from sisock_core.wamp import node_uri, rejects_max_points

    uri, fields = node_uri(args.node, "get_data"), list(args.field)
    if args.all:
        start, end = resolve_range(args.start, args.end, time.time)

        def progress(done: int, known: int, t0: float, t1: float) -> None:
            if known > 1:
                sys.stderr.write(f"sisock get: piece {done} of {known} ({_fmt_time(t0)} to {_fmt_time(t1)})\n")

        return await get_data_in_pieces(lambda t0, t1: session.call(uri, fields, t0, t1, args.min_stride),
                                        start, end, on_piece=progress)
    try:
        return await session.call(uri, fields, args.start, args.end, args.min_stride,
                                  max_points=args.max_points)
    except ApplicationError as exc:
        if not rejects_max_points(exc):
            raise
    start, end = resolve_range(args.start, args.end, time.time)
    stride = args.min_stride or (end - start) / args.max_points
    return await session.call(uri, fields, start, end, stride)


def cmd_get(args: argparse.Namespace) -> None:
    cfg = _load(args.config, NO_NODES)

    async def main(reactor: Any) -> None:
        try:
            answer = await _with_consumer(reactor, cfg, lambda s: _get_data(s, args), timeout=args.timeout)
        except Exception as exc:
            _fail(f"{args.node}: {_wamp_error_text(exc)}")
        if args.json:
            print(json.dumps(answer))
            return
        print_data_table(answer, args.field, limit=args.limit)

    _run_reactor(main)


def print_data_table(answer: dict, fields: Sequence[str], limit: int | None = None) -> None:
    """Print a get_data answer as one table per timeline."""
    data = answer.get("data", {})
    shown = set()
    for tl_name, tl in answer.get("timeline", {}).items():
        t = tl.get("t", [])
        cols = [f for f in fields if f in data and len(data[f]) == len(t) and f not in shown]
        if not cols:
            continue
        shown.update(cols)
        print(f"# timeline {tl_name}: {len(t)} samples, finalized until "
              f"{_fmt_time(tl['finalized_until']) if tl.get('finalized_until') else 'unknown'}")
        rows = [("TIME (UTC)", *cols)]
        idx = range(len(t))
        if limit and len(t) > limit:
            half = limit // 2
            idx = [*range(half), -1, *range(len(t) - half, len(t))]
        for i in idx:
            if i == -1:
                rows.append(("...", *["..." for _ in cols]))
            else:
                rows.append((_fmt_time(t[i]), *[data[c][i] for c in cols]))
        _print_table(rows)
        print()
    for f in fields:
        if f not in shown:
            print(f"# {f}: no data in range")


def cmd_check(args: argparse.Namespace) -> None:
    from sisock_core.config import describe_config
    from sisock_core.plugins import plugin_services
    from sisock_core.startup_checks import startup_problems

    cfg = _load(args.config_file or args.config)
    print(describe_config(cfg))
    services, service_problems = plugin_services(cfg)
    if services:
        print("services:  " + ", ".join(f"{s.name} (plugin {p})" for p, s in services))
    problems = [*service_problems, *startup_problems(cfg)]
    for problem in problems:
        sys.stderr.write(f"{cfg.path}: {problem}\n")
    if problems:
        raise SystemExit(2)
    print("configuration OK")


def cmd_plugins(args: argparse.Namespace) -> None:
    from sisock_core.introspect import describe_plugins, format_plugins
    from sisock_core.plugins import PluginError

    try:
        infos = describe_plugins(args.names)
    except PluginError as exc:
        _fail(str(exc))
    if args.json:
        print(json.dumps([p.to_json() for p in infos], indent=1))
    else:
        print(format_plugins(infos))
    if args.names and any(p.error for p in infos):
        raise SystemExit(1)


def cmd_systemd(args: argparse.Namespace) -> None:
    import shlex
    from pathlib import Path

    from sisock_core.systemd import UnitOptions, units, write_units

    cfg = _load(args.config_file or args.config)
    opts = UnitOptions(user=args.user, per_component=args.per_component,
                       command=tuple(shlex.split(args.exec_)) if args.exec_ else ())
    try:
        files = units(cfg, opts)
    except ValueError as exc:  # a plugin's services
        _fail(str(exc))
    for path in write_units(files, Path(args.output)):
        print(path)


# -- component runners -------------------------------------------------------------


def cmd_hub(args: argparse.Namespace) -> None:
    from sisock_core.hub import Hub
    from sisock_core.logs import announce_ready, setup_logging

    cfg = _load(args.config, NO_NODES)
    setup_logging(cfg.log_level)

    async def main(reactor: Any) -> None:
        _exit_when_stdin_closes(reactor, args)
        hub = Hub(cfg, on_ready=lambda: announce_ready("hub"))
        await _unless_refused("hub", args, hub.start(reactor))

    _run_reactor(main)


def cmd_node(args: argparse.Namespace) -> None:
    from sisock_core.logs import announce_ready, setup_logging
    from sisock_core.nodegroups import group_members, tables_in_group
    from sisock_core.nodehost import EXIT_NO_NODE_STARTED, NodeHost

    if args.group:  # the group's nodes' plugins only
        cfg = _load(args.config, tables_in_group(_site_text(args.config), args.group))
    else:
        cfg = _load(args.config, [args.name])  # this node's plugin only
        if args.name not in cfg.nodes:  # a name given by a plugin's environment variable
            cfg = _load(args.config)
    setup_logging(cfg.log_level)
    if args.group:
        names = group_members(cfg, args.group)
        if args.name or not names:
            _fail(f"--group {args.group}: " + ("give a node name or a group, not both" if args.name else
                                               f"no enabled node of {cfg.path} is in that group"))
    elif args.name and args.name in cfg.nodes:
        names = [args.name]
    else:
        _fail(f"no node named {args.name!r} in {cfg.path} (nodes: {', '.join(cfg.nodes) or 'none'})"
              if args.name else "give a node name or --group")
    title = _node_component(args)
    host = NodeHost(cfg, names, title=title, on_ready=lambda: announce_ready(title))
    if not host.start_plugins():
        raise SystemExit(EXIT_NO_NODE_STARTED)

    async def main(reactor: Any) -> None:
        _exit_when_stdin_closes(reactor, args)
        await _unless_refused("node", args, host.start(reactor))

    _run_reactor(main)


def _site_text(arg: str | None) -> str:
    """The site file's text ("" if unreadable: loading it says why)."""
    from pathlib import Path

    from sisock_core.config import DEFAULT_SITE_TOML

    path = _config_path(arg)
    if path is None:
        return DEFAULT_SITE_TOML
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _node_component(args: argparse.Namespace) -> str:
    """``node <name>`` or ``group <group>``: what a node process is called in logs."""
    return f"group {args.group}" if args.group else f"node {args.name}"


async def _unless_refused(command: str, args: argparse.Namespace, serving: Any) -> None:
    """Await ``serving`` (a component's run); if it ends because the router refused it
    before it ever joined, end ``sisock <command>`` with that reason (exit 78)."""
    from sisock_core.startup_checks import cannot_start
    from sisock_core.wamp import join_refusal

    try:
        await serving
    except Exception:
        refusal = join_refusal()
        if refusal:
            cannot_start(command, refusal, supervised=getattr(args, "supervised", False))
        raise


def _exit_when_stdin_closes(reactor: Any, args: argparse.Namespace) -> None:
    """Under ``sisock up`` our stdin is a pipe from it: stop when it closes."""
    if not getattr(args, "supervised", False):
        return
    from twisted.internet import protocol, stdio

    class Watch(protocol.Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Watch(), stdout=os.open(os.devnull, os.O_WRONLY), reactor=reactor)


def cmd_http(args: argparse.Namespace) -> None:
    import attrs
    from twisted.internet.error import CannotListenError

    from sisock_core.ports import busy_reasons, http_listeners
    from sisock_core.startup_checks import cannot_start, preflight
    from sisock_core.bridge.auth import BridgeSecurityError, bridge_credentials
    from sisock_core.logs import announce_ready, setup_logging
    from sisock_core.oslimits import raise_open_files_limit

    cfg = _load(args.config, NO_NODES)
    overrides = {k: v for k, v in (("listen", args.listen), ("port", args.port)) if v is not None}
    if overrides:
        cfg = attrs.evolve(cfg, http=attrs.evolve(cfg.http, **overrides))
    try:
        credentials = bridge_credentials(cfg)
    except BridgeSecurityError as exc:
        sys.stderr.write(f"sisock http: {exc}\n")
        raise SystemExit(2)
    listeners = http_listeners(cfg, command_line=not args.supervised)
    preflight("http", None, listeners, supervised=args.supervised)
    setup_logging(cfg.log_level)
    raise_open_files_limit()
    from sisock_core.bridge.app import run_bridge  # (after the check: it takes a while)

    async def main(reactor: Any) -> None:
        _exit_when_stdin_closes(reactor, args)
        try:
            await _unless_refused("http", args, run_bridge(reactor, cfg, credentials,
                                                           on_ready=lambda: announce_ready("http")))
        except CannotListenError as exc:  # taken since the check above
            cannot_start("http", busy_reasons(listeners) or [str(exc)], supervised=args.supervised)

    _run_reactor(main)


def cmd_router(args: argparse.Namespace) -> None:
    from sisock_core.logs import setup_logging
    from sisock_core.ports import router_listeners
    from sisock_core.site import run_router_only
    from sisock_core.startup_checks import preflight

    cfg = _load(args.config_file or args.config, NO_NODES)
    _lock = preflight("router", cfg.state_dir, router_listeners(cfg))  # noqa: F841 (held)
    setup_logging(cfg.log_level)
    _run_reactor(run_router_only, cfg)


def _plugin_command_runner(command: Any) -> Any:
    """``func`` of a plugin's command: call its ``run`` with the core's helpers."""
    from sisock_core.model import CommandContext

    def run(args: argparse.Namespace) -> None:
        def load(nodes: Sequence[str] | None = None, plugins: Sequence[str] | None = None) -> Any:
            return _load(args.config, nodes, plugins)

        command.run(args, CommandContext(
            config_path=_config_path(args.config), supervised=args.supervised, load=load,
            run_reactor=_run_reactor,
            exit_when_stdin_closes=lambda reactor: _exit_when_stdin_closes(reactor, args)))

    return run


def cmd_up(args: argparse.Namespace) -> None:
    from sisock_core.logs import setup_logging
    from sisock_core.oslimits import raise_open_files_limit
    from sisock_core.ports import site_listeners
    from sisock_core.startup_checks import startup_problems
    from sisock_core.site import run_site
    from sisock_core.startup_checks import preflight

    path = args.config_file or args.config
    cfg = _load(path)
    # what the site file gets wrong (exit 2, as `sisock check`) before what is in its way (78)
    problems = startup_problems(cfg)
    for problem in problems:
        sys.stderr.write(f"sisock up: {problem}\n")
    if problems:
        raise SystemExit(2)
    # a site running the router or the hub owns its state directory
    owns_state = cfg.router.start or cfg.hub.start
    _lock = preflight("up", cfg.state_dir if owns_state else None, site_listeners(cfg))  # noqa: F841
    setup_logging(cfg.log_level)
    raise_open_files_limit()
    _run_reactor(run_site, cfg, _config_args(path))


# -- parser ------------------------------------------------------------------------


#: the core's commands; any other is looked up among the plugins' (hook plugin_commands)
CORE_COMMANDS = frozenset({"up", "check", "router", "systemd", "plugins", "nodes", "fields", "get",
                           "hub", "http", "node"})


def build_parser(plugin_commands: Mapping[str, tuple[str, Any]] | None = None,
                 plugin_problems: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The ``sisock`` parser: the core's commands, and ``plugin_commands`` (``{name:
    (plugin, Command)}``, :func:`sisock_core.plugins.plugin_commands`) after them."""
    epilog = None
    if plugin_problems:
        epilog = "plugin commands left out: " + "; ".join(plugin_problems)
    p = argparse.ArgumentParser(
        prog="sisock",
        description="Serve observatory housekeeping time series over WAMP to live dashboards.",
        epilog=epilog,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, fn: Any, positional_config: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=fn)
        sp.add_argument("-c", "--config", help=CONFIG_HELP)
        sp.add_argument("--log-format", choices=["text", "json"],
                        help="log lines as text (default) or one JSON object each, for log shippers "
                             "(env SISOCK_LOG_FORMAT)")
        if positional_config:
            sp.add_argument("config_file", nargs="?", metavar="SITE_FILE", help=CONFIG_HELP)
        return sp

    add("up", "run the site: router, hub and every configured node (Ctrl-C stops all)",
        cmd_up, positional_config=True)
    add("check", "validate a site file, print what it would run, and report everything "
        "`sisock up` would refuse (exposed ports, default secrets, TLS files); starts nothing",
        cmd_check, positional_config=True)
    add("router", "run only the crossbar router of a site", cmd_router, positional_config=True)

    sp = add("systemd", "write systemd unit files that run the site as a service", cmd_systemd,
             positional_config=True)
    sp.description = (
        "Write systemd unit files for a site into the current directory (--output DIR for "
        "another): sisock.service running 'sisock up SITE_FILE', or with --per-component one "
        "service per component (router, hub, http, each node process: one node or a group, "
        "each plugin service) and sisock.target grouping them. Services are Type=notify (ready "
        "when serving), restart on failure, run "
        "as a dedicated user and are hardened; see docs/operating.md. Install them with: "
        "cp sisock*.service sisock.target /etc/systemd/system/ && systemctl daemon-reload && "
        "systemctl enable --now sisock.service (or sisock.target)."
    )
    sp.add_argument("-o", "--output", default=".", metavar="DIR",
                    help="directory to write the units to (default: the current directory)")
    sp.add_argument("--per-component", action="store_true",
                    help="one service per component and sisock.target, instead of one service for 'sisock up'")
    sp.add_argument("--user", default="sisock",
                    help="the system user (and group) the services run as (default: sisock)")
    sp.add_argument("--exec", dest="exec_", metavar="COMMAND",
                    help="how to run sisock, e.g. '/opt/sisock/.venv/bin/sisock' (default: the sisock "
                         "next to this Python, e.g. a virtualenv's)")

    sp = sub.add_parser(
        "plugins", help="list the installed plugins, their versions and the options each accepts",
        description="List the installed plugins (entry-point group sisock.plugins) with their "
        "distribution and version, and the options each accepts in a [nodes.<name>] table: "
        "name, type, default, environment variables and help. Exits 1 if a plugin named "
        "on the command line cannot be loaded.",
    )
    sp.set_defaults(func=cmd_plugins)
    sp.add_argument("names", nargs="*", metavar="PLUGIN", help="only these plugins (default: all)")
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = add("nodes", "list the live data nodes", cmd_nodes)
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = add("fields", "list the fields of a node", cmd_fields)
    sp.add_argument("node", help="node name, e.g. apex_archive")
    sp.add_argument("--start", type=parse_time, default=1.0, help="start time (default: all time)")
    sp.add_argument("--end", type=parse_time, default=0.0, help="end time (default: now)")
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = add("get", "print a node's data for some fields and a time range", cmd_get)
    sp.add_argument("node", help="node name, e.g. apex_archive")
    sp.add_argument("field", nargs="+", help="field names")
    sp.add_argument("--start", type=parse_time, default=-3600.0,
                    help="UNIX time, seconds before now (<= 0) or ISO-8601 UTC (default: -3600)")
    sp.add_argument("--end", type=parse_time, default=0.0, help="as --start (default: now)")
    sp.add_argument("--min-stride", type=float, default=None,
                    help="seconds between samples; min and max per bucket are kept")
    amount = sp.add_mutually_exclusive_group()
    amount.add_argument("--max-points", type=_points, default=DEFAULT_GET_POINTS, metavar="N",
                        help=f"at most N points per field, reduced keeping peaks (default: {DEFAULT_GET_POINTS})")
    amount.add_argument("--all", action="store_true",
                        help="every sample at full resolution, asked in as many pieces as the node needs")
    sp.add_argument("--limit", type=int, default=40,
                    help="rows shown per timeline in the table (first and last half; 0: all)")
    sp.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to wait for the answer (with --all: for all the pieces)")
    sp.add_argument("--json", action="store_true", help="print the raw get_data answer as JSON")

    sp = add("hub", "run only the hub (the list of live data nodes)", cmd_hub)
    sp.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    sp = add("http", "run only the Grafana HTTP bridge (SimpleJSON and JSON data source)", cmd_http)
    sp.add_argument("--listen", help="interface to listen on (default: http.listen, 127.0.0.1)")
    sp.add_argument("--port", type=int, help="TCP port (default: http.port or $PORT, 5000)")
    sp.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    sp = add("node", "run one data node of the site file, or every node of a group in one process",
             cmd_node)
    sp.add_argument("name", nargs="?", help="the node's name ([nodes.<name>] in the site file)")
    sp.add_argument("--group", metavar="GROUP",
                    help="run every enabled node of this group instead (the nodes' `process` key; "
                         "by default the nodes of one plugin form the group named after it)")
    sp.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)

    for name, (plugin, command) in (plugin_commands or {}).items():
        sp = add(name, f"{command.help} (plugin {plugin})", _plugin_command_runner(command))
        if command.description:
            sp.description = command.description
        sp.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
        if command.add_arguments is not None:
            command.add_arguments(sp)
    return p


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` asks for (None when it asks for none, e.g. ``--help``)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> None:
    from sisock_core.logs import configure

    argv = list(sys.argv[1:] if argv is None else argv)
    if _command_word(argv) in CORE_COMMANDS:  # (a core command imports no plugin)
        parser = build_parser()
    else:  # a plugin's command, or the help listing them all
        from sisock_core.plugins import plugin_commands

        commands, problems = plugin_commands(reserved=CORE_COMMANDS)
        parser = build_parser(commands, problems)
        word = _command_word(argv)
        if word is not None and word not in commands and problems:  # maybe theirs
            for problem in problems:
                sys.stderr.write(f"sisock: {problem}\n")
    args = parser.parse_args(argv)
    component = args.command if args.command != "node" else _node_component(args)
    try:
        configure(component, getattr(args, "log_format", None), supervised=getattr(args, "supervised", False))
    except ValueError as exc:  # a bad $SISOCK_LOG_FORMAT
        sys.stderr.write(f"sisock: $SISOCK_LOG_FORMAT: {exc}\n")
        raise SystemExit(2)
    args.func(args)


if __name__ == "__main__":
    main()
