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


#: WAMP errors of a refused join: wrong secret or user, realm or role the router lacks
JOIN_REFUSALS = frozenset({
    "wamp.error.not_authorized", "wamp.error.authentication_failed",
    "wamp.error.no_auth_method", "wamp.error.no_such_realm", "wamp.error.no_such_role",
})
#: why a component of this process was refused before it ever joined (see join_refusal)
_refusals: list[str] = []


def join_refusal() -> str | None:
    """Why a component of this process gave up before it ever joined: the router refused
    its credentials or realm, or its certificate is not one ``ca_cert`` trusts. A
    restart would not fix that, unlike a refusal after having joined (secrets changed
    on the router: the component keeps trying)."""
    return _refusals[-1] if _refusals else None


def _refusal_text(cfg: SiteConfig, authid: str, exc: BaseException) -> str | None:
    from autobahn.wamp.exception import ApplicationError

    from sisock_core.tls import tls_failure_reason

    where = f"the router at {cfg.router.host}:{cfg.router.tls_port}"
    if isinstance(exc, ApplicationError) and exc.error in JOIN_REFUSALS:
        detail = " ".join(str(a) for a in exc.args)
        return (f"{where} refused user {authid!r} on realm {cfg.router.realm!r} ({exc.error}"
                f"{': ' + detail if detail else ''}); check its secret "
                "(WAMP_SECRET / WAMP_CONSUMER_SECRET or router.secrets_file) and router.realm")
    reason = tls_failure_reason(exc)
    if reason is not None:
        return (f"{where} failed the TLS handshake ({reason}): its certificate is not the one "
                "router.ca_cert names, or it is not a sisock router")
    return None


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
    default (``max_retries=-1``) with autobahn's exponential backoff, except when the
    router refuses it before it ever joined (:func:`join_refusal` says why).
    """
    from sisock_core.credentials import load_secrets
    from sisock_core.tls import tls_paths

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
    joined: list[bool] = []

    def refused_before_joining(exc: BaseException) -> bool:
        reason = None if joined else _refusal_text(cfg, authid, exc)
        if reason:
            _refusals.append(reason)
        return reason is not None

    component = Component(is_fatal=refused_before_joining, **kwargs)
    component.on("join", lambda *args: joined.append(True))
    stop = component.stop

    def stop_unless_ended() -> Any:
        # autobahn's stop() raises AttributeError once the component has ended (given up
        # after a refusal): its done future is None then. Nothing is left to stop.
        if component._done_f is None:
            from twisted.internet import defer

            return defer.succeed(None)
        return stop()

    component.stop = stop_unless_ended
    return component


__all__ = ["ComponentConfig", "make_component", "uri", "node_uri", "router_url"]
