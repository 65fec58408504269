"""The client process of :class:`~sisock_core.testing.running_site.SiteClient`:
``python -m sisock_core.testing.client SITE_FILE [msgpack|json]`` holds one consumer session
and answers JSON-line requests from stdin on stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _client_main(site_file: str, serializer: str = "msgpack") -> None:
    """Hold one consumer session; answer JSON-line requests from stdin on stdout."""
    from twisted.internet import defer, stdio, task
    from twisted.logger import Logger
    from twisted.protocols.basic import LineReceiver

    from sisock_core.config import load_config
    from sisock_core.logs import announce_ready, setup_logging
    from sisock_core.wamp import make_component

    cfg = load_config(site_file)
    setup_logging(cfg.log_level)
    log = Logger(namespace="sisock.testing.client")

    async def main(reactor: Any) -> None:
        state: dict[str, Any] = {"session": None}
        joined: list[defer.Deferred] = []
        done: defer.Deferred = defer.Deferred()
        comp = make_component(cfg, consumer=True, serializers=[serializer])

        def on_join(session: Any, details: Any) -> None:
            state["session"] = session
            if not state.get("announced"):
                state["announced"] = True
                announce_ready("client")
            while joined:
                joined.pop().callback(session)

        def on_leave(session: Any, details: Any) -> None:
            state["session"] = None

        comp.on("join", on_join)
        comp.on("leave", on_leave)

        class Requests(LineReceiver):
            delimiter = b"\n"
            MAX_LENGTH = 1 << 26

            def lineReceived(self, line: bytes) -> None:
                defer.Deferred.fromCoroutine(self.answer(json.loads(line)))

            async def answer(self, req: dict) -> None:
                from autobahn.wamp.exception import ApplicationError

                out: dict[str, Any] = {"id": req["id"]}
                try:
                    session = state["session"]
                    if session is None:
                        wait: defer.Deferred = defer.Deferred()
                        joined.append(wait)
                        session = await wait.addTimeout(req.get("timeout", 60), reactor)
                    d = defer.ensureDeferred(session.call(req["uri"], *req["args"], **req["kwargs"]))
                    out["result"] = await d.addTimeout(req.get("timeout", 60), reactor)
                except ApplicationError as exc:
                    out.update(error=exc.error, args=list(exc.args), kwargs=exc.kwargs or {})
                except Exception as exc:
                    log.error("call {uri} failed: {error}", uri=req.get("uri"), error=repr(exc))
                    out.update(error="sisock.testing.client_error", args=[f"{type(exc).__name__}: {exc}"])
                self.transport.write(json.dumps(out).encode() + b"\n")

            def connectionLost(self, reason: Any = None) -> None:
                if not done.called:
                    done.callback(None)

        stdio.StandardIO(Requests(), reactor=reactor)
        comp.start(reactor)
        await done
        await comp.stop()

    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))


if __name__ == "__main__":
    if len(sys.argv) >= 2:
        _client_main(*sys.argv[1:3])
    else:
        sys.stderr.write("usage: python -m sisock_core.testing.client SITE_FILE [msgpack|json]\n")
        raise SystemExit(2)
