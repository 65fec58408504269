"""A plugin's per-node object (an archive, a store) kept in ``node.state``, and the hooks
that answer from it.

Plugins whose nodes serve one object each start it in ``node_start`` and answer
``list_fields`` and ``read_range`` by asking it (it has methods of those names, without
the node)::

    from sisock_core.nodestate import NodeObject

    ARCHIVE = NodeObject("apex", "apex")  # plugin name (for errors), node.state key

    @hookimpl
    def node_start(node):
        ARCHIVE.put(node, ApexArchive(node.options.data_dir))

    node_stop, list_fields, read_range = ARCHIVE.hooks()
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs

from sisock_core import hookimpl
from sisock_core.model import Field, NodeContext, Timeline


@attrs.frozen
class NodeObject:
    """``node.state[key]`` of a node of ``plugin``."""

    plugin: str
    key: str

    def put(self, node: NodeContext, obj: Any) -> None:
        node.state[self.key] = obj

    def get(self, node: NodeContext) -> Any:
        """The node's object, or ``RuntimeError`` saying the node was not started."""
        try:
            return node.state[self.key]
        except KeyError:
            raise RuntimeError(
                f"{self.plugin}: node {node.name!r} was not started (node_start not called)") from None

    def hooks(self) -> tuple[Callable[..., None], Callable[..., Iterable[Field]],
                             Callable[..., Mapping[str, Timeline]]]:
        """``node_stop`` (forgets the object), ``list_fields`` and ``read_range`` (ask it)."""

        @hookimpl
        def node_stop(node: NodeContext) -> None:
            node.state.pop(self.key, None)

        @hookimpl
        def list_fields(node: NodeContext, start: float, end: float) -> Iterable[Field]:
            return self.get(node).list_fields(start, end)

        @hookimpl
        def read_range(node: NodeContext, fields: Sequence[str], start: float,
                       end: float) -> Mapping[str, Timeline]:
            return self.get(node).read_range(fields, start, end)

        return node_stop, list_fields, read_range
