"""``sisock scan``: index housekeeping .g3 files for the g3 plugin.

Which directories and databases: ``--data-dir`` (or ``DATA_DIRECTORY``) with
``--db`` (or the ``SQL_*`` variables, else SQLite in the state directory) for one
directory; otherwise every enabled g3 node of the site file (``-c``), each with its
own ``data_dir`` and ``db``. ``--once`` runs one pass and exits (with a progress
bar on a terminal, progress lines in the log otherwise); without it the scanner
keeps running: a pass every ``scan_interval`` seconds plus the watchdog.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

from sisock_core.model import Command, CommandContext
from sisock_plugins.g3.index import DatabaseUnavailable, IndexDbError, db_url_from_env
from sisock_plugins.g3.plugin import DEFAULT_NODE_NAME, Options, data_dir, db_url
from sisock_plugins.g3.service import ScanTarget


#: the plugin's entry-point name (``plugin = "g3"`` in a node table)
PLUGIN_NAME = "g3"


class UsageError(Exception):
    pass


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name) or ""
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}: expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise UsageError(f"{name}: must be > 0, got {text!r}")
    return value


def targets_from_args(args: argparse.Namespace, load: Callable[[str | None], Any],
                      config_path: str | None) -> tuple[list[ScanTarget], str]:
    """The directories to scan, and the log level to use."""
    directory = args.data_dir or (os.environ.get("DATA_DIRECTORY") if not config_path else None)
    if directory:
        cfg = load(config_path) if config_path else None
        state_dir = cfg.state_dir if cfg is not None else None
        name = args.node or DEFAULT_NODE_NAME
        url = args.db or db_url_from_env() or db_url(Options(data_dir=directory), name, state_dir)
        interval = args.interval or _env_float("SCAN_INTERVAL", 3600.0)
        target = ScanTarget(name, os.path.abspath(os.path.expanduser(directory)), url, interval,
                            watch=args.watch, debounce=args.debounce or 1.0)
        return [target], (cfg.log_level if cfg is not None else "info")
    cfg = load(config_path)
    nodes = [n for n in cfg.nodes.values() if n.plugin == PLUGIN_NAME and n.enabled]
    if args.node:
        nodes = [n for n in nodes if n.name == args.node]
    if not nodes:
        which = f"named {args.node!r} " if args.node else ""
        raise UsageError(
            f"no enabled g3 node {which}in {cfg.path}; give --data-dir DIR (or set DATA_DIRECTORY), "
            "or a site file with a [nodes.<name>] table using plugin = \"g3\" (-c SITE)"
        )
    if args.db and len(nodes) > 1:
        raise UsageError("--db applies to one directory; with several g3 nodes, choose one with --node")
    targets = []
    for n in nodes:
        opts: Options = n.options
        targets.append(ScanTarget(
            n.name, data_dir(opts), args.db or db_url(opts, n.name, cfg.state_dir),
            args.interval or opts.scan_interval, watch=args.watch and opts.watch,
            debounce=args.debounce or opts.debounce,
        ))
    return targets, cfg.log_level


def run(args: argparse.Namespace, context: CommandContext) -> None:
    """``sisock scan`` (the plugin's command, run by :mod:`sisock_core.cli`)."""
    from sisock_core.logs import announce_ready, setup_logging
    from sisock_plugins.g3.index import Index
    from sisock_plugins.g3.progress import progress_factory
    from sisock_plugins.g3.scanner import ScanError, Scanner

    try:
        targets, level = targets_from_args(args, lambda path: context.load(plugins=[PLUGIN_NAME]),
                                           context.config_path)
    except UsageError as exc:
        sys.stderr.write(f"sisock scan: {exc}\n")
        raise SystemExit(2)
    setup_logging(args.log_level or level)
    tty = sys.stderr.isatty() and not args.supervised

    if args.once:
        failed = False
        for t in targets:
            index = Index(t.db_url)
            try:
                if args.rebuild:
                    index.drop_all()
                scanner = Scanner(index, t.data_dir, progress=progress_factory(tty))
                stats = scanner.scan_tree()
                counts = index.counts()
            except ScanError as exc:
                sys.stderr.write(f"sisock scan: {exc}\n")
                failed = True
                continue
            except IndexDbError as exc:
                sys.stderr.write(f"sisock scan: {exc}\n")
                failed = True
                continue
            finally:
                index.close()
            print(f"{t.data_dir} -> {index.describe()}: {stats.summary()}; index holds "
                  f"{counts['sisock_fieldsum']} fields of {counts['sisock_files']} files")
        if failed:
            raise SystemExit(1)
        return

    from sisock_plugins.g3.service import ScannerService

    if args.rebuild:
        for t in targets:
            index = Index(t.db_url)
            try:
                index.drop_all()
            except DatabaseUnavailable as exc:
                sys.stderr.write(f"sisock scan: {exc}\n")
                raise SystemExit(1)
            finally:
                index.close()

    async def main(reactor: Any) -> None:
        from twisted.internet import defer

        context.exit_when_stdin_closes(reactor)
        svc = ScannerService(targets, reactor=reactor, progress=progress_factory(tty),
                             on_first_pass=lambda: announce_ready("scanner"))
        reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
        svc.startService()
        await defer.Deferred()  # until the reactor stops

    context.run_reactor(main)


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The options of ``sisock scan``."""
    sp.add_argument("--data-dir", metavar="DIR", help="directory to index (default: the site's g3 nodes)")
    sp.add_argument("--db", metavar="URL",
                    help="index database: sqlite:///path/index.sqlite or mysql://user:password@host/db")
    sp.add_argument("--node", help="only this g3 node of the site file (also names the default "
                                   "SQLite file with --data-dir; default g3_reader)")
    sp.add_argument("--once", action="store_true", help="one pass, then exit (progress bar on a terminal)")
    sp.add_argument("--watch", action=argparse.BooleanOptionalAction, default=True,
                    help="index files as soon as they change (watchdog; default: on)")
    sp.add_argument("--interval", type=float, metavar="SECONDS",
                    help="seconds between full passes (default: scan_interval, $SCAN_INTERVAL or 3600)")
    sp.add_argument("--debounce", type=float, metavar="SECONDS",
                    help="quiet period before a changed file is read (default: 1)")
    sp.add_argument("--rebuild", action="store_true",
                    help="drop the index and its summaries first and read every file again")
    sp.add_argument("--log-level", choices=["debug", "info", "warn", "error"],
                    help="log level (default: the site's log_level, else info)")


#: ``sisock scan`` (hook ``plugin_commands``)
SCAN_COMMAND = Command(
    name="scan",
    help="index housekeeping .g3 files for the g3 plugin (a service, or one pass with --once)",
    description=(
        "Index the housekeeping .g3 files of a data directory into the g3 plugin's database. "
        "Directories: --data-dir (or $DATA_DIRECTORY) with --db (or $SQL_HOST/$SQL_USER/"
        "$SQL_PASSWD/$SQL_DB, else SQLite under the state directory), or else every enabled "
        "g3 node of the site file. Unchanged files are only stat'ed, grown files are read from "
        "where the last pass stopped. Without --once it keeps running: a pass every "
        "scan_interval seconds ($SCAN_INTERVAL, default 3600) and, with --watch, new or changed "
        "files as soon as they are written. `sisock up` runs it as the service 'scanner' when "
        "the site has g3 nodes."
    ),
    run=run,
    add_arguments=add_arguments,
)
