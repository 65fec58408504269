"""Fake OCS agents in a process of their own: real WAMP publishers on the OCS port.

``python -m tests.reliability.ocs_agents --port P --agents 50 --channels 16 --rate 1``
runs 50 agents ``agent00``.. (instance ids ``<prefix>NN``), each an anonymous session on
the router's plain OCS WebSocket publishing one message per ``1/rate`` seconds on
``observatory.<id>.feeds.temperatures`` in the current OCS format (one block per
channel, fields ``Channel_NN_T``), as a Lakeshore agent does. Sessions reconnect when
the router goes away. It prints ``READY <n>`` once every agent has joined, and on
SIGINT/SIGTERM (or after ``--duration``) a JSON line of counts since then:
``{"published": ..., "skipped": ..., "joins": ...}`` (skipped: ticks without a session).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time


def message(t: float, channels: int, agent: int) -> dict:
    return {f"Channel {c:02d}": {"block_name": f"Channel {c:02d}", "timestamps": [t],
                                 "data": {f"Channel_{c:02d}_T": [agent + 0.01 * c + random.random() * 1e-3]}}
            for c in range(1, channels + 1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--agents", type=int, default=1)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--rate", type=float, default=1.0, help="messages per second per agent")
    p.add_argument("--prefix", default="agent")
    p.add_argument("--realm", default="test_realm")
    p.add_argument("--duration", type=float, default=3600.0)
    args = p.parse_args(argv)

    from autobahn.twisted.component import Component
    from twisted.internet import reactor, task

    counts = {"published": 0, "skipped": 0, "joins": 0}
    sessions: dict[int, object] = {}
    joined_once: set[int] = set()

    def make(i: int) -> Component:
        comp = Component(transports=[{
            "type": "websocket", "url": f"ws://127.0.0.1:{args.port}/ws", "serializers": ["msgpack"],
            "max_retries": -1, "initial_retry_delay": 0.5, "max_retry_delay": 2, "retry_delay_growth": 1.5,
        }], realm=args.realm)

        def on_join(session, details):
            sessions[i] = session
            counts["joins"] += 1
            joined_once.add(i)
            if len(joined_once) == args.agents and counts["joins"] == args.agents:
                counts["published"] = counts["skipped"] = 0  # count from here on
                print(f"READY {args.agents}", flush=True)

        def on_leave(session, details):
            sessions.pop(i, None)

        comp.on("join", on_join)
        comp.on("leave", on_leave)
        return comp

    components = [make(i) for i in range(args.agents)]
    for comp in components:
        comp.start(reactor)

    def tick(i: int) -> None:
        session = sessions.get(i)
        if session is None or not session.is_attached():
            counts["skipped"] += 1
            return
        address = f"observatory.{args.prefix}{i:02d}"
        feed_data = {"agent_address": address, "feed_name": "temperatures",
                     "address": f"{address}.feeds.temperatures", "record": True,
                     "agg_params": {"frame_length": 60}, "session_id": "1700000000.0",
                     "agent_class": "Lakeshore372Agent"}
        session.publish(f"{address}.feeds.temperatures", (message(time.time(), args.channels, i), feed_data))
        counts["published"] += 1

    loops = []
    for i in range(args.agents):
        loop = task.LoopingCall(tick, i)
        loops.append(loop)
        # spread the agents over the period
        reactor.callLater(random.random() / args.rate, loop.start, 1.0 / args.rate, now=True)

    def finish(*_: object) -> None:
        print(json.dumps(counts), flush=True)
        if reactor.running:
            reactor.stop()

    signal.signal(signal.SIGTERM, lambda *a: reactor.callFromThread(finish))
    signal.signal(signal.SIGINT, lambda *a: reactor.callFromThread(finish))
    reactor.callLater(args.duration, finish)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    sys.exit(main())
