"""The datafeed plugin: serve the last hour of one OCS agent's data feed, live.

The node subscribes to ``observatory.<target>.feeds.<feed>`` through its own router
session (no second connection, so it also works on another machine than the
router, whose OCS port stays on loopback) and keeps what the agent publishes in the
core's live cache: ``get_fields``/``get_data`` answer from it and consumers can
follow ``org.simonsobservatory.consumer.<node>.live``. Example
``site/nodes.toml`` entry::

    [nodes.bluefors]
    plugin = "datafeed"
    target = "bluefors"           # the agent's instance id (env TARGET)
    feed = "bluefors"             # the feed name (env FEED)
    description = "Bluefors DR"   # (env DESCRIPTION; env NAME renames the node)
    # buffer_time = 3600          # seconds kept (env BUFFER_TIME)
    # keep_ocs_names = false      # true: serve OCS field names unchanged

Field names are lower-cased with spaces replaced by ``_``, as the original sisock
consumer did; each OCS block is a timeline ``observatory.<target>.<block>``.
Messages from another agent than ``target`` are ignored; a malformed message is
logged with the reason, and its valid blocks are kept.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import attrs
from twisted.logger import Logger

from sisock_core import PluginSpec, hookimpl
from sisock_core.logs import RepeatedFailures
from sisock_core.livecache import DEFAULT_BUFFER_TIME, DEFAULT_MAX_SAMPLES
from sisock_core.model import NodeContext
from sisock_core.validators import positive, positive_int
from sisock_plugins.datafeed.ocs import feed_topic, parse_event

log = Logger(namespace="sisock_plugins.datafeed")

STATE_KEY = "datafeed"

_URI_PART = re.compile(r"^[^\s.#]+$")


def _uri_part(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not _URI_PART.match(value):
        raise ValueError(
            f"must be a non-empty string without spaces, dots or '#' (one part of the OCS "
            f"address), got {value!r}"
        )


def _root(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not re.match(r"^[^\s.#]+(\.[^\s.#]+)*$", value):
        raise ValueError(f"must be a dotted WAMP URI prefix like 'observatory', got {value!r}")


@attrs.frozen
class Options:
    """Options of a datafeed node (its ``[nodes.<name>]`` table)."""

    #: the OCS agent's instance id, e.g. ``LSA22YE`` (env TARGET)
    target: str = attrs.field(validator=_uri_part)
    #: the feed's name, e.g. ``temperatures`` (env FEED)
    feed: str = attrs.field(validator=_uri_part)
    #: seconds of data kept in memory (env BUFFER_TIME)
    buffer_time: float = attrs.field(default=DEFAULT_BUFFER_TIME, validator=positive)
    #: cap on samples kept per block, whatever the feed's rate
    max_samples: int = attrs.field(default=DEFAULT_MAX_SAMPLES, validator=positive_int)
    #: serve field names exactly as OCS sends them (default: lower case, spaces to ``_``)
    keep_ocs_names: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    #: the OCS address root of the agent's address
    address_root: str = attrs.field(default="observatory", validator=_root)

    @property
    def agent_address(self) -> str:
        return f"{self.address_root}.{self.target}"

    @property
    def topic(self) -> str:
        return feed_topic(self.target, self.feed, self.address_root)


@hookimpl
def sisock_plugin_spec() -> PluginSpec:
    return PluginSpec(
        default_node_name="data_feed",
        description="Live data from an OCS agent's feed",
        options=Options,
        env={"TARGET": "target", "FEED": "feed", "NAME": "name", "DESCRIPTION": "description",
             "BUFFER_TIME": "buffer_time"},
    )


@hookimpl
def subscribe(node: NodeContext, publish: Callable[..., Any]) -> Callable[[], None]:
    options: Options = node.options
    feed = FeedConsumer(node.name, options, publish)
    node.state[STATE_KEY] = feed
    log.info("{node}: following OCS feed {topic} (agent {agent})", node=node.name,
             topic=options.topic, agent=options.agent_address)
    cancel = node.wamp_subscribe(options.topic, feed.on_event)
    return cancel


@hookimpl
def node_stop(node: NodeContext) -> None:
    node.state.pop(STATE_KEY, None)


class FeedConsumer:
    """Turns the feed's WAMP events into ``publish`` calls (runs on the reactor thread)."""

    def __init__(self, node: str, options: Options, publish: Callable[..., Any]) -> None:
        self.node = node
        self.options = options
        self.publish = publish
        self.problem = RepeatedFailures.for_node(log, node)
        self._formats: set[str] = set()

    def on_event(self, *args: Any, **kwargs: Any) -> None:
        parsed = parse_event(args, kwargs, agent_address=self.options.agent_address,
                             keep_ocs_names=self.options.keep_ocs_names)
        if parsed.rejected is not None:
            self.problem(f"ignored a message on {self.options.topic}: {parsed.rejected}")
            return
        if parsed.format and parsed.format not in self._formats:
            self._formats.add(parsed.format)
            log.info("{node}: first {kind} message on {topic}", node=self.node,
                     kind={"blocks": "OCS (blocks)", "samples": "OCS 0.4.0-0.4.2 (list of samples)",
                           "sample": "OCS single-sample"}[parsed.format],
                     topic=self.options.topic)
        for p in parsed.problems:
            self.problem(f"malformed message on {self.options.topic}: {p}")
        for batch in parsed.batches:
            problems = self.publish(batch.timeline, batch.t, batch.data)
            for p in problems or ():
                self.problem(p)
