"""Which OS process serves which data nodes (the ``process`` key of a ``[nodes.<name>]`` table).

- absent (the default): the nodes of one plugin share a process, the group named after
  the plugin (50 datafeed nodes: one process, not 50);
- ``process = "own"``: the node runs alone in a process of its own (isolation: a plugin
  that may crash the interpreter, leak or block);
- ``process = "<group>"``: the nodes naming the same group share a process (a group named
  after a plugin is that plugin's default group).

A process serving one node is ``sisock node <name>``; one serving several is
``sisock node --group <group>``. In a shared process each node keeps its own WAMP session,
thread pools and registration; a plugin raising (at start, in a read or a feed callback)
stops only its own node. Pure: no Twisted.
"""

from __future__ import annotations

import tomllib
from typing import Any, Iterable

import attrs

from sisock_core.config import NodeConfig, SiteConfig

#: The ``process`` value asking for a process of the node's own.
OWN = "own"


@attrs.frozen
class NodeProcess:
    """One OS process of data nodes."""

    group: str | None  #: the group's name; None for a node with a process of its own
    nodes: tuple[str, ...]  #: the names of the nodes it serves, in site-file order

    @property
    def name(self) -> str:
        """What ``sisock up``'s log and the systemd unit call it: ``node <name>`` for a
        process serving one node, ``group <group>`` for one serving several."""
        return f"node {self.nodes[0]}" if len(self.nodes) == 1 else f"group {self.group}"

    @property
    def args(self) -> list[str]:
        """The ``sisock`` arguments running it (before ``--config``)."""
        return ["node", self.nodes[0]] if len(self.nodes) == 1 else ["node", "--group", str(self.group)]


def group_of(node: NodeConfig) -> str | None:
    """The group ``node`` belongs to, or None when it has a process of its own."""
    return _group(node.plugin, node.process)


def _group(plugin: Any, process: Any) -> str | None:
    if process == OWN:
        return None
    return process or plugin


def node_processes(nodes: Iterable[NodeConfig]) -> list[NodeProcess]:
    """The processes serving ``nodes`` (pass the enabled ones), in site-file order."""
    groups: dict[str, list[str]] = {}
    order: list[tuple[str, str]] = []  # ("group", name) or ("own", node)
    for node in nodes:
        group = group_of(node)
        if group is None:
            order.append((OWN, node.name))
        else:
            if group not in groups:
                groups[group] = []
                order.append(("group", group))
            groups[group].append(node.name)
    return [NodeProcess(None, (name,)) if kind == OWN else NodeProcess(name, tuple(groups[name]))
            for kind, name in order]


def site_node_processes(cfg: SiteConfig) -> list[NodeProcess]:
    """The processes serving the enabled nodes of ``cfg``."""
    return node_processes(n for n in cfg.nodes.values() if n.enabled)


def group_members(cfg: SiteConfig, group: str) -> list[str]:
    """The enabled nodes of ``group`` (empty if none)."""
    return [n.name for n in cfg.nodes.values() if n.enabled and group_of(n) == group]


def tables_in_group(site_toml: str, group: str) -> list[str]:
    """The ``[nodes.<name>]`` tables of the site file text ``site_toml`` that ``group``
    would hold, read without importing any plugin (``sisock node --group`` then loads only
    those: :func:`sisock_core.config.load_config`'s ``only_nodes``). Empty if the text is
    not TOML (the full load says why)."""
    try:
        nodes = tomllib.loads(site_toml).get("nodes", {})
    except tomllib.TOMLDecodeError:
        return []
    if not isinstance(nodes, dict):
        return []
    return [name for name, table in nodes.items()
            if isinstance(table, dict) and _group(table.get("plugin"), table.get("process")) == group]
