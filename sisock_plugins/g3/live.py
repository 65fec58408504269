"""A live g3 node: the OCS feeds of the providers it indexes, under the archive's names.

With ``live = true`` a g3 node subscribes to every OCS feed on its router
(``observatory..feeds.``, a wildcard subscription, so agents that start later are
followed without a restart) and publishes the samples of the feeds it archives into
the core's live cache, named exactly as the files name them:

* field ``<provider description>.<field>``, e.g.
  ``observatory.LSA22YE.feeds.temperatures.Channel_01_T`` (OCS names kept as sent);
* timeline: the timeline of the files' block holding those fields (``<description>.<block
  name>``), so a field keeps one timeline across the seam.

The core then answers each field from the files up to their final time and from the feed
after it (:mod:`sisock_core.assembly`). A feed is followed when its provider is in the
index or when its ``feed_data`` says it is recorded (the aggregator will write it).
Messages are parsed by the datafeed plugin's :func:`~sisock_plugins.datafeed.ocs.parse_event`
(every OCS message shape). A live field whose type differs from the files' is left out;
a field the files do not hold is served under its own name; an agent restart (new
``session_id``) is logged. Each of these is one log line.

Handlers run on the reactor thread; the names map they use (:class:`LiveNames`) is
rebuilt in a worker thread when the index changes (from the ``archive_until`` hook).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from twisted.logger import Logger

from sisock_core.logs import RepeatedFailures
from sisock_plugins.datafeed.ocs import parse_event, split_event

log = Logger(namespace="sisock_plugins.g3.live")


def value_type(values: np.ndarray) -> str:
    """sisock's type of a parsed column: "number", "bool" or "string"."""
    kind = values.dtype.kind
    return "number" if kind in "fiu" else "bool" if kind == "b" else "string"


class LiveNames:
    """How the archive names each provider's fields and blocks (built from the reader's catalog)."""

    def __init__(self, generation: int = -1, summaries: Any = (), layouts: Mapping[int, Any] | None = None
                 ) -> None:
        self.generation = generation
        self.types: dict[str, str] = {}
        self.timeline_of_field: dict[str, str] = {}
        self.fields_of: dict[str, list[str]] = {}
        for s in summaries:
            self.types[s.name] = s.type
            self.timeline_of_field[s.name] = s.timeline
            self.fields_of.setdefault(s.description, []).append(s.field)
        self.timeline_of_block: dict[tuple[str, str], str] = {}
        for lay in (layouts or {}).values():
            self.timeline_of_block[(lay.description, lay.block_name)] = lay.timeline

    @property
    def providers(self) -> set[str]:
        return set(self.fields_of)

    def map(self, description: str, block: str, data: Mapping[str, np.ndarray]
            ) -> tuple[str, dict[str, np.ndarray], list[tuple[str, str]]]:
        """``(timeline, {full name: values}, problems)`` of one parsed block of a feed."""
        problems: list[tuple[str, str]] = []
        cols: dict[str, np.ndarray] = {}
        known = self.fields_of.get(description)
        for field, values in data.items():
            full = f"{description}.{field}"
            expected = self.types.get(full)
            got = value_type(values)
            if expected is not None and expected != got:
                problems.append((f"type:{full}", f"feed {description}: field {field!r} sends {got} values "
                                 f"but the files hold {expected} values; its live samples are left out"))
                continue
            if expected is None and known:
                shown = ", ".join(sorted(known)[:8]) + (" ..." if len(known) > 8 else "")
                problems.append((f"name:{full}", f"feed {description}: field {field!r} is not in the files "
                                 f"(they hold {shown}); served live under {full!r} until they do"))
            cols[full] = values
        timeline = self.timeline_of_block.get((description, block))
        if timeline is None:
            owners = {self.timeline_of_field.get(f) for f in cols}
            timeline = owners.pop() if len(owners) == 1 and None not in owners else f"{description}.{block}"
        return timeline, cols, problems


class FeedFollower:
    """Turns OCS feed events into ``publish`` calls under the archive's names (reactor thread)."""

    def __init__(self, node: str, publish: Callable[..., Any], *, address_root: str = "observatory") -> None:
        self.node = node
        self.publish = publish
        self.address_root = address_root
        self.names = LiveNames()
        self.problem = RepeatedFailures.for_node(log, node)
        self._seen: dict[str, str] = {}  # topic -> "followed" / "ignored"
        self._sessions: dict[str, Any] = {}  # topic -> feed_data session_id

    @property
    def pattern(self) -> str:
        """The wildcard topic of every agent's feeds."""
        return f"{self.address_root}..feeds."

    def set_names(self, names: LiveNames) -> None:
        self.names = names  # one reference swap: handlers see the old or the new map

    def _once(self, key: str, message: str) -> None:
        if key not in self._seen or self._seen[key] != message:
            self._seen[key] = message
            log.info("{node}: {message}", node=self.node, message=message)

    def on_event(self, *args: Any, topic: str | None = None, **kwargs: Any) -> None:
        if not topic or not topic.startswith(self.address_root + "."):
            return
        parts = topic[len(self.address_root) + 1:].split(".")
        if len(parts) != 3 or parts[1] != "feeds":
            return
        agent_address = f"{self.address_root}.{parts[0]}"
        names = self.names
        try:
            _, feed_data = split_event(args, kwargs)
        except ValueError:
            feed_data = None
        if not isinstance(feed_data, Mapping):
            feed_data = {}
        if topic not in names.fields_of:
            if feed_data.get("record") is not True:
                self._once(topic, f"not following feed {topic}: not in the files and not recorded")
                return
            self._once(topic, f"following feed {topic} (recorded; not in the files yet)")
        else:
            self._once(topic, f"following feed {topic}")
        session = feed_data.get("session_id")
        previous = self._sessions.get(topic)
        if session is not None and previous is not None and session != previous:
            log.info("{node}: agent {agent} restarted (session {old} -> {new}); following its new session",
                     node=self.node, agent=agent_address, old=previous, new=session)
        if session is not None:
            self._sessions[topic] = session
        parsed = parse_event(args, kwargs, agent_address=agent_address, keep_ocs_names=True,
                             timeline_prefix=topic)
        if parsed.rejected is not None:
            self.problem(f"ignored a message on {topic}: {parsed.rejected}")
            return
        for p in parsed.problems:
            self.problem(f"malformed message on {topic}: {p}")
        for batch in parsed.batches:
            block = batch.timeline[len(topic) + 1:]
            timeline, cols, problems = names.map(topic, block, batch.data)
            for _, message in problems:
                self.problem(message)
            if cols:
                self.publish(timeline, batch.t, cols)
