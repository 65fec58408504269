"""The data model shared by the core and plugins (pure, no Twisted).

A plugin declares its fields as :class:`Field` values and answers reads with
:class:`Timeline` values holding numpy arrays. The core turns these into the
sisock wire format (see ``wire-protocol.md``).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Mapping

import attrs
import numpy as np

FieldType = Literal["number", "string", "bool"]


@attrs.frozen
class Field:
    """One channel a node serves, declared once as data.

    ``timeline`` names the group of fields sharing timestamps; ``interval`` is the
    nominal sample spacing of that timeline in seconds (``None`` if irregular).
    """

    name: str
    timeline: str
    type: FieldType = "number"
    units: str | None = None
    description: str | None = None
    interval: float | None = None


@attrs.define
class Timeline:
    """Samples of one timeline, as a plugin returns them from ``read_range``.

    ``t`` is a 1-D float array of UNIX times in ascending order; ``data`` maps each
    field name to an array of the same length. ``finalized_until`` is the time up to
    which the data will not change any more (``None``: unknown).
    """

    t: np.ndarray
    data: dict[str, np.ndarray]
    finalized_until: float | None = None

    def __attrs_post_init__(self) -> None:
        self.t = np.asarray(self.t, dtype=np.float64)
        self.data = {k: np.asarray(v) for k, v in self.data.items()}
        for name, values in self.data.items():
            if values.shape != self.t.shape:
                raise ValueError(
                    f"timeline field {name!r} has {values.shape[0] if values.ndim else 0} "
                    f"values for {self.t.shape[0]} timestamps"
                )


@attrs.frozen
class PluginSpec:
    """What a plugin declares about itself (returned by the ``sisock_plugin_spec`` hook).

    ``options`` is an attrs class whose fields are the plugin's options in
    ``[nodes.<name>]`` tables; ``env`` maps original environment variables to option
    names (they override the config, so an existing deployment carries over).
    """

    default_node_name: str
    description: str
    options: type | None = None
    env: Mapping[str, str] = attrs.field(factory=dict)


@attrs.define
class NodeContext:
    """What a plugin's hooks receive about the node they serve.

    ``options`` is an instance of the plugin's options class. ``state`` is a dict the
    plugin may fill in ``node_start`` and use in later hooks (open handles, caches).
    ``wamp_subscriber`` is set by the core when the node runs on a router (see
    :meth:`wamp_subscribe`).
    """

    name: str
    description: str
    options: Any = None
    state: dict[str, Any] = attrs.field(factory=dict)
    wamp_subscriber: Callable[..., Callable[[], None]] | None = attrs.field(default=None, repr=False)

    def wamp_subscribe(self, topic: str, handler: Callable[..., None], *,
                       match: Literal["exact", "prefix", "wildcard"] = "exact") -> Callable[[], None]:
        """Receive the events of WAMP ``topic`` through the node's own router session.

        ``handler(*args, **kwargs)`` is called on the reactor thread for every event:
        keep it short (parse and ``publish``; no blocking I/O). The core subscribes
        again after every reconnection, so a plugin calls this once (typically in
        ``subscribe``). The node's session has the router's ``server`` role, so it may
        subscribe to any topic, e.g. OCS feeds ``observatory.<agent>.feeds.<feed>``.
        ``match="wildcard"`` (empty URI parts match any part, e.g.
        ``observatory..feeds.`` for every agent's feeds) or ``"prefix"`` subscribes to a
        pattern; the handler then also receives the event's topic as keyword ``topic``.
        Returns a callable that unsubscribes. Raises ``RuntimeError`` when the node
        is not run by the core's data node server (no router session).
        """
        if self.wamp_subscriber is None:
            raise RuntimeError(f"node {self.name!r} has no WAMP session to subscribe to {topic!r} with")
        if match == "exact":
            return self.wamp_subscriber(topic, handler)
        return self.wamp_subscriber(topic, handler, match=match)


@attrs.frozen
class Command:
    """A ``sisock`` subcommand a plugin adds (hook ``plugin_commands``).

    The core adds ``-c/--config``, ``--log-format`` and ``--help`` to it, and a hidden
    ``--supervised`` (set when ``sisock up`` runs it as a :class:`Service`).
    """

    name: str  #: ``sisock <name>``; must not be a core command
    help: str  #: one line, in ``sisock --help``
    #: ``run(args, context)``: do the work (``context`` is a :class:`CommandContext`);
    #: exit with ``SystemExit(2)`` for bad usage, 78 when starting again would not help
    run: Callable[[Any, "CommandContext"], None]
    description: str | None = None  #: the ``sisock <name> --help`` text (default: ``help``)
    #: ``add_arguments(parser)``: the command's own options (an ``argparse`` parser)
    add_arguments: Callable[[Any], None] | None = None


@attrs.frozen
class CommandContext:
    """What a plugin command gets from the core besides its parsed arguments."""

    config_path: str | None  #: ``-c``, else ``$SISOCK_CONFIG``, else None (the embedded site)
    supervised: bool  #: run by ``sisock up`` as a service
    #: ``load(nodes=None, plugins=None)``: the site config, reading only these node
    #: tables / nodes of these plugins (None: all); exits 2 printing its problems
    load: Callable[..., Any]
    #: ``run_reactor(main, *args)``: run ``await main(reactor, *args)`` under the reactor
    run_reactor: Callable[..., None]
    #: ``exit_when_stdin_closes(reactor)``: when supervised, stop when ``sisock up`` dies
    exit_when_stdin_closes: Callable[[Any], None]


@attrs.frozen
class Service:
    """A background process a plugin runs beside its nodes (hook ``plugin_services``).

    ``sisock up`` runs ``sisock <command> --supervised -c SITE`` as a child named ``name``:
    its log lines carry ``[name]``, it is restarted with backoff when it dies, and not
    restarted when it exits with 2 or 78 (it cannot start: see :mod:`sisock_core.startup_checks`).
    It tells it is ready with :func:`sisock_core.logs.announce_ready` (``name``).
    ``sisock systemd --per-component`` turns it into ``sisock-<name>.service``.
    """

    name: str  #: lowercase letters, digits, '_' and '-'; not a core component's name
    command: tuple[str, ...] = attrs.field(converter=tuple)  #: a command of the plugin, with arguments
    description: str = ""  #: one line, e.g. "scanner (indexes the data files)"; logs and units
    #: seconds ``sisock up`` waits for it to be ready before saying it is late (and the
    #: unit's start timeout); None: it may take as long as it needs (no wait, no timeout)
    ready_timeout: float | None = None
