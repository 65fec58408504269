"""A data node that never answers ``get_data`` in time (a child process for fault tests).

``python -m tests.reliability.slow_node SITE_FILE [NAME]`` joins the site's router as the
server user, registers ``<NAME>.get_fields`` (one field ``x``) and a ``<NAME>.get_data``
that answers after 10 minutes (printing ``CALLED get_data`` when called), prints ``READY``
and runs until killed. It does not
reconnect.
"""

from __future__ import annotations

import sys


def main() -> None:
    from twisted.internet import reactor, task

    from sisock_core.config import load_config
    from sisock_core.wamp import make_component, node_uri

    cfg = load_config(sys.argv[1])
    name = sys.argv[2] if len(sys.argv) > 2 else "slow_node"
    comp = make_component(cfg, max_retries=0)

    def fields(start=1, end=0):
        return [{"x": {"description": None, "timeline": "t", "type": "number", "units": None}},
                {"t": {"interval": None, "field": ["x"]}}]

    def data(*args, **kwargs):
        print("CALLED get_data", flush=True)  # (the test waits for this, not for time to pass)
        return task.deferLater(reactor, 600, lambda: {"data": {"x": []}, "timeline": {}})

    async def join(session, details):
        await session.register(fields, node_uri(name, "get_fields"))
        await session.register(data, node_uri(name, "get_data"))
        print("READY", flush=True)

    comp.on("join", join)
    comp.start(reactor)
    reactor.run()


if __name__ == "__main__":
    main()
