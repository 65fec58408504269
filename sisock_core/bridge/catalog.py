"""The bridge's field cache: which node serves which field, on which timeline (pure).

Filled from the hub's ``get_data_node`` and each node's ``get_fields(1, 0)``, kept
current from the hub's ``data_node_added``/``data_node_subtracted`` events, and
refreshed on a miss by the service (:mod:`sisock_core.bridge.service`). A node that
leaves keeps its fields (marked not live), so a panel that asks while it restarts
still knows the field's timeline once it is back.
"""

from __future__ import annotations

from typing import Any, Iterable

import attrs

from sisock_core.bridge.grafana import TARGET_SEP


class CatalogError(ValueError):
    """A ``get_fields`` answer that is not ``[fields, timelines]``."""


@attrs.frozen
class FieldInfo:
    timeline: str | None
    type: str | None = None
    units: str | None = None
    description: str | None = None


@attrs.define
class NodeFields:
    description: str = ""
    live: bool = True
    fields: dict[str, FieldInfo] | None = None  #: None until get_fields answered
    loaded_at: float | None = None
    error: str | None = None  #: why the last get_fields failed


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_get_fields(answer: Any) -> dict[str, FieldInfo]:
    """Fields of a ``get_fields`` answer ``[{field: {...}}, {timeline: {...}}]``."""
    if not isinstance(answer, (list, tuple)) or len(answer) != 2 or not isinstance(answer[0], dict):
        raise CatalogError("get_fields did not answer [fields, timelines]")
    fields, timelines = answer
    out: dict[str, FieldInfo] = {}
    for name, info in fields.items():
        if not isinstance(name, str):
            continue
        info = info if isinstance(info, dict) else {}
        out[name] = FieldInfo(
            timeline=_opt_str(info.get("timeline")),
            type=_opt_str(info.get("type")),
            units=_opt_str(info.get("units")),
            description=_opt_str(info.get("description")),
        )
    # Old nodes may leave a field's timeline out; the timelines table names it.
    if isinstance(timelines, dict):
        for tl_name, tl in timelines.items():
            names = tl.get("field") if isinstance(tl, dict) else None
            if not isinstance(names, list):
                continue
            for f in names:
                if isinstance(f, str) and f in out and out[f].timeline is None:
                    out[f] = attrs.evolve(out[f], timeline=tl_name)
    return out


class FieldCatalog:
    """node -> :class:`NodeFields`; every method is plain bookkeeping."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeFields] = {}

    def set_listing(self, listing: Any) -> list[str]:
        """Apply the hub's ``get_data_node`` list; returns nodes whose fields need loading."""
        live: dict[str, str] = {}
        if isinstance(listing, list):
            for item in listing:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    live[item["name"]] = str(item.get("description") or "")
        for name, entry in self.nodes.items():
            entry.live = name in live
        need = []
        for name, description in live.items():
            entry = self.nodes.setdefault(name, NodeFields(description=description))
            entry.description = description
            if entry.fields is None:
                need.append(name)
        return need

    def node_added(self, info: Any) -> str | None:
        """A ``data_node_added`` event; returns the node name (its fields need loading)."""
        if not isinstance(info, dict) or not isinstance(info.get("name"), str):
            return None
        entry = self.nodes.setdefault(info["name"], NodeFields())
        entry.description = str(info.get("description") or "")
        entry.live = True
        return info["name"]

    def node_subtracted(self, info: Any) -> None:
        if isinstance(info, dict) and info.get("name") in self.nodes:
            self.nodes[info["name"]].live = False

    def set_fields(self, node: str, answer: Any, now: float) -> None:
        """Store a node's ``get_fields`` answer (raises :class:`CatalogError`)."""
        fields = parse_get_fields(answer)
        # a node the hub has not listed (yet) is not offered in listings until it does
        entry = self.nodes.setdefault(node, NodeFields(live=False))
        entry.fields = fields
        entry.loaded_at = now
        entry.error = None

    def set_error(self, node: str, error: str) -> None:
        """Remember why ``node``'s fields could not be loaded (unknown names are not
        stored: junk targets must not grow the cache)."""
        entry = self.nodes.get(node)
        if entry is not None:
            entry.error = error

    def field(self, node: str, field: str) -> FieldInfo | None:
        entry = self.nodes.get(node)
        if entry is None or entry.fields is None:
            return None
        return entry.fields.get(field)

    def knows(self, node: str, fields: Iterable[str]) -> bool:
        entry = self.nodes.get(node)
        return entry is not None and entry.fields is not None and all(f in entry.fields for f in fields)

    def live_nodes(self) -> list[str]:
        return sorted(n for n, e in self.nodes.items() if e.live)

    def unloaded_live_nodes(self) -> list[str]:
        return [n for n in self.live_nodes() if self.nodes[n].fields is None]

    def targets(self, node: str | None = None) -> list[str]:
        """``node::field`` for every field of the live nodes (or of ``node``), sorted."""
        out = []
        for name in self.live_nodes() if node is None else [node]:
            entry = self.nodes.get(name)
            if entry is None or entry.fields is None:
                continue
            out.extend(f"{name}{TARGET_SEP}{f}" for f in entry.fields)
        return sorted(out)

    def known_fields(self, node: str) -> list[str] | None:
        """``node``'s field names, sorted; None until its ``get_fields`` answered."""
        entry = self.nodes.get(node)
        return None if entry is None or entry.fields is None else sorted(entry.fields)

    def field_names(self, node: str | None = None) -> list[str]:
        names: set[str] = set()
        for name in self.live_nodes() if node is None else [node]:
            entry = self.nodes.get(name)
            if entry is not None and entry.fields is not None:
                names.update(entry.fields)
        return sorted(names)
