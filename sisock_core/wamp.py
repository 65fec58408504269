"""Connecting our components to the router: TLS, WAMP-CRA, msgpack, reconnects."""

from __future__ import annotations

from typing import Any, Sequence

from autobahn.twisted.component import Component
from autobahn.wamp.types import ComponentConfig

from sisock_core.config import SiteConfig

BASE_URI = "org.simonsobservatory"

#: WAMP-CRA identity of consumers (the original's read-only user).
CONSUMER_USER = "simonsobs"


def uri(suffix: str) -> str:
    """``org.simonsobservatory.<suffix>``, as the original's ``sisock.base.uri``."""
    return f"{BASE_URI}.{suffix}"


HUB_ADD = uri("data_node.add")
HUB_SUBTRACT = uri("data_node.subtract")
HUB_LIST = uri("consumer.get_data_node")
HUB_ADDED = uri("consumer.data_node_added")
HUB_SUBTRACTED = uri("consumer.data_node_subtracted")
#: Our extension: published by the hub when it (re)starts so nodes re-add themselves.
HUB_STARTED = uri("hub.started")


def node_uri(name: str, method: str) -> str:
    """``org.simonsobservatory.consumer.<name>.<method>``."""
    return uri(f"consumer.{name}.{method}")


def rejects_max_points(exc: BaseException) -> bool:
    """Whether a node refused the ``max_points`` keyword of ``get_data`` (a sisock 0.2
    node: autobahn answers with its ``TypeError`` as a runtime error)."""
    from autobahn.wamp.exception import ApplicationError

    if not isinstance(exc, ApplicationError):
        return False
    text = " ".join(str(a) for a in exc.args)
    return exc.error in (ApplicationError.INVALID_ARGUMENT, "wamp.error.runtime_error") \
        and "max_points" in text


def quiet_session_factory() -> Any:
    """autobahn's Twisted session class minus its log line for every ``ApplicationError``
    a procedure raises on purpose (bad arguments from a caller, a failure the component
    logs itself): otherwise any caller could fill our logs. Other exceptions (bugs) are
    still logged with their traceback."""
    from autobahn.twisted.wamp import Session
    from autobahn.wamp.exception import ApplicationError

    class QuietSession(Session):
        def onUserError(self, fail: Any, msg: str) -> None:
            if isinstance(getattr(fail, "value", None), ApplicationError):
                return
            super().onUserError(fail, msg)

    return QuietSession


def router_url(cfg: SiteConfig) -> str:
    """``wss://host:tls_port/ws``: where components dial the router (``router.path``, ``/ws``
    by default, is where the original sisock's crossbar served WAMP; ``/`` was a web page)."""
    return f"wss://{cfg.router.host}:{cfg.router.tls_port}{cfg.router.path}"


def make_component(
    cfg: SiteConfig,
    *,
    consumer: bool = False,
    serializers: Sequence[str] = ("msgpack",),
    session_factory: Any = None,
    max_retries: int = -1,
    create_secrets: bool = False,
) -> Component:
    """An autobahn Component connected to the site's router over TLS with WAMP-CRA.

    ``consumer=True`` authenticates as the read-only ``simonsobs`` user; otherwise as
    the server user (``router.wamp_user``). The component reconnects forever by
    default (``max_retries=-1``) with autobahn's exponential backoff.
    """
    from sisock_core.router import load_secrets, tls_paths

    secrets = load_secrets(cfg, create=create_secrets)
    _cert, _key, ca = tls_paths(cfg)
    authid = CONSUMER_USER if consumer else cfg.router.wamp_user
    secret = secrets.consumer if consumer else secrets.server
    transport = {
        "type": "websocket",
        "url": router_url(cfg),
        "endpoint": {
            "type": "tcp",
            "host": cfg.router.host,
            "port": cfg.router.tls_port,
            "timeout": 10,
            "tls": {"hostname": cfg.router.host, "trust_root": str(ca)},
        },
        "serializers": list(serializers),
        "options": {"openHandshakeTimeout": 10, "autoPingInterval": 10, "autoPingTimeout": 20},
        "max_retries": max_retries,
        "initial_retry_delay": 0.5,
        "max_retry_delay": 10,
        "retry_delay_growth": 1.5,
    }
    kwargs: dict[str, Any] = dict(
        transports=[transport],
        realm=cfg.router.realm,
        authentication={"wampcra": {"authid": authid, "secret": secret}},
    )
    if session_factory is not None:
        kwargs["session_factory"] = session_factory
    return Component(**kwargs)


__all__ = ["ComponentConfig", "make_component", "uri", "node_uri", "router_url"]
