"""The bridge's browser side and plain data API: the quick-look page, its static files,
``/api/fields``, ``/api/data`` and ``/api/live`` (request handling; the parsing and
answers are in :mod:`sisock_core.bridge.api`, the live streams in
:mod:`sisock_core.bridge.live`).

:class:`WebRoutes` is consulted by :class:`~sisock_core.bridge.app.GrafanaAPI` after
its authentication check, so these routes share the bridge's basic auth and CORS
rules. ``GET /`` is the page only for requests that accept ``text/html`` (browsers);
Grafana and scripts keep the JSON health answer.

The plotting library (uPlot) is not part of this repository: ``scripts/setup.sh``
installs it from the npm registry (``npm ci``) into ``node_modules/``, found by
:func:`find_assets` (or ``SISOCK_WEB_ASSETS``, a folder holding ``uPlot.iife.min.js``
and ``uPlot.min.css``). Without it the page says what to run.
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from sisock_core.bridge import api
from sisock_core.bridge.grafana import BadRequest, encode, error_body
from sisock_core.bridge.live import MAX_STREAMS, LiveStream, LiveTopics

#: The page and its scripts (in the Python package).
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Files the page needs from the uPlot npm package (``node_modules/uplot/dist``).
UPLOT_FILES = ("uPlot.iife.min.js", "uPlot.min.css")
#: Content types of the files served under /static/.
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".html": "text/html; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
#: Environment variable naming a folder with :data:`UPLOT_FILES`.
ENV_ASSETS = "SISOCK_WEB_ASSETS"

MISSING_ASSETS = (
    "the plotting library uPlot is not installed: run scripts/setup.sh (it runs `npm ci` in "
    "the sisock checkout), or set {env} to a folder holding {files}"
)


def find_assets(env: dict | None = None) -> Path | None:
    """The folder holding uPlot's files: ``$SISOCK_WEB_ASSETS``, else ``node_modules/uplot/dist``
    in the checkout or the current directory. None when absent."""
    env = os.environ if env is None else env
    candidates = []
    if env.get(ENV_ASSETS):
        candidates.append(Path(env[ENV_ASSETS]).expanduser())
    root = Path(__file__).resolve().parents[2]
    candidates += [root / "node_modules" / "uplot" / "dist",
                   Path.cwd() / "node_modules" / "uplot" / "dist"]
    for folder in candidates:
        if all((folder / f).is_file() for f in UPLOT_FILES):
            return folder
    return None


def missing_assets_message() -> str:
    return MISSING_ASSETS.format(env=ENV_ASSETS, files=" and ".join(UPLOT_FILES))


def wants_html(request: Any) -> bool:
    """Whether the client prefers a page (a browser's ``Accept: text/html,...``)."""
    accept = (request.getHeader(b"accept") or b"").decode("latin-1", "replace").lower()
    return "text/html" in accept


class WebRoutes:
    """GET routes of the page and the data API around a :class:`BridgeService`."""

    log = Logger()

    def __init__(self, service: Any, cfg: Any, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.service = service
        self.cfg = cfg
        self.clock = clock
        self.limit = cfg.http.max_targets
        self.topics = LiveTopics(service, clock)
        self.streams: set[LiveStream] = set()
        self.assets = find_assets()
        if self.assets is None:
            self.log.warn("quick-look page: {message}", message=missing_assets_message())

    # -- the page --------------------------------------------------------------------

    def page(self, request: Any) -> bytes:
        html = (STATIC_DIR / "index.html").read_bytes()
        if self.assets is None:
            self.assets = find_assets()  # installed since the bridge started?
        if self.assets is None:
            note = missing_assets_message().encode()
            html = html.replace(b"<!--MISSING-ASSETS-->",
                                b'<p id="missing-assets" class="error">' + note + b"</p>")
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        return html

    def static(self, name: str, request: Any) -> bytes:
        if name.startswith("uplot/"):
            folder, name = self.assets, name[len("uplot/"):]
            if folder is None:
                folder = self.assets = find_assets()
            if folder is None:
                request.setResponseCode(404)
                return error_body(missing_assets_message(), 404)
        else:
            folder = STATIC_DIR
        path = (folder / name).resolve()
        if "/" in name or not path.is_file() or path.parent != folder.resolve():
            request.setResponseCode(404)
            return error_body(f"no such file: /static/{name[:80]}", 404)
        kind = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        request.setHeader(b"Content-Type", kind.encode())
        request.setHeader(b"Cache-Control", b"no-cache")
        return path.read_bytes()

    # -- the data API ----------------------------------------------------------------

    def _params(self, request: Any) -> dict[str, list[str]]:
        return api.params_from_request_args(request.args or {})

    async def fields(self, request: Any) -> bytes:
        params = self._params(request)
        node = api.one_param(params, "node")
        try:  # a fresh list from the hub (cheap); the cached one if the hub does not answer
            await self.service.load_listing()
        except Exception as exc:
            self.log.info("/api/fields: the hub did not list the nodes ({error}); using the cache",
                          error=f"{type(exc).__name__}: {exc}")
        await self.service.ensure_loaded()
        if node is not None and node not in self.service.catalog.nodes:
            await self.service.refresh_on_miss(node)
        return encode(api.fields_answer(self.service.catalog, node))

    async def data(self, request: Any) -> bytes:
        req = api.parse_data_request(self._params(request), time.time())
        req = attrs.evolve(req, query=req.query.capped(self.cfg.http.max_points))
        if len(req.query.targets) > self.limit:
            raise BadRequest(f"target: at most {self.limit} per request (http.max_targets), "
                             f"got {len(req.query.targets)}")
        t0 = time.perf_counter()
        series = await self.service.query(req.query)
        self.log.debug("/api/data: {n} targets, {points} points in {ms:.1f} ms", n=len(series),
                       points=sum(s.t.size for s in series), ms=(time.perf_counter() - t0) * 1e3)
        if req.format == "csv":
            request.setHeader(b"Content-Type", b"text/csv; charset=utf-8")
            request.setHeader(b"Content-Disposition", b'inline; filename="sisock.csv"')
            errors = api.csv_errors(series)
            if errors:
                request.setHeader(b"Sisock-Errors", errors.encode("utf-8", "replace"))
            return api.data_csv(series)
        return encode(api.data_answer(req.query, series))

    async def live(self, request: Any) -> bytes:
        params = self._params(request)
        now = time.time()
        targets = api.parse_targets(params)
        if len(targets) > self.limit:
            raise BadRequest(f"target: at most {self.limit} per request (http.max_targets)")
        since = api.parse_since(params, now)
        points = api.parse_points(params)
        if len(self.streams) >= MAX_STREAMS:
            request.setResponseCode(503)
            return error_body(f"too many live streams open (at most {MAX_STREAMS})", 503)
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        if request.method == b"HEAD":
            return b""
        _flush_each_write(request)
        stream = LiveStream(self.topics, self.service, request.write, targets, since, points)
        self.streams.add(stream)

        def cancel(_: defer.Deferred) -> None:
            stream.stop()

        closed: defer.Deferred = defer.Deferred(canceller=cancel)
        request.write(b"retry: 3000\n: sisock live stream\n\n")
        stream.start()
        self.log.info("live stream opened for {targets} (since {since})",
                      targets=[t.text for t in targets][:10], since=api.iso_ms(since))
        try:
            await closed  # until the browser goes away (Klein cancels the request)
        finally:
            self.streams.discard(stream)
            stream.stop()
            self.log.info("live stream closed")
        return b""


def _flush_each_write(request: Any) -> None:
    """With ``http.gzip``, make each event leave at once (gzip buffers by default)."""
    encoder = getattr(request, "_encoder", None)
    compressor = getattr(encoder, "_zlibCompressor", None)
    if compressor is not None:
        encoder.encode = lambda data: compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
