"""The g3 plugin: serve OCS housekeeping ``.g3`` archives (node name ``g3_reader``).

The node answers from an index database that the scanner keeps up to date
(``sisock scan``; ``sisock up`` runs it as the ``scanner`` service whenever a g3
node is configured): ``get_fields`` reads only the index, ``get_data`` reads only
the frames of the files that hold the requested fields in the requested range,
decodes them with so3g/spt3g and keeps them in a bounded LRU cache. Field names
are ``<provider description>.<field>``; see :mod:`sisock_plugins.g3.reader` for
the other spellings accepted. MAX_POINTS and decimation are the core's.

Example ``site/nodes.toml`` entry::

    [nodes.g3_reader]
    plugin = "g3"
    data_dir = "/data/hk"          # env DATA_DIRECTORY
    # db = "mysql://sisock:secret@127.0.0.1/sisock"   # default: SQLite under state_dir
    # cache_mb = 256
    # scan_interval = 3600         # env SCAN_INTERVAL
    # live = true                  # also follow the OCS feeds: one series to the last second

With ``live = true`` the node also follows the OCS feeds of the providers it indexes
(:mod:`sisock_plugins.g3.live`) and answers each field as one series: the files up to
their final time (the field's last archived sample), the live feed after it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs
from twisted.logger import Logger

from sisock_core import Command, Field, PluginSpec, Service, Timeline, hookimpl
from sisock_core.model import NodeContext
from sisock_core.validators import positive
from sisock_plugins.g3.index import (
    DatabaseConfigError,
    DatabaseUnavailable,
    Index,
    mysql_url,
    parse_db_url,
)

log = Logger(namespace="sisock_plugins.g3")

STATE_KEY = "g3"
LIVE_KEY = "g3_live"
FINAL_KEY = "g3_final"
URL_KEY = "g3_db_url"
DEFAULT_NODE_NAME = "g3_reader"


def _db_url(instance: object, attribute: attrs.Attribute, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"must be a string (sqlite:///path or mysql://user:password@host/db), got {value!r}")
    try:
        parse_db_url(value)
    except DatabaseConfigError as exc:
        raise ValueError(str(exc)) from None


_opt_str = attrs.validators.optional(attrs.validators.instance_of(str))


@attrs.frozen
class Options:
    """Options of a g3 node (its ``[nodes.<name>]`` table).

    The index database is ``db`` if set, else MariaDB/MySQL from ``sql_host`` (the
    original ``SQL_*`` variables), else SQLite in ``<state_dir>/g3/<node name>.sqlite``.
    The scanner options are read by ``sisock scan`` (which ``sisock up`` runs).
    """

    #: the aggregator's output directory; every ``*.g3`` file below it is indexed, whatever its naming era
    data_dir: str = attrs.field(validator=attrs.validators.instance_of(str))
    #: index database URL: ``sqlite:///path/index.sqlite`` or ``mysql://user:password@host:port/database``
    db: str | None = attrs.field(default=None, validator=_db_url)
    #: MariaDB/MySQL host (``host`` or ``host:port``) when ``db`` is unset, as the original containers
    sql_host: str | None = attrs.field(default=None, validator=_opt_str)
    #: MariaDB/MySQL user (with ``sql_host``)
    sql_user: str | None = attrs.field(default=None, validator=_opt_str)
    #: MariaDB/MySQL password (with ``sql_host``)
    sql_passwd: str | None = attrs.field(default=None, validator=_opt_str, repr=False)
    #: MariaDB/MySQL database (with ``sql_host``; default ``sisock``, created if allowed)
    sql_db: str | None = attrs.field(default=None, validator=_opt_str)
    #: memory for decoded data kept between queries, in MB (LRU)
    cache_mb: float = attrs.field(default=256.0, validator=positive)
    #: scanner: seconds between full passes (a pass only stats unchanged files)
    scan_interval: float = attrs.field(default=3600.0, validator=positive)
    #: scanner: also index files as soon as they are created, written, closed, moved or deleted (watchdog)
    watch: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    #: scanner: seconds without further change before a changed file is read
    debounce: float = attrs.field(default=1.0, validator=positive)
    #: follow the OCS feeds of the indexed providers: each field runs from the first file to the last second
    live: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    #: live: seconds of feed data kept in memory (must exceed the files' lag: frame length + scan delay)
    buffer_time: float = attrs.field(default=3600.0, validator=positive)
    #: live: cap on samples kept per block
    max_samples: int = attrs.field(default=1_000_000, validator=attrs.validators.and_(
        attrs.validators.instance_of(int), attrs.validators.ge(1)))
    #: live: the OCS address root of the agents (feeds `<root>.<agent>.feeds.<feed>`)
    address_root: str = attrs.field(default="observatory", validator=attrs.validators.matches_re(
        r"^[^\s.#]+(\.[^\s.#]+)*$"))


ENV = {
    "DATA_DIRECTORY": "data_dir",
    "SQL_HOST": "sql_host",
    "SQL_USER": "sql_user",
    "SQL_PASSWD": "sql_passwd",
    "SQL_DB": "sql_db",
    "SCAN_INTERVAL": "scan_interval",
}


def default_state_dir() -> Path:
    from sisock_core.config import default_state_dir as _default

    return _default()


def db_url(options: Options, node_name: str, state_dir: str | os.PathLike | None) -> str:
    """The index database URL of a node (see :class:`Options`)."""
    if options.db:
        return options.db
    if options.sql_host:
        return mysql_url(options.sql_host, options.sql_user, options.sql_passwd, options.sql_db or "sisock")
    base = Path(state_dir) if state_dir is not None else default_state_dir()
    return f"sqlite:///{Path(base).resolve() / 'g3' / (node_name + '.sqlite')}"


def data_dir(options: Options) -> str:
    return os.path.abspath(os.path.expanduser(options.data_dir))


@hookimpl
def sisock_plugin_spec() -> PluginSpec:
    return PluginSpec(
        default_node_name=DEFAULT_NODE_NAME,
        description="Housekeeping data from .g3 files written by the OCS aggregator",
        options=Options,
        env=ENV,
    )


@hookimpl
def plugin_commands() -> list[Command]:
    """``sisock scan`` (:mod:`sisock_plugins.g3.cli`)."""
    from sisock_plugins.g3.cli import SCAN_COMMAND

    return [SCAN_COMMAND]


@hookimpl
def plugin_services(nodes: Sequence[Any]) -> list[Service]:
    """The scanner, keeping the index of every g3 node up to date (``sisock scan``). It is
    ready after its first full pass, which ``sisock up`` does not wait for: a first pass
    over years of files takes a while, and the nodes serve what is indexed."""
    return [Service(name="scanner", command=("scan",),
                    description="g3 scanner (indexes housekeeping .g3 files)")] if nodes else []


@hookimpl
def node_start(node: NodeContext) -> None:
    from sisock_plugins.g3.reader import HKReader

    options: Options = node.options
    directory = data_dir(options)
    if not os.path.isdir(directory):
        log.error("g3: data directory {dir} does not exist (yet); serving what the index holds",
                  dir=directory)
    url = db_url(options, node.name, node.state.get("state_dir"))
    index = Index(url)
    try:
        index.check()
    except DatabaseConfigError as exc:
        raise ValueError(f"g3: {exc}") from None
    except DatabaseUnavailable as exc:
        log.error("g3: {error}; answering with errors until it is back", error=str(exc))
    else:
        log.info("g3: serving {dir} through the index {db}", dir=directory, db=index.describe())
    node.state[STATE_KEY] = HKReader(index, cache_mb=options.cache_mb)
    node.state[URL_KEY] = url


@hookimpl
def resolve_fields(node: NodeContext, fields: Sequence[str]) -> Mapping[str, str]:
    """The full names of lower-cased and short names (their summaries are stored under those)."""
    return _reader(node).resolve(fields)


@hookimpl
def summary_store(node: NodeContext) -> str | None:
    """The index database: the scanner writes each file's summaries with its index rows."""
    return node.state.get(URL_KEY)


@hookimpl
def subscribe(node: NodeContext, publish: Callable[..., Any]) -> Callable[[], None] | bool:
    """With ``live = true``: follow every agent's feeds (see :mod:`sisock_plugins.g3.live`)."""
    from sisock_plugins.g3.live import FeedFollower

    options: Options = node.options
    if not options.live:
        return False
    follower = FeedFollower(node.name, publish, address_root=options.address_root)
    node.state[LIVE_KEY] = follower
    try:
        _refresh_names(node)
    except Exception as exc:  # the index is down: names are learnt at the next refresh
        log.warn("g3: {node} cannot read the index's names yet ({error}); feeds are followed under the "
                 "names they send until it can", node=node.name, error=str(exc))
    log.info("g3: {node} follows the OCS feeds of the providers it indexes ({pattern}, wildcard)",
             node=node.name, pattern=follower.pattern)
    return node.wamp_subscribe(follower.pattern, follower.on_event, match="wildcard")


def _refresh_names(node: NodeContext) -> Any:
    """The reader's catalog; rebuilds the live follower's names map when it changed."""
    from sisock_plugins.g3.live import LiveNames

    cat = _reader(node).catalog()
    follower = node.state.get(LIVE_KEY)
    if follower is not None and follower.names.generation != cat.generation:
        follower.set_names(LiveNames(cat.generation, cat.by_name.values(), cat.layouts))
    return cat


@hookimpl
def archive_until(node: NodeContext) -> dict[str, float]:
    """The last archived sample of every field (the index's span), for the seam."""
    cat = _refresh_names(node)
    cached = node.state.get(FINAL_KEY)
    if cached is None or cached[0] != cat.generation:
        cached = node.state[FINAL_KEY] = (cat.generation, {name: s.t1 for name, s in cat.by_name.items()})
    return cached[1]


@hookimpl
def node_stop(node: NodeContext) -> None:
    node.state.pop(LIVE_KEY, None)
    reader = node.state.pop(STATE_KEY, None)
    if reader is not None:
        reader.index.close()


def _reader(node: NodeContext):
    try:
        return node.state[STATE_KEY]
    except KeyError:
        raise RuntimeError(f"g3: node {node.name!r} was not started (node_start not called)") from None


@hookimpl
def list_fields(node: NodeContext, start: float, end: float) -> Iterable[Field]:
    return _reader(node).list_fields(start, end)


@hookimpl
def read_range(node: NodeContext, fields: Sequence[str], start: float, end: float) -> Mapping[str, Timeline]:
    return _reader(node).read_range(fields, start, end)
