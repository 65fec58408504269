"""One plugin served by a real DataNodeServer in this process, without a router
(:func:`start_node`).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs

from sisock_core.testing.memory_session import MemorySession
from sisock_core.testing.private_reactor import _private_reactor, _ReactorThread
from sisock_core.testing.processes import _toml, wait_until


def _entry_point_name(obj: Any) -> str | None:
    """The ``sisock.plugins`` entry name under which ``obj`` (a module) is installed."""
    module = getattr(obj, "__name__", None)
    if not isinstance(module, str):
        return None
    for ep in importlib.metadata.entry_points(group="sisock.plugins"):
        if ep.value == module:
            return ep.name
    return None


class Received(list):
    """A list whose appends (from any thread) wake :meth:`wait`, which blocks until its items
    satisfy a condition. :meth:`SisockNode.subscribe` returns one: the events the node
    publishes on a topic, ``(args, kwargs)`` pairs appended as they arrive."""

    def __init__(self, timeout: float = 30.0) -> None:
        super().__init__()
        self.timeout = timeout  #: the default of :meth:`wait`
        self._arrived = threading.Condition()

    def append(self, item: Any) -> None:
        with self._arrived:
            super().append(item)
            self._arrived.notify_all()

    def add(self, *args: Any, **kwargs: Any) -> None:
        """One WAMP event (a subscription handler): appends ``(list(args), kwargs)``."""
        self.append((list(args), kwargs))

    def wait(self, predicate: Callable[["Received"], Any] = len, timeout: float | None = None,
             what: str = "an event") -> Any:
        """Block until ``predicate(items)`` (default: any item) is true, checking it now and
        at each append; its value. AssertionError naming ``what`` after ``timeout`` s.
        ``predicate`` looks at the items only (appends wait while it runs; it must not call
        the node)."""
        timeout = self.timeout if timeout is None else timeout
        with self._arrived:
            value = self._arrived.wait_for(lambda: predicate(self), timeout)
        if not value:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} ({len(self)} events received)")
        return value


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

    def subscribe(self, topic: str) -> Received:
        """Record the events the node publishes on ``topic`` (``"live"`` is short for
        its live topic); returns the list ``(args, kwargs)`` pairs are appended to, whose
        ``wait(predicate)`` blocks until the events so far satisfy ``predicate``."""
        uri = topic if "." in topic else self.uri(topic)
        events = Received(self.timeout)
        self._runner.run(self.session.subscribe, events.add, uri, timeout=self.timeout)
        return events

    def wait_until(self, predicate: Callable[[], Any], timeout: float | None = None,
                   what: str = "condition") -> Any:
        """Poll ``predicate`` (e.g. ``lambda: node.get_data(["x"])["data"]["x"]``) until it
        returns something true; AssertionError after ``timeout``. A poll (every 50 ms): for a
        state with no event to wait on (a plugin's own thread); for the node's pushes, wait
        on the list :meth:`subscribe` returns instead."""
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
    summaries_db: str | None = None,
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
    directory removed when the node stops. ``summaries_db``: the site's shared store of
    the summaries the core computes (default: a file in the state directory).

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
        site_table: dict[str, Any] = {"state_dir": str(state)}
        if summaries_db is not None:
            site_table["summaries_db"] = summaries_db
        text = _toml({**site_table, "nodes": {node_name: table}})
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
