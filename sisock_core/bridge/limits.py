"""Limits that keep the HTTP bridge serving when clients are careless or hostile.

:class:`GuardedSite` is a :class:`twisted.web.server.Site` with three guards:

* **Connections** are capped (``[http] max_connections``, lowered to fit the process's
  open-file limit). When the cap is reached, a new connection takes the place of the
  oldest one that is not being answered (an idle keep-alive socket or one still
  sending its request; see :meth:`GuardedSite._victim`); when there is none, the new
  connection is refused with a 503.
* **Request deadline**: a request's headers and body must arrive within
  ``[http] request_deadline`` seconds of its first byte (of the connection, for the
  first request); each connection gets a deadline between half and all of it, so
  that a flood's sockets do not all expire, and get replaced, at once. Twisted's idle timeout restarts at every byte, so a client
  trickling a byte every few seconds (slowloris) would otherwise hold its socket for
  ever.
* **Requests per client**: at most ``[http] max_client_requests`` requests of one
  client address are answered at once; more get a 429 naming the limit.

Each guard logs what it did at most once a minute, with counts (a flood must not
flood the log).
"""

from __future__ import annotations

import random
import resource as rlimit
import socket
from typing import Any, Callable

import attrs
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

#: File descriptors kept free for the bridge's own needs (router session, logs, files).
RESERVED_FDS = 64
#: Seconds a new connection is safe from being replaced by a newer one.
GRACE = 0.5
#: Seconds between two log lines of the same guard.
REPORT_INTERVAL = 60.0


@attrs.frozen
class BridgeLimits:
    """The guards' settings (from ``[http]``)."""

    max_connections: int = 512
    request_deadline: float = 10.0
    max_client_requests: int = 64


def connection_cap(wanted: int, nofile_soft: int | None = None) -> int:
    """``wanted`` lowered to what the open-file limit allows (keeping :data:`RESERVED_FDS`)."""
    if nofile_soft is None:
        nofile_soft, _ = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)
    if nofile_soft == rlimit.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, nofile_soft - RESERVED_FDS))


class _Report:
    """Counts an event; logs the count at most every :data:`REPORT_INTERVAL` seconds."""

    def __init__(self, log: Logger, clock: Callable[[], float], text: str) -> None:
        self.log, self.clock, self.text = log, clock, text
        self.count = 0
        self.unreported = 0
        self._last: float | None = None

    def __call__(self, **fields: Any) -> None:
        self.count += 1
        self.unreported += 1
        now = self.clock()
        if self._last is None or now - self._last >= REPORT_INTERVAL:
            self._last = now
            self.log.warn(self.text, count=self.unreported, **fields)
            self.unreported = 0


class GuardedChannel(HTTPChannel):
    """An HTTP connection with a deadline for each request's headers and body."""

    site: "GuardedSite"
    _deadline: Any = None
    #: whether any byte arrived on this connection
    received = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.opened = self.site.reactor.seconds()
        if self.site.admit(self):
            self._arm()

    def dataReceived(self, data: bytes) -> None:
        self.received = True
        if self._deadline is None and not self._handlingRequest:
            self._arm()  # the first byte of the next request on a kept-alive connection
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()

    def connectionLost(self, reason: Any) -> None:
        self._disarm()
        self.site.forget(self)
        super().connectionLost(reason)

    @property
    def answering(self) -> bool:
        """Whether a whole request arrived and its answer is not finished yet."""
        return bool(self._handlingRequest)

    def _arm(self) -> None:
        # spread over the last half of the allowed time: connections opened together (a
        # flood) must not all close, and be replaced, at the same instant
        delay = self.site.limits.request_deadline * random.uniform(0.5, 1.0)
        self._deadline = self.callLater(delay, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        self.site.report_slow(peer=_peer(self), deadline=self.site.limits.request_deadline)
        self.transport.abortConnection()


class GuardedRequest(Request):
    """A request counted against its client's share of concurrent answers."""

    def process(self) -> None:
        site: GuardedSite = self.channel.site
        host = _host(self)
        if not site.begin(host):
            self.setResponseCode(429)
            self.setHeader(b"Content-Type", b"application/json")
            self.setHeader(b"Retry-After", b"1")
            text = (f"too many requests from {host} at once: at most "
                    f"{site.limits.max_client_requests} ([http] max_client_requests)")
            self.write(_error_json(text, 429))
            self.finish()
            return
        self.notifyFinish().addBoth(lambda _: site.end(host))
        super().process()


class GuardedSite(Site):
    """A :class:`Site` applying :class:`BridgeLimits` (see the module's docstring)."""

    protocol = GuardedChannel
    requestFactory = GuardedRequest
    guard_log = Logger(namespace="sisock.http")

    def __init__(self, resource: Any, limits: BridgeLimits, *, reactor: Any = None,
                 nofile_soft: int | None = None) -> None:
        super().__init__(resource, reactor=reactor)
        self.limits = limits
        self.max_connections = connection_cap(limits.max_connections, nofile_soft)
        self.open: dict[GuardedChannel, None] = {}  # insertion order: oldest first
        self.in_flight: dict[str, int] = {}
        clock = self.reactor.seconds
        self.report_slow = _Report(self.guard_log, clock, "closed {count} connection(s) that did not send "
                                   "a whole request within {deadline} s ([http] request_deadline); "
                                   "last from {peer}")
        self.report_evicted = _Report(self.guard_log, clock, "{count} connection(s) closed to make room: "
                                      "{cap} open at most ([http] max_connections, open-file limit)")
        self.report_refused = _Report(self.guard_log, clock, "refused {count} connection(s): all {cap} "
                                      "are being answered ([http] max_connections)")
        self.report_busy = _Report(self.guard_log, clock, "answered {count} request(s) with 429: "
                                   "{host} had {cap} in progress ([http] max_client_requests)")

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        channel.site = self
        return channel

    # -- connections ------------------------------------------------------------------

    def admit(self, channel: GuardedChannel) -> bool:
        """Register a new connection, making room or refusing it when at the cap."""
        if len(self.open) >= self.max_connections:
            victim = self._victim()
            if victim is None:
                self.report_refused(cap=self.max_connections)
                body = _error_json("too many connections are being answered; try again", 503)
                channel.transport.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                channel.transport.loseConnection()
                return False
            self.open.pop(victim, None)
            self.report_evicted(cap=self.max_connections)
            victim.transport.abortConnection()
        self.open[channel] = None
        return True

    def _victim(self) -> GuardedChannel | None:
        """The connection to close to make room, or None.

        Never one being answered, nor one whose bytes wait in the kernel (a client whose
        request is on its way while the reactor is busy with a burst of connections).
        Of the others: the oldest that has had :data:`GRACE` seconds to send its request;
        else the oldest younger one that sent part of a request; else the oldest younger
        one that sent nothing."""
        settled = self.reactor.seconds() - GRACE
        partial = silent = None
        for channel in self.open:  # oldest first
            if channel.answering or _has_unread_bytes(channel):
                continue  # being answered, or its bytes are waiting for a busy reactor
            if channel.opened <= settled:
                return channel
            if partial is None and channel.received:
                partial = channel
            elif silent is None and not channel.received:
                silent = channel
        return partial or silent

    def forget(self, channel: GuardedChannel) -> None:
        self.open.pop(channel, None)

    # -- requests per client ------------------------------------------------------------

    def begin(self, host: str) -> bool:
        n = self.in_flight.get(host, 0)
        if n >= self.limits.max_client_requests:
            self.report_busy(host=host, cap=self.limits.max_client_requests)
            return False
        self.in_flight[host] = n + 1
        return True

    def end(self, host: str) -> None:
        n = self.in_flight.get(host, 0) - 1
        if n > 0:
            self.in_flight[host] = n
        else:
            self.in_flight.pop(host, None)


def _has_unread_bytes(channel: HTTPChannel) -> bool:
    """Whether bytes wait in the kernel for this connection (peeked, not read)."""
    sock = getattr(channel.transport, "socket", None)
    if sock is None:
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False
    except OSError:
        return False


def _peer(channel: HTTPChannel) -> str:
    peer = channel.transport.getPeer()
    return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"


def _host(request: Request) -> str:
    return str(getattr(request.getClientAddress(), "host", "unknown"))


def _error_json(text: str, status: int) -> bytes:
    from sisock_core.bridge.grafana import error_body

    return error_body(text, status)
