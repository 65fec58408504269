"""A pytest plugin for testing sisock plugins: opt-in, two ways.

Enable it in your ``conftest.py``::

    pytest_plugins = ["sisock_core.testing"]

or on the command line with ``pytest -p sisock_core.testing``. It gives two fixtures.

``sisock_node`` (no router): a factory that starts your plugin inside a real
:class:`~sisock_core.datanode.DataNodeServer` in this process — the site file's option
checking, ``node_start``, the WAMP procedures ``get_fields``/``get_data`` with the core's
time rule, trimming and decimation, the error translation, the thread pool and the hub
registration — with an in-memory WAMP session instead of a router. Answers come back
through the real msgpack serializer, exactly as a consumer would receive them::

    def test_fields(sisock_node, tmp_path):
        node = sisock_node(my_plugin, options={"path": str(tmp_path / "data.csv")})
        fields, timelines = node.get_fields()
        assert fields["temperature"]["units"] == "K"

``sisock_site`` (a real router): a module-scoped factory that writes a site file on free
loopback ports, runs ``sisock up`` (crossbar, the hub, a process per node) and gives a
blocking WAMP client; your plugin must be installed (``pip install -e .``) since nodes
run in their own processes::

    @pytest.fixture(scope="module")
    def site(sisock_site):
        return sisock_site({"mine": {"plugin": "example", "path": "/data/x.csv"}})

    def test_over_wamp(site):
        assert site.nodes() == [{"name": "mine", "description": "..."}]
        answer = site.get_data("mine", ["temperature"], 1, 0)

Both work from plain synchronous tests; no pytest-twisted needed. Outside pytest, use
:func:`start_node` and :func:`start_site` (both context managers).

The process helpers (:class:`SisockProcess`, :func:`write_site`, :func:`free_ports`,
:func:`wait_until`, :func:`pids_matching`) are public too; sisock's own integration tests
use them.
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import inspect
import itertools
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import types
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs

from sisock_core.logs import READY_MARKER as READY

__all__ = [
    "MemorySession",
    "RunningSite",
    "SiteClient",
    "SisockNode",
    "SisockProcess",
    "WireFormatError",
    "free_port",
    "free_ports",
    "pids_matching",
    "sisock_node",
    "sisock_site",
    "start_node",
    "start_site",
    "wait_until",
    "write_site",
]

# ------------------------------------------------------------------------------------------
# processes, ports, site files
# ------------------------------------------------------------------------------------------


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports nobody listens on (sockets held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    return free_ports(1, host)[0]


def _toml(data: Mapping[str, Any]) -> str:
    try:
        import tomli_w
    except ImportError:  # pragma: no cover - comes with sisock[test]
        raise RuntimeError(
            "sisock_core.testing needs tomli-w to write node tables given as dicts "
            "(pip install 'sisock[test]'), or pass the [nodes.*] tables as TOML text"
        ) from None
    return tomli_w.dumps(dict(data))


def nodes_toml(nodes: str | Mapping[str, Mapping[str, Any]]) -> str:
    """``[nodes.<name>]`` tables as TOML: ``nodes`` is TOML text or ``{name: {key: value}}``."""
    if isinstance(nodes, str):
        return nodes
    return _toml({"nodes": {name: dict(table) for name, table in nodes.items()}})


def write_site(
    path: Path,
    *,
    state_dir: Path,
    tls_port: int,
    ocs_port: int,
    http_port: int | None = None,
    start_router: bool = True,
    start_http: bool = False,
    nodes: str | Mapping[str, Mapping[str, Any]] | None = None,
    log_level: str = "debug",
) -> Path:
    """Write a site file on loopback ports and return its path.

    ``nodes`` is TOML text for the ``[nodes.*]`` tables or a dict ``{name: table}``;
    default: the example weather node ``apex_archive``. The HTTP bridge is off unless
    ``start_http``.
    """
    if nodes is None:
        nodes = '[nodes.apex_archive]\nplugin = "weather"\n'
    text = f"""\
state_dir = {json.dumps(str(state_dir))}
log_level = "{log_level}"

[router]
start = {str(start_router).lower()}
host = "127.0.0.1"
tls_port = {tls_port}
ocs_port = {ocs_port}

[hub]
start = {str(start_router).lower()}

[http]
start = {str(start_http).lower()}
port = {http_port or free_port()}

{nodes_toml(nodes)}
"""
    Path(path).write_text(text)
    return Path(path)


class SisockProcess:
    """A ``python -m sisock_core.cli ARGS`` child whose ``SISOCK-READY`` lines are watched.

    Its stderr (the log) goes to ``log_path`` so a failing test can show it; it runs in
    its own process group.
    """

    def __init__(self, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> None:
        """``prefix``: a command that runs the child, e.g. ``["setpriv", ..., "--"]``."""
        self.args = list(args)
        self.log_path = Path(log_path)
        self.ready: list[str] = []
        self._cond = threading.Condition()
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "sisock_core.cli", *self.args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=full_env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            with self._cond:
                if line.startswith(READY):
                    self.ready.append(line[len(READY):].strip())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_ready(self, what: str, timeout: float = 90.0, fail_on: str | None = None) -> None:
        """Wait for the line ``SISOCK-READY <what>``.

        Raises ``AssertionError`` with the log's tail if the process exits first, after
        ``timeout`` seconds, or as soon as a log line matches the regex ``fail_on``.
        """
        deadline = time.monotonic() + timeout
        pattern = re.compile(fail_on) if fail_on else None
        with self._cond:
            while what not in self.ready:
                left = deadline - time.monotonic()
                failed = None
                if pattern is not None:
                    m = pattern.search(self.log_text())
                    failed = m.group(0) if m else None
                if failed or left <= 0 or self.proc.poll() is not None:
                    why = f"failed: {failed}" if failed else (
                        f"exited with {self.proc.poll()}" if self.proc.poll() is not None
                        else f"not ready after {timeout}s")
                    raise AssertionError(
                        f"sisock {' '.join(self.args)}: {why} (waiting for {what!r})\n"
                        f"--- log tail without debug lines ({self.log_path}) ---\n"
                        f"{self.log_tail(40, debug=False)}"
                    )
                self._cond.wait(min(left, 0.5))

    def log_tail(self, n: int = 60, debug: bool = True) -> str:
        """The last ``n`` lines of the log (``debug=False``: leaving out debug lines)."""
        lines = self.log_text().splitlines()
        if not debug:
            lines = [line for line in lines if "#debug]" not in line]
        return "\n".join(lines[-n:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGINT, then SIGKILL to the whole group after ``timeout``; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pids_matching(pattern: str) -> list[int]:
    """PIDs whose command line contains ``pattern`` (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmd:
            found.append(int(entry.name))
    return found


# ------------------------------------------------------------------------------------------
# the wire
# ------------------------------------------------------------------------------------------


class WireFormatError(TypeError):
    """An answer (or argument) that the WAMP serializer cannot send, e.g. a numpy.float32."""


def _serializer(name: str) -> Any:
    from autobahn.wamp.serializer import JsonObjectSerializer, MsgPackObjectSerializer

    try:
        return {"msgpack": MsgPackObjectSerializer, "json": JsonObjectSerializer}[name]()
    except KeyError:
        raise ValueError(f"serializer must be 'msgpack' or 'json', got {name!r}") from None


def over_the_wire(value: Any, serializer: str = "msgpack", what: str = "value") -> Any:
    """``value`` as a peer receives it: serialized and read back (tuples become lists...)."""
    ser = _serializer(serializer)
    try:
        return ser.unserialize(ser.serialize([value]))[0][0]
    except Exception as exc:
        raise WireFormatError(f"{what} cannot be sent over WAMP ({serializer}): {exc}") from exc


# ------------------------------------------------------------------------------------------
# a private reactor for in-process nodes
# ------------------------------------------------------------------------------------------


class _ReactorThread:
    """A Twisted reactor of our own, running in a daemon thread.

    In-process nodes run on it, so plain synchronous tests can drive them without
    pytest-twisted and without touching the global reactor.
    """

    def __init__(self) -> None:
        from twisted.internet.selectreactor import SelectReactor

        self.reactor = SelectReactor()
        self.thread = threading.Thread(
            target=self.reactor.run, kwargs={"installSignalHandlers": False},
            name="sisock-testing-reactor", daemon=True,
        )
        self.thread.start()

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Call ``fn`` in the reactor thread; block until its (Deferred or coroutine) result."""
        from twisted.internet import defer

        future: concurrent.futures.Future = concurrent.futures.Future()

        def go() -> None:
            def settle(result: Any) -> Any:
                if inspect.iscoroutine(result):
                    return defer.Deferred.fromCoroutine(result)
                return result

            d = defer.maybeDeferred(fn, *args, **kwargs).addCallback(settle)
            d.addTimeout(timeout, self.reactor)
            d.addCallbacks(future.set_result, lambda f: future.set_exception(f.value))

        self.reactor.callFromThread(go)
        try:
            return future.result(timeout + 5)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"{getattr(fn, '__qualname__', fn)} took more than {timeout}s") from None

    def stop(self) -> None:
        if self.thread.is_alive():
            self.reactor.callFromThread(self.reactor.stop)
            self.thread.join(10)


_reactor_lock = threading.Lock()
_reactor_thread: _ReactorThread | None = None


def _private_reactor() -> _ReactorThread:
    global _reactor_thread
    with _reactor_lock:
        if _reactor_thread is None or not _reactor_thread.thread.is_alive():
            _reactor_thread = _ReactorThread()
        return _reactor_thread


def _stop_private_reactor() -> None:
    global _reactor_thread
    with _reactor_lock:
        if _reactor_thread is not None:
            _reactor_thread.stop()
            _reactor_thread = None


# ------------------------------------------------------------------------------------------
# an in-memory WAMP session (a dealer, a broker and the hub, for one node)
# ------------------------------------------------------------------------------------------


class _Registration:
    def __init__(self, session: "MemorySession", uri: str) -> None:
        self.session, self.procedure = session, uri

    async def unregister(self) -> None:
        self.session.procedures.pop(self.procedure, None)


class _Subscription:
    def __init__(self, session: "MemorySession", topic: str, handler: Callable[..., Any]) -> None:
        self.session, self.topic, self.handler = session, topic, handler

    async def unsubscribe(self) -> None:
        handlers = self.session.subscriptions.get(self.topic, [])
        if self.handler in handlers:
            handlers.remove(self.handler)


class MemorySession:
    """What a DataNodeServer sees of the router, in memory.

    Registrations and subscriptions are kept in dicts; calls to the hub's procedures
    are answered by the hub's own :class:`~sisock_core.hub.Registry`; every other call
    goes to the registered procedure, with arguments and answers passed through the
    real WAMP ``serializer`` (msgpack by default) so that what a test sees is what a
    consumer would receive. Errors are autobahn ``ApplicationError`` as over WAMP.
    """

    _ids = itertools.count(1000)

    def __init__(self, serializer: str = "msgpack") -> None:
        from sisock_core.hub import Registry

        self._session_id = next(self._ids)
        self.serializer = serializer
        self.procedures: dict[str, Callable[..., Any]] = {}
        self.subscriptions: dict[str, list[Callable[..., Any]]] = {}
        self.patterns: dict[tuple[str, Callable[..., Any]], tuple[str, str | None]] = {}
        self.hub = Registry()
        self.attached = True

    def is_attached(self) -> bool:
        return self.attached

    async def register(self, endpoint: Callable[..., Any], procedure: str, options: Any = None) -> _Registration:
        from autobahn.wamp.exception import ApplicationError

        if procedure in self.procedures:
            raise ApplicationError("wamp.error.procedure_already_exists",
                                   f"register for already registered procedure '{procedure}'")
        self.procedures[procedure] = endpoint
        return _Registration(self, procedure)

    async def subscribe(self, handler: Callable[..., Any], topic: str, options: Any = None) -> _Subscription:
        self.subscriptions.setdefault(topic, []).append(handler)
        match = getattr(options, "match", None) or "exact"
        if match != "exact":
            self.patterns[(topic, handler)] = (match, getattr(options, "details_arg", None))
        return _Subscription(self, topic, handler)

    def _matches(self, pattern: str, match: str, topic: str) -> bool:
        if match == "prefix":
            return topic.startswith(pattern)
        want, got = pattern.split("."), topic.split(".")
        return len(want) == len(got) and all(w in ("", g) for w, g in zip(want, got))

    def publish(self, topic: str, *args: Any, options: Any = None, **kwargs: Any) -> None:
        """Deliver an event to this session's subscribers (payload passed over the wire;
        pattern subscriptions as a router matches them, with the event's topic in details)."""
        targets: list[tuple[Callable[..., Any], str | None]] = []
        for pattern, handlers in self.subscriptions.items():
            for handler in handlers:
                how = self.patterns.get((pattern, handler))
                if how is None:
                    if pattern == topic:
                        targets.append((handler, None))
                elif self._matches(pattern, how[0], topic):
                    targets.append((handler, how[1]))
        if not targets:
            return None
        args, kwargs = over_the_wire([list(args), kwargs], self.serializer, f"an event on {topic}")
        for handler, details_arg in targets:
            extra = {details_arg: types.SimpleNamespace(topic=topic)} if details_arg else {}
            handler(*args, **kwargs, **extra)
        return None

    async def call(self, procedure: str, *args: Any, **kwargs: Any) -> Any:
        from autobahn.wamp.exception import ApplicationError
        from twisted.internet import defer

        from sisock_core import wamp

        args, kwargs = over_the_wire([list(args), kwargs], self.serializer, f"arguments of {procedure}")
        try:
            if procedure == wamp.HUB_ADD:
                return self.hub.add(*args, **kwargs)
            if procedure == wamp.HUB_SUBTRACT:
                self.hub.subtract(*args, **kwargs)
                return None
            if procedure == wamp.HUB_LIST:
                return self.hub.listing()
        except (TypeError, ValueError) as exc:
            raise ApplicationError("wamp.error.invalid_argument", str(exc)) from exc
        endpoint = self.procedures.get(procedure)
        if endpoint is None:
            raise ApplicationError("wamp.error.no_such_procedure",
                                   f"no callee registered for procedure <{procedure}>")
        result = await defer.maybeDeferred(endpoint, *args, **kwargs)
        return over_the_wire(result, self.serializer, f"the answer of {procedure}")


# ------------------------------------------------------------------------------------------
# a node in this process
# ------------------------------------------------------------------------------------------


def _entry_point_name(obj: Any) -> str | None:
    """The ``sisock.plugins`` entry name under which ``obj`` (a module) is installed."""
    module = getattr(obj, "__name__", None)
    if not isinstance(module, str):
        return None
    for ep in importlib.metadata.entry_points(group="sisock.plugins"):
        if ep.value == module:
            return ep.name
    return None


class SisockNode:
    """One plugin served by a real DataNodeServer in this process (see :func:`start_node`).

    Attributes: ``name`` (node name), ``plugin_name``, ``spec`` (the plugin's
    PluginSpec), ``config`` (its NodeConfig, options structured as from a site file),
    ``options``, ``context`` (the NodeContext hooks receive; ``state`` is its dict),
    ``server`` (the DataNodeServer) and ``session`` (the :class:`MemorySession`).
    """

    def __init__(self, *, server: Any, session: MemorySession, runner: _ReactorThread,
                 site_config: Any, timeout: float) -> None:
        self.server = server
        self.session = session
        self.site_config = site_config
        self.config = server.node_cfg
        self.name: str = server.name
        self.plugin_name: str = server.node_cfg.plugin
        self.spec = server.spec
        self.options = server.node_cfg.options
        self.context = server.context
        self.timeout = timeout
        self._runner = runner
        self._stopped = False
        self._cleanup: list[Callable[[], Any]] = []

    @property
    def state(self) -> dict[str, Any]:
        """The plugin's ``node.state`` dict."""
        return self.context.state

    def uri(self, method: str) -> str:
        """``org.simonsobservatory.consumer.<name>.<method>``."""
        from sisock_core.wamp import node_uri

        return node_uri(self.name, method)

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> Any:
        """Call a WAMP procedure as a consumer would: a method name of this node
        (``"get_data"``) or a full URI. Raises autobahn's ``ApplicationError``."""
        uri = procedure if "." in procedure else self.uri(procedure)
        return self._runner.run(self.session.call, uri, *args, timeout=self.timeout, **kwargs)

    def get_fields(self, start: Any = 1, end: Any = 0) -> list:
        """``get_fields(start, end)`` over the wire: ``[fields, timelines]``."""
        return self.call("get_fields", start, end)

    def get_data(self, field: Any, start: Any = 1, end: Any = 0, min_stride: Any = None,
                 *, max_points: Any = None) -> dict:
        """``get_data(field, start, end, min_stride)`` over the wire (``max_points`` as the
        HTTP bridge sends it)."""
        kwargs = {} if max_points is None else {"max_points": max_points}
        return self.call("get_data", field, start, end, min_stride, **kwargs)

    def summarize(self) -> int:
        """Run one pass of the core's summarizer now (a node serving an archive plugin
        without its own summaries runs one every few minutes); returns buckets written."""
        return self._runner.run(self.server.summarize_once, timeout=self.timeout)

    def publish(self, topic: str, *args: Any, **kwargs: Any) -> None:
        """Publish a WAMP event the node may be subscribed to (e.g. an OCS feed,
        ``observatory.<agent>.feeds.<feed>``), as a router would deliver it."""
        self._runner.run(self.session.publish, topic, *args, timeout=self.timeout, **kwargs)

    def subscribe(self, topic: str) -> list[tuple[list, dict]]:
        """Record the events the node publishes on ``topic`` (``"live"`` is short for
        its live topic); returns the list ``(args, kwargs)`` pairs are appended to."""
        uri = topic if "." in topic else self.uri(topic)
        events: list[tuple[list, dict]] = []
        self._runner.run(self.session.subscribe, lambda *a, **k: events.append((list(a), k)), uri,
                         timeout=self.timeout)
        return events

    def wait_until(self, predicate: Callable[[], Any], timeout: float | None = None,
                   what: str = "condition") -> Any:
        """Poll ``predicate`` (e.g. ``lambda: node.get_data(["x"])["data"]["x"]``) until it
        returns something true, for live plugins; AssertionError after ``timeout``."""
        return wait_until(predicate, timeout=self.timeout if timeout is None else timeout,
                          interval=0.05, what=what)

    def listed(self) -> list[dict]:
        """The hub's ``get_data_node`` answer (this node once it has joined)."""
        from sisock_core.wamp import HUB_LIST

        return self.call(HUB_LIST)

    def stop(self) -> None:
        """Leave the hub, then ``node_stop`` (what a node does at shutdown). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._runner.run(self.server.stop, timeout=self.timeout)
        finally:
            for fn in self._cleanup:
                fn()

    def __enter__(self) -> "SisockNode":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_node(
    plugin: Any,
    options: Any = None,
    *,
    name: str | None = None,
    description: str | None = None,
    max_points: int | None = None,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] | None = None,
    serializer: str = "msgpack",
    plugin_name: str | None = None,
    state_dir: str | Path | None = None,
    timeout: float = 60.0,
) -> SisockNode:
    """Start ``plugin`` in a DataNodeServer in this process and return the running node.

    ``plugin``: a module or object with ``@hookimpl`` functions, or the name of an
    installed plugin. ``options``: the node's options as a dict (checked exactly like
    the ``[nodes.<name>]`` table of a site file; problems raise
    :class:`~sisock_core.config.ConfigError`), an instance of the plugin's options
    class, or None (the defaults). ``name`` defaults to the plugin's
    ``default_node_name``. ``env`` is the environment the plugin's ``PluginSpec.env``
    variables are read from (default: empty, so the test is isolated). ``clock``
    replaces ``time.time`` for the "t <= 0 means now + t" rule. ``state_dir`` is the
    site's state directory (plugins may keep files there); default: a temporary
    directory removed when the node stops.

    ``node_start`` runs before this returns (its exception propagates); the node then
    registers its procedures and joins the hub on the in-memory session.
    """
    from sisock_core.config import load_config_text
    from sisock_core.datanode import DataNodeServer
    from sisock_core.plugins import load_plugin, make_plugin_manager, plugin_spec

    if isinstance(plugin, str):
        pname = plugin
        pm, spec = load_plugin(plugin)
    else:
        pname = plugin_name or _entry_point_name(plugin) or getattr(plugin, "__name__", None) \
            or type(plugin).__name__
        pm = make_plugin_manager(plugin, name=pname)
        spec = plugin_spec(pm, pname)
    node_name = name or spec.default_node_name

    table: dict[str, Any] = {"plugin": pname}
    if description is not None:
        table["description"] = description
    if max_points is not None:
        table["max_points"] = max_points
    instance = None
    if isinstance(options, Mapping):
        table.update(options)
    elif options is not None:
        if spec.options is None or not isinstance(options, spec.options):
            raise TypeError(
                f"options must be a dict or an instance of {getattr(spec.options, '__name__', None)}, "
                f"got {type(options).__name__}"
            )
        instance = options
    loaded = (pm, attrs.evolve(spec, options=None) if instance is not None else spec)
    own_state = state_dir is None
    state = Path(tempfile.mkdtemp(prefix="sisock-node-") if own_state else state_dir)

    def cleanup() -> None:
        if own_state:
            shutil.rmtree(state, ignore_errors=True)

    try:
        text = _toml({"state_dir": str(state), "nodes": {node_name: table}})
        site = load_config_text(
            text, "<sisock_node>", dict(env or {}), base_dir=os.getcwd(),
            plugin_loader=lambda _name: loaded, installed=lambda: [pname],
        )
        node_cfg = site.nodes[node_name]
        if instance is not None:
            node_cfg = attrs.evolve(node_cfg, options=instance)
        runner = _private_reactor()
        server_kwargs: dict[str, Any] = {"reactor": runner.reactor, "plugin": (pm, spec),
                                         "connect": False}
        if clock is not None:
            server_kwargs["clock"] = clock
        server = DataNodeServer(site, node_cfg, **server_kwargs)
        server.start_plugin()  # node_start, then subscribe for live plugins
    except BaseException:
        cleanup()
        raise
    session = MemorySession(serializer)
    node = SisockNode(server=server, session=session, runner=runner, site_config=site, timeout=timeout)
    node._cleanup.append(cleanup)
    try:
        server.start_pools()
        runner.run(server._on_join, session, None, timeout=timeout)
    except BaseException:
        node.stop()
        raise
    return node


# ------------------------------------------------------------------------------------------
# a whole site (real router, hub and node processes)
# ------------------------------------------------------------------------------------------


class SiteClient:
    """A blocking WAMP client of a running site: a child process holding one session.

    It joins as the read-only consumer user, like a dashboard. :meth:`call` sends one
    call and waits for the answer (JSON between us and the child; msgpack or JSON on
    the WAMP side). Errors are raised as autobahn ``ApplicationError``.
    """

    def __init__(self, site_file: Path, log_path: Path, *, serializer: str = "msgpack",
                 env: Mapping[str, str] | None = None, timeout: float = 60.0) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sisock_core.testing", "client", str(site_file), serializer],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=full_env,
            start_new_session=True,
        )
        self._lines: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, daemon=True).start()
        line = self._next_line(timeout)
        if line != f"{READY} client":
            self.close()
            raise AssertionError(f"the site client did not start ({line!r})\n{self._tail()}")

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def _tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""

    def _next_line(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer from the site client within {timeout}s") from None

    def call(self, procedure: str, *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Call ``procedure`` (a full URI) on the router and return the answer."""
        from autobahn.wamp.exception import ApplicationError

        with self._lock:
            if self.proc.poll() is not None:
                raise AssertionError(f"the site client exited ({self.proc.returncode})\n{self._tail()}")
            rid = next(self._ids)
            request = {"id": rid, "uri": procedure, "args": list(args), "kwargs": kwargs,
                       "timeout": timeout}
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            while True:
                line = self._next_line(timeout + 10)
                if line is None:
                    raise AssertionError(f"the site client exited ({self.proc.poll()})\n{self._tail()}")
                answer = json.loads(line)
                if answer.get("id") == rid:
                    break
        if "error" in answer:
            raise ApplicationError(answer["error"], *answer.get("args", []), **answer.get("kwargs", {}))
        return answer["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


class RunningSite:
    """A ``sisock up`` on free loopback ports, with a blocking client (see :func:`start_site`).

    Attributes: ``path`` (the site file), ``directory``, ``config`` (its SiteConfig),
    ``node_names`` (enabled nodes), ``process`` (the :class:`SisockProcess`),
    ``client`` (the :class:`SiteClient`) and ``http_url`` when the bridge runs.
    """

    def __init__(self, path: Path, process: SisockProcess, client: SiteClient, config: Any,
                 node_names: list[str], env: Mapping[str, str] | None) -> None:
        self.path = path
        self.directory = path.parent
        self.process = process
        self.client = client
        self.config = config
        self.node_names = node_names
        self.env = dict(env or {})
        self.http_url = f"http://127.0.0.1:{config.http.port}" if config.http.start else None
        self._stopped = False

    def call(self, procedure: str, *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Call any consumer procedure by URI."""
        return self.client.call(procedure, *args, timeout=timeout, **kwargs)

    def nodes(self) -> list[dict]:
        """The hub's ``get_data_node`` answer: ``[{"name", "description"}, ...]``."""
        from sisock_core.wamp import HUB_LIST

        return self.call(HUB_LIST)

    def get_fields(self, node: str, start: Any = 1, end: Any = 0) -> list:
        """``get_fields(start, end)`` of ``node``: ``[fields, timelines]``."""
        from sisock_core.wamp import node_uri

        return self.call(node_uri(node, "get_fields"), start, end)

    def get_data(self, node: str, field: Any, start: Any = 1, end: Any = 0, min_stride: Any = None,
                 *, timeout: float = 60.0, **kwargs: Any) -> dict:
        """``get_data(field, start, end, min_stride)`` of ``node``."""
        from sisock_core.wamp import node_uri

        return self.call(node_uri(node, "get_data"), field, start, end, min_stride,
                         timeout=timeout, **kwargs)

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``sisock ARGS -c <site file>`` and return the completed process (text)."""
        env = dict(os.environ)
        env.update(self.env)
        return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args, "-c", str(self.path)],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def log_text(self) -> str:
        """The whole log of ``sisock up`` (router, hub and node lines)."""
        return self.process.log_text()

    def log_tail(self, n: int = 60, debug: bool = True) -> str:
        """The last ``n`` lines of that log (``debug=False``: without debug lines)."""
        return self.process.log_tail(n, debug=debug)

    def stop(self) -> None:
        """Stop the client and ``sisock up``; AssertionError if it did not exit cleanly."""
        if self._stopped:
            return
        self._stopped = True
        self.client.close()
        rc = self.process.stop()
        if rc != 0:
            raise AssertionError(f"sisock up exited with {rc}\n--- log tail without debug lines ---\n"
                                 f"{self.log_tail(40, debug=False)}")

    def __enter__(self) -> "RunningSite":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_site(
    directory: str | Path,
    nodes: str | Mapping[str, Mapping[str, Any]],
    *,
    http: bool = False,
    env: Mapping[str, str] | None = None,
    serializer: str = "msgpack",
    timeout: float = 120.0,
) -> RunningSite:
    """Write ``<directory>/nodes.toml`` on free loopback ports and run ``sisock up`` on it.

    ``nodes``: ``{name: {"plugin": ..., option: value, ...}}`` or TOML text of the
    ``[nodes.*]`` tables; the plugins must be installed. ``http``: also run the HTTP
    bridge. ``env``: extra environment of every process. Returns once the router, the
    hub and every enabled node are up and listed by the hub; raises AssertionError with
    the log if a node cannot start.
    """
    from sisock_core.config import load_config

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tls_port, ocs_port, http_port = free_ports(3)
    path = write_site(directory / "nodes.toml", state_dir=directory / "state", tls_port=tls_port,
                      ocs_port=ocs_port, http_port=http_port, start_http=http, nodes=nodes)
    merged_env = dict(os.environ)
    merged_env.update(env or {})
    config = load_config(path, env=merged_env)  # a bad node table fails here, clearly
    names = [n.name for n in config.nodes.values() if n.enabled]
    process = SisockProcess(["up", str(path)], directory / "up.log", env=env)
    client = None
    try:
        process.wait_ready("site", timeout=timeout,
                           fail_on=r"node \w+ cannot start: [^\n]*|cannot start the router: [^\n]*")
        client = SiteClient(path, directory / "client.log", serializer=serializer, env=env,
                            timeout=timeout)
        site = RunningSite(path, process, client, config, names, env)

        def all_listed() -> bool:
            return set(names) <= {n["name"] for n in site.nodes()}

        wait_until(all_listed, timeout=timeout, what=f"nodes {names} to be listed by the hub")
        return site
    except BaseException:
        if client is not None:
            client.close()
        process.stop()
        raise


# ------------------------------------------------------------------------------------------
# the pytest plugin
# ------------------------------------------------------------------------------------------

import pytest  # noqa: E402  (the helpers above work without pytest)


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", "integration: starts real processes (crossbar router, hub, nodes)"
    )


def pytest_unconfigure(config: Any) -> None:
    _stop_private_reactor()


@pytest.fixture
def sisock_node() -> Iterable[Callable[..., SisockNode]]:
    """Factory: ``sisock_node(plugin, options=None, *, name=None, ...)`` → a running
    :class:`SisockNode` (see :func:`start_node`); every node is stopped after the test."""
    started: list[SisockNode] = []

    def factory(plugin: Any, options: Any = None, **kwargs: Any) -> SisockNode:
        node = start_node(plugin, options, **kwargs)
        started.append(node)
        return node

    yield factory
    errors = []
    for node in reversed(started):
        try:
            node.stop()
        except Exception as exc:  # node_stop raised: fail the test's teardown
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def sisock_site(tmp_path_factory: Any) -> Iterable[Callable[..., RunningSite]]:
    """Factory: ``sisock_site(nodes, *, http=False, env=None)`` → a :class:`RunningSite`.

    Module-scoped: calls with the same arguments share one ``sisock up``, stopped after
    the module's last test.
    """
    sites: dict[str, RunningSite] = {}

    def factory(nodes: str | Mapping[str, Mapping[str, Any]], **kwargs: Any) -> RunningSite:
        key = json.dumps([nodes, kwargs], sort_keys=True, default=str)
        if key not in sites:
            sites[key] = start_site(tmp_path_factory.mktemp("sisock-site"), nodes, **kwargs)
        return sites[key]

    yield factory
    errors = []
    for site in sites.values():
        try:
            site.stop()
        except AssertionError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


# ------------------------------------------------------------------------------------------
# the client process: python -m sisock_core.testing client SITE_FILE [SERIALIZER]
# ------------------------------------------------------------------------------------------


def _client_main(site_file: str, serializer: str = "msgpack") -> None:
    """Hold one consumer session; answer JSON-line requests from stdin on stdout."""
    from twisted.internet import defer, stdio, task
    from twisted.logger import Logger
    from twisted.protocols.basic import LineReceiver

    from sisock_core.config import load_config
    from sisock_core.logs import announce_ready, setup_logging
    from sisock_core.wamp import make_component

    cfg = load_config(site_file)
    setup_logging(cfg.log_level)
    log = Logger(namespace="sisock.testing.client")

    async def main(reactor: Any) -> None:
        state: dict[str, Any] = {"session": None}
        joined: list[defer.Deferred] = []
        done: defer.Deferred = defer.Deferred()
        comp = make_component(cfg, consumer=True, serializers=[serializer])

        def on_join(session: Any, details: Any) -> None:
            state["session"] = session
            if not state.get("announced"):
                state["announced"] = True
                announce_ready("client")
            while joined:
                joined.pop().callback(session)

        def on_leave(session: Any, details: Any) -> None:
            state["session"] = None

        comp.on("join", on_join)
        comp.on("leave", on_leave)

        class Requests(LineReceiver):
            delimiter = b"\n"
            MAX_LENGTH = 1 << 26

            def lineReceived(self, line: bytes) -> None:
                defer.Deferred.fromCoroutine(self.answer(json.loads(line)))

            async def answer(self, req: dict) -> None:
                from autobahn.wamp.exception import ApplicationError

                out: dict[str, Any] = {"id": req["id"]}
                try:
                    session = state["session"]
                    if session is None:
                        wait: defer.Deferred = defer.Deferred()
                        joined.append(wait)
                        session = await wait.addTimeout(req.get("timeout", 60), reactor)
                    d = defer.ensureDeferred(session.call(req["uri"], *req["args"], **req["kwargs"]))
                    out["result"] = await d.addTimeout(req.get("timeout", 60), reactor)
                except ApplicationError as exc:
                    out.update(error=exc.error, args=list(exc.args), kwargs=exc.kwargs or {})
                except Exception as exc:
                    log.error("call {uri} failed: {error}", uri=req.get("uri"), error=repr(exc))
                    out.update(error="sisock.testing.client_error", args=[f"{type(exc).__name__}: {exc}"])
                self.transport.write(json.dumps(out).encode() + b"\n")

            def connectionLost(self, reason: Any = None) -> None:
                if not done.called:
                    done.callback(None)

        stdio.StandardIO(Requests(), reactor=reactor)
        comp.start(reactor)
        await done
        await comp.stop()

    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "client":
        _client_main(*sys.argv[2:4])
    else:
        sys.stderr.write("usage: python -m sisock_core.testing client SITE_FILE [msgpack|json]\n")
        raise SystemExit(2)
