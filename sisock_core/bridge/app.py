"""The bridge's HTTP side: a Klein app serving Grafana's two JSON data-source plugins,
the quick-look page and a plain data API.

Routes (answers ``application/json`` but for the page, CSV and SSE; errors are
``{"error": {"code", "message"}, "code", "message"}``, see
:func:`~sisock_core.bridge.grafana.error_object`):

========================== ==================================================
``GET /``                  health: 200 when joined to the router and the hub
                           answers, else 503 saying what is missing
``POST /search``           SimpleJSON metric list (``{"target": "typed text"}``)
``POST /query``            both plugins: timeseries, tables, data frames
``POST /annotations``      SimpleJSON annotations (query: a ``node::field``)
``POST /tag-keys``         ad hoc filter keys (``node``, ``field``)
``POST /tag-values``       their values
``POST /metrics``          JSON data source metric list (with a format payload)
``POST /metric-payload-options``  options of that payload
``POST /variable``         JSON data source template variables
``GET /openapi.json``      an OpenAPI 3.1 description of these routes
                           (:mod:`sisock_core.bridge.openapi`)
``GET /`` (Accept: html)   the quick-look page; ``GET /static/*`` its files
``GET /api/fields``        plain data API (:mod:`~sisock_core.bridge.web`):
``GET /api/data``          fields, data as JSON or CSV, live samples (SSE)
``GET /api/live``
``OPTIONS *``              CORS preflight, answered without auth
========================== ==================================================

Each route is a Klein route with its methods: an unknown path answers a JSON 404, a known
path asked with another method a JSON 405 with ``Allow``. CORS, the preflight and basic
auth come first, for every path (:class:`_Front`).

:func:`run_bridge` listens and joins the router; ``sisock http`` runs it alone and
``sisock up`` as a supervised child.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from klein import Klein
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.web.server import GzipEncoderFactory
from twisted.web.resource import EncodingResourceWrapper, Resource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from sisock_core.bridge import grafana
from sisock_core.bridge.auth import Credentials, cors_headers
from sisock_core.bridge.grafana import BadRequest, QueryRequest, encode, error_body
from sisock_core.bridge.limits import BridgeLimits, GuardedSite
from sisock_core.bridge.service import BridgeService
from sisock_core.bridge.web import WebRoutes, wants_html
from sisock_core.config import SiteConfig
from sisock_core.logs import access_log_line

#: Largest request body accepted (bytes); Grafana's are a few kB.
MAX_BODY = 1 << 20
#: Samples turned into annotations at most (the node reduces to this many).
ANNOTATION_LIMIT = 1000

JSON = b"application/json"


def _json_post(app: Klein, path: str) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """Route POST ``path`` of ``app`` to ``handler(api, body)``: the body read (at most
    :data:`MAX_BODY` bytes) and decoded, the answer encoded as JSON."""

    def register(handler: Callable[..., Awaitable[Any]]) -> Any:
        async def route(api: Any, request: Any) -> bytes:
            raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
            if len(raw) > MAX_BODY:
                request.setResponseCode(413)
                return error_body(f"request body larger than {MAX_BODY} bytes", 413)
            return encode(await handler(api, grafana.decode_body(raw)))

        app.route(path, methods=["POST"], endpoint=handler.__name__)(route)
        return handler

    return register


class _Front(Resource):
    """What every request meets before the routes: JSON and no-store headers, CORS, the
    preflight (``OPTIONS``, answered without auth) and basic auth; empty path segments are
    dropped (a Grafana data source URL ending in ``/`` must not matter)."""

    isLeaf = True

    def __init__(self, api: "GrafanaAPI", routes: Any) -> None:
        super().__init__()
        self.api = api
        self.routes = routes

    def render(self, request: Any) -> Any:
        request.setHeader(b"Content-Type", JSON)
        request.setHeader(b"Cache-Control", b"no-store")
        origin = request.getHeader(b"origin")
        preflight = request.method.upper() == b"OPTIONS"
        for k, v in cors_headers(origin.decode("latin-1", "replace") if origin else None,
                                 self.api.cfg.http.cors_origins, preflight=preflight).items():
            request.setHeader(k.encode(), v.encode())
        if preflight:
            request.setResponseCode(204)
            request.setHeader(b"Allow", b"GET, POST, OPTIONS")
            return b""
        credentials = self.api.credentials
        if credentials is not None and not credentials.check(request.getHeader(b"authorization")):
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", b'Basic realm="sisock", charset="UTF-8"')
            return error_body("authentication required", 401)
        request.postpath = [part for part in request.postpath if part] or [b""]
        return self.routes.render(request)


def _path(request: Any) -> str:
    return "/" + "/".join(p for p in request.path.decode("latin-1", "replace").split("/") if p)


class GrafanaAPI:
    """Klein routes around a :class:`BridgeService` (the non-global-state Klein pattern)."""

    app = Klein()
    log = Logger()

    def __init__(self, service: BridgeService, cfg: SiteConfig,
                 credentials: Credentials | None = None) -> None:
        self.service = service
        self.cfg = cfg
        self.credentials = credentials
        self.limit = cfg.http.max_targets
        self._openapi: bytes | None = None
        self.web = WebRoutes(service, cfg)  # the quick-look page and /api/* (bridge/web.py)

    def resource(self) -> Any:
        """The Twisted resource to serve (with ``http.gzip``: gzip for clients accepting it;
        level 1 shrinks JSON of numbers ~2.5x, at ~10 ms per MB on a slow core)."""
        front = _Front(self, self.app.resource())
        if not self.cfg.http.gzip:
            return front
        gzip = GzipEncoderFactory()
        gzip.compressLevel = 1
        return EncodingResourceWrapper(front, [gzip])

    def routes(self) -> set[tuple[str, str]]:
        """``(method, path)`` of every route with a fixed path (``HEAD`` goes with ``GET``)."""
        return {(method, rule.rule) for rule in self.app.url_map.iter_rules()
                if "<" not in rule.rule for method in rule.methods or () if method != "HEAD"}

    # -- answers that are not the endpoint's ----------------------------------------

    @app.handle_errors(NotFound)
    def not_found(self, request: Any, failure: Any) -> bytes:
        request.setResponseCode(404)
        return error_body(f"no such endpoint: {_path(request)[:80]}", 404)

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: Any, failure: Any) -> bytes:
        allowed = [m for m in ("GET", "POST") if m in (failure.value.valid_methods or ())]
        request.setResponseCode(405)
        request.setHeader(b"Allow", ", ".join([*allowed, "OPTIONS"]).encode())
        return error_body(f"method {request.method.decode('latin-1', 'replace')[:10]} not allowed here", 405)

    @app.handle_errors(BadRequest)
    def bad_request(self, request: Any, failure: Any) -> bytes:
        request.setResponseCode(400)
        return error_body(str(failure.value))

    @app.handle_errors(Exception)
    def internal_error(self, request: Any, failure: Any) -> Any:
        method, path = request.method.decode("latin-1", "replace"), _path(request)
        if failure.check(defer.CancelledError):
            self.log.debug("{method} {path}: the client went away", method=method, path=path)
            return failure
        # a bug: say so, keep serving
        self.log.failure("error answering {method} {path}", failure, method=method, path=path)
        request.setResponseCode(500)
        exc = failure.value
        return error_body(f"internal error: {type(exc).__name__}: {exc}", 500)

    # -- GET routes -------------------------------------------------------------------

    @app.route("/", methods=["GET"])
    async def root(self, request: Any) -> bytes:
        """The quick-look page for a browser, else the health answer."""
        if wants_html(request):
            return self.web.page(request)
        ok, body = await self.service.health()
        if not ok:
            request.setResponseCode(503)
        return encode(body)

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request: Any) -> bytes:
        """The OpenAPI document (:mod:`sisock_core.bridge.openapi`), built once."""
        if self._openapi is None:
            from sisock_core.bridge.openapi import openapi_document

            self._openapi = encode(openapi_document())
        return self._openapi

    @app.route("/static/<path:name>", methods=["GET"])
    def static(self, request: Any, name: str) -> bytes:
        return self.web.static(name, request)

    @app.route("/api/fields", methods=["GET"])
    async def api_fields(self, request: Any) -> bytes:
        return await self.web.fields(request)

    @app.route("/api/data", methods=["GET"])
    async def api_data(self, request: Any) -> bytes:
        return await self.web.data(request)

    @app.route("/api/live", methods=["GET"])
    async def api_live(self, request: Any) -> bytes:
        return await self.web.live(request)

    # -- POST routes: a JSON body in, a JSON answer out ---------------------------------

    async def _targets(self) -> list[str]:
        """Every ``node::field`` target (the nodes' fields loaded first)."""
        await self.service.ensure_loaded()
        return self.service.catalog.targets()

    @_json_post(app, "/search")
    async def search(self, body: Any) -> list:
        text = grafana.search_text(body)
        return grafana.filter_targets(await self._targets(), text, self.limit)

    @_json_post(app, "/query")
    async def query(self, body: Any) -> list:
        req = grafana.parse_query(body)
        t0 = time.perf_counter()
        if grafana.needs_listing(req.targets):
            await self.service.ensure_loaded()
        catalog = self.service.catalog
        resolved = grafana.resolve_query(req, catalog.live_nodes(), catalog.known_fields)
        stale: dict[str, set[str]] = {}
        for t in resolved.targets:
            for n in t.unmatched_on:
                stale.setdefault(n, set()).add(t.field)
        if stale:  # a pattern matched none of a node's known fields: reload them once, retry
            await defer.DeferredList([defer.ensureDeferred(self.service.refresh_on_miss(n, sorted(fields)))
                                      for n, fields in stale.items()])
            resolved = grafana.resolve_query(req, catalog.live_nodes(), catalog.known_fields)
        req = resolved.capped(self.cfg.http.max_points)
        series = await self.service.query(req)
        answer = grafana.query_answer(series, req.notices)
        self.log.debug("query: {n} targets, {points} points in {ms:.1f} ms", n=len(series),
                       points=sum(s.t.size for s in series), ms=(time.perf_counter() - t0) * 1e3)
        return answer

    @_json_post(app, "/annotations")
    async def annotations(self, body: Any) -> list:
        req = grafana.parse_annotations(body)
        if req.target is None or req.target.error is not None:
            return []
        q = QueryRequest(start=req.start, end=req.end, targets=[req.target], max_points=ANNOTATION_LIMIT)
        series = await self.service.query(q)
        return grafana.annotations_answer(req, series[0] if series else None)

    @_json_post(app, "/tag-keys")
    async def tag_keys(self, body: Any) -> list:
        grafana.tag_keys_request(body)
        return grafana.tag_keys_answer()

    @_json_post(app, "/tag-values")
    async def tag_values(self, body: Any) -> list:
        req = grafana.parse_tag_values(body)
        if req.key == "node" and not req.filters:  # also nodes whose fields are not loaded
            return grafana.tag_values_answer(self.service.catalog.live_nodes()[: self.limit])
        return grafana.tag_values_answer(grafana.tag_values(req, await self._targets(), self.limit))

    @_json_post(app, "/metrics")
    async def metrics(self, body: Any) -> list:
        current = grafana.metrics_request(body)
        return grafana.metrics_answer(await self._targets(), current, self.limit)

    @_json_post(app, "/metric-payload-options")
    async def metric_payload_options(self, body: Any) -> list:
        return grafana.payload_options(body)

    @_json_post(app, "/variable")
    async def variable(self, body: Any) -> list:
        req = grafana.parse_variable(body)
        catalog = self.service.catalog
        if req.list == "nodes":
            values = grafana.filter_targets(catalog.live_nodes(), req.text, self.limit)
        else:
            await self.service.ensure_loaded()
            nodes = req.node or (None,)
            if req.list == "fields":
                pool = sorted({f for n in nodes for f in catalog.field_names(n)})
            else:
                pool = [t for n in nodes for t in catalog.targets(n)]
            values = grafana.filter_targets(pool, req.text, self.limit)
        return grafana.variable_answer(values[: self.limit])


#: Connections the kernel queues for the bridge to accept (Twisted's default, 50, drops
#: new clients' SYNs during a burst of connections: a 1 s retransmit for each).
LISTEN_BACKLOG = 1024


def _endpoint(reactor: Any, host: str, port: int) -> Any:
    if ":" in host:
        return endpoints.TCP6ServerEndpoint(reactor, port, backlog=LISTEN_BACKLOG, interface=host.strip("[]"))
    return endpoints.TCP4ServerEndpoint(reactor, port, backlog=LISTEN_BACKLOG, interface=host)


async def run_bridge(
    reactor: Any,
    cfg: SiteConfig,
    credentials: Credentials | None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Listen on ``http.listen:http.port``, join the router, serve until the reactor stops.

    ``on_ready`` is called once the port is listening and the session has joined.
    """
    log = Logger(namespace="sisock.http")
    joined: defer.Deferred = defer.Deferred()
    service = BridgeService(cfg, reactor=reactor, on_join=lambda: joined.callback(None))
    api = GrafanaAPI(service, cfg, credentials)
    http = cfg.http
    site = GuardedSite(api.resource(), BridgeLimits(http.max_connections, http.request_deadline,
                                                    http.max_client_requests), reactor=reactor,
                       logFormatter=access_log_line)
    site.noisy = False
    if site.max_connections < http.max_connections:
        log.info("at most {cap} connections at once (the open-file limit allows no more than "
                 "[http] max_connections = {wanted})", cap=site.max_connections, wanted=http.max_connections)
    port = await _endpoint(reactor, cfg.http.listen, cfg.http.port).listen(site)
    log.info("HTTP bridge listening on http://{host}:{port}/ (open it in a browser for the quick-look "
             "page; Grafana data source; {auth})", host=cfg.http.listen,
             port=port.getHost().port,
             auth=f"basic auth as {credentials.username!r}" if credentials else "no auth")
    done = service.start()
    reactor.addSystemEventTrigger("before", "shutdown", service.stop)
    first = await defer.DeferredList([joined, done], fireOnOneCallback=True, fireOnOneErrback=True,
                                     consumeErrors=True)
    if not joined.called:
        raise RuntimeError(f"the bridge's WAMP component stopped before joining: {first}")
    if on_ready is not None:
        on_ready()
    await done
