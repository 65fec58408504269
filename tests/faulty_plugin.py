"""A deliberately broken sisock plugin (tests of node groups): ``fail_at`` chooses where it raises.

- ``start``: ``node_start`` raises (the node never starts);
- ``fields``: ``list_fields`` raises;
- ``read``: ``read_range`` raises (``list_fields`` answers ``x``);
- ``feed``: its handler of the OCS feed ``observatory.<target>.feeds.temperatures`` raises
  on every message;
- ``missing``: ``node_start`` raises until the file ``path`` exists;
- ``none``: a plugin that works (one field ``x``, samples at 0, 1, 2 s).

Installed only by the tests (a ``*.dist-info`` directory on ``PYTHONPATH``).
"""

from __future__ import annotations

import os

import attrs

from sisock_core import Field, PluginSpec, Timeline, hookimpl


@attrs.define
class Options:
    fail_at: str = "none"  #: start, fields, read, feed, missing or none
    target: str = "agent00"  #: the OCS agent whose feed ``feed`` follows
    path: str = ""  #: the file ``missing`` waits for


@hookimpl
def sisock_plugin_spec() -> PluginSpec:
    return PluginSpec(default_node_name="faulty", description="A plugin that raises on purpose",
                      options=Options)


@hookimpl
def node_start(node):
    if node.options.fail_at == "start":
        raise RuntimeError(f"{node.name}: broken on purpose at start")
    if node.options.fail_at == "missing" and not os.path.exists(node.options.path):
        raise FileNotFoundError(f"{node.name}: {node.options.path} does not exist yet")
    if node.options.fail_at == "feed":
        def on_event(*args, **kwargs):
            raise ZeroDivisionError(f"{node.name}: broken on purpose in the feed callback")

        node.wamp_subscribe(f"observatory.{node.options.target}.feeds.temperatures", on_event)


@hookimpl
def list_fields(node, start, end):
    if node.options.fail_at == "fields":
        raise KeyError(f"{node.name}: broken on purpose in list_fields")
    return [Field("x", "main")]


@hookimpl
def read_range(node, fields, start, end):
    if node.options.fail_at == "read":
        raise ValueError(f"{node.name}: broken on purpose in read_range")
    return {"main": Timeline(t=[0.0, 1.0, 2.0], data={"x": [1.0, 2.0, 3.0]}, finalized_until=2.0)}
