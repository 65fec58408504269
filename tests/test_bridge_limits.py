"""The bridge's guards (:mod:`sisock_core.bridge.limits`) over real loopback sockets.

A :class:`GuardedSite` serves a small resource in this process; clients are plain
sockets in threads, as a slow or hostile client would be.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from sisock_core.bridge.limits import BridgeLimits, GuardedSite, connection_cap

pytestmark = pytest.mark.timeout(60)


class Held(Resource):
    """``/fast`` answers at once; ``/held`` answers when the test releases it."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list = []
        self.arrived: defer.Deferred | None = None

    def render_GET(self, request):
        if request.path == b"/held":
            self.held.append(request)
            if self.arrived is not None and len(self.held) >= self.want:
                d, self.arrived = self.arrived, None
                d.callback(None)
            return NOT_DONE_YET
        return b"ok"

    def wait_for(self, n: int) -> defer.Deferred:
        self.want = n
        if len(self.held) >= n:
            return defer.succeed(None)
        self.arrived = defer.Deferred()
        return self.arrived

    def release(self) -> None:
        held, self.held = self.held, []
        for r in held:
            if not r.finished and not r._disconnected:
                r.write(b"released")
                r.finish()


@pytest.fixture
def served():
    root = Held()
    started = []

    def start(**limits):
        site = GuardedSite(root, BridgeLimits(**limits), reactor=reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        started.append(port)
        return site, port.getHost().port

    yield root, start
    root.release()
    for p in started:
        p.stopListening()


def get(port: int, path: str = "/fast", timeout: float = 10.0) -> tuple[int, bytes]:
    """A plain HTTP/1.0 GET; (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def closed_within(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` (reading until EOF or reset)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        return False
    except ConnectionResetError:
        pass
    return True


@pytest_twisted.ensureDeferred
async def test_slowloris_is_cut_at_the_request_deadline(served):
    root, start = served
    site, port = start(request_deadline=0.5)

    def trickle() -> tuple[bool, float]:
        s = socket.create_connection(("127.0.0.1", port))
        t0 = time.monotonic()
        s.sendall(b"GET /fast HTTP/1.1\r\n")
        s.settimeout(0.1)
        # one header byte every 0.1 s: each resets an idle timer, none finishes the request
        try:
            for _ in range(100):
                s.sendall(b"X")
                try:
                    if s.recv(1) == b"":
                        return True, time.monotonic() - t0
                except socket.timeout:
                    continue
        except (BrokenPipeError, ConnectionResetError):
            return True, time.monotonic() - t0
        finally:
            s.close()
        return False, time.monotonic() - t0

    was_closed, after = await threads.deferToThread(trickle)
    assert was_closed and after < 5.0
    assert site.report_slow.count == 1
    # a normal client is served as before
    assert await threads.deferToThread(get, port) == (200, b"ok")


@pytest_twisted.ensureDeferred
async def test_idle_connections_make_room_for_a_normal_client(served):
    root, start = served
    site, port = start(max_connections=3, request_deadline=30.0)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        # at the cap, with 3 idle sockets holding it (the kernel hands connections over in the
        # order they were made): the normal client still gets its answer
        assert await threads.deferToThread(get, port) == (200, b"ok")
        # the oldest idle socket made room
        assert await threads.deferToThread(closed_within, idle[0], 5.0)
        assert site.report_evicted.count == 1
    finally:
        for s in idle:
            s.close()


@pytest.mark.parametrize("limits,status,message", [
    ({"max_connections": 2, "request_deadline": 30.0}, 503, "too many connections"),
    ({"max_client_requests": 2}, 429, "[http] max_client_requests"),
])
@pytest_twisted.ensureDeferred
async def test_a_third_request_beyond_a_cap_is_refused(served, limits, status, message):
    """Two answers held open fill either cap: a third client is refused at once, saying
    which limit; the held ones are answered, and the site is whole again afterwards."""
    root, start = served
    site, port = start(**limits)
    pending = [threads.deferToThread(get, port, "/held") for _ in range(2)]
    await root.wait_for(2)
    refused, body = await threads.deferToThread(get, port)
    assert refused == status
    assert message in json.loads(body)["error"]["message"]
    root.release()
    assert [r[0] for r in await defer.gatherResults(pending)] == [200, 200]
    assert await threads.deferToThread(get, port) == (200, b"ok")
    assert site.in_flight == {}


def test_connection_cap_follows_the_open_file_limit():
    assert connection_cap(512, nofile_soft=1024) == 512
    assert connection_cap(2048, nofile_soft=1024) == 1024 - 64
    assert connection_cap(512, nofile_soft=10) == 1


@pytest.mark.parametrize("soft,hard,after", [(256, 4096, 4096), (1024, 1024, 1024)])
def test_open_file_limit_is_raised_to_the_hard_limit(soft, hard, after):
    code = ("import resource; from sisock_core.oslimits import raise_open_files_limit; "
            "print(raise_open_files_limit()); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")

    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run([sys.executable, "-c", code], preexec_fn=limit, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[0] == str((soft, after))
    assert out[1] == str(after)

