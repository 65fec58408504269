"""P5: HTTP ``/query`` for 16 targets over 24 h, maxDataPoints 1000 (p50), vs the same
work as one in-process Python call.

Run: ``python -m benchmarks.bridge_query_bench [--repeat 30] [--keep DIR]``.

Setup: 16 weather-format ``.dat`` files of 86 400 samples each (24 h at 1 Hz,
full-precision values) in a temporary directory, served by a weather node
``bench`` under ``sisock up`` (crossbar router, hub, the node and the HTTP bridge
on free loopback ports). Ours: a Grafana ``/query`` over HTTP (urllib, one
connection per request, as Grafana's proxy) through bridge -> crossbar (msgpack)
-> node (``get_data`` with ``max_points``, decimation) and back, p50. Baseline:
the same work in one process: the weather plugin's ``read_range`` through
:class:`~sisock_core.engine.NodeEngine` (trim + decimate to 1000 points), then the
bridge's answer building and orjson encoding. Bar (performance.md): ratio <= 3x.
The HTTP and in-process answers are checked to be the same.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from sisock_core.bridge import grafana as g
from sisock_core.engine import NodeEngine
from sisock_core.model import NodeContext
from sisock_core.plugins import load_plugin
from sisock_core.testing import SisockProcess, free_ports, write_site
from benchmarks._timing import timed

DAY0 = 1500508800.0  # 2017-07-20T00:00:00Z
N_FIELDS = 16
N_SAMPLES = 86_400
MAX_POINTS = 1000


def write_data(directory: Path) -> list[str]:
    """16 weather files (one timeline ``secondly``), 24 h at 1 Hz."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    t = DAY0 + np.arange(N_SAMPLES, dtype=np.float64)
    names = []
    for i in range(N_FIELDS):
        name = f"ch{i:02d}"
        v = 20.0 + np.cumsum(rng.normal(scale=0.01, size=N_SAMPLES))
        v[rng.integers(N_SAMPLES)] += 5.0  # a spike the decimation must keep
        body = "\n".join(f"{int(a)} {b:.6f}" for a, b in zip(t.tolist(), v.tolist()))
        (directory / f"{name}.dat").write_text(f"# bench channel {i}\n# secondly\n# K\n{body}\n")
        names.append(name)
    return names


def grafana_body(fields: list[str]) -> dict:
    return {
        "range": {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-21T00:00:00.000Z",
                  "raw": {"from": "now-24h", "to": "now"}},
        "interval": "1m", "intervalMs": 60000, "maxDataPoints": MAX_POINTS,
        "targets": [{"target": f"bench::{f}", "refId": f"R{i}", "type": "timeserie"}
                    for i, f in enumerate(fields)],
        "adhocFilters": [],
    }


def in_process(data_dir: Path, fields: list[str]):
    """The baseline's engine and its one-call query function."""
    from sisock_plugins.weather.plugin import Options

    pm, _spec = load_plugin("weather")
    ctx = NodeContext(name="bench", description="bench", options=Options(data_dir=str(data_dir)))
    pm.hook.node_start(node=ctx)
    engine = NodeEngine(ctx, pm, "weather")
    req = g.parse_query(grafana_body(fields))

    def query() -> bytes:
        answer = engine.get_data(fields, req.start, req.end, req.min_stride, max_points=req.max_points)
        times: dict = {}
        series = [g.series_from_answer(answer, t, "secondly", max_points=req.max_points, times=times)
                  for t in req.targets]
        return g.encode(g.query_answer(series))

    def engine_only() -> dict:
        return engine.get_data(fields, req.start, req.end, req.min_stride, max_points=req.max_points)

    return query, engine_only


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed requests (median)")
    parser.add_argument("--keep", help="use (and keep) this directory instead of a temporary one")
    args = parser.parse_args(argv)

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sisock-p5-"))
    proc = None
    try:
        data = tmp / "data"
        t0 = time.perf_counter()
        fields = write_data(data) if not (data / "ch15.dat").exists() else [f"ch{i:02d}" for i in range(N_FIELDS)]
        print(f"data: {N_FIELDS} files x {N_SAMPLES:,} samples in {data} ({time.perf_counter() - t0:.1f} s)")

        tls, ocs, http = free_ports(3)
        site = write_site(tmp / "site.toml", state_dir=tmp / "state", tls_port=tls, ocs_port=ocs,
                          http_port=http, start_http=True, log_level="info",
                          nodes=f'[nodes.bench]\nplugin = "weather"\ndata_dir = {json.dumps(str(data))}\n')
        t0 = time.perf_counter()
        proc = SisockProcess(["up", str(site)], tmp / "up.log")
        proc.wait_ready("site", timeout=600)
        print(f"sisock up ready in {time.perf_counter() - t0:.1f} s (router, hub, node bench, bridge)")

        body = json.dumps(grafana_body(fields)).encode()
        url = f"http://127.0.0.1:{http}/query"

        def http_query() -> bytes:
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 200
                return r.read()

        query, engine_only = in_process(data, fields)
        over_http = json.loads(http_query())
        local = json.loads(query())
        assert over_http == local, "the HTTP answer differs from the in-process one"
        assert all(len(s["datapoints"]) <= MAX_POINTS for s in over_http)
        points = sum(len(s["datapoints"]) for s in over_http)

        ours, _ = timed(http_query, args.repeat)
        base, _ = timed(query, args.repeat)
        eng, _ = timed(engine_only, args.repeat)
        print(f"answer: {len(over_http)} series, {points} points, {len(http_query()) / 1e3:.0f} kB JSON")
        print(f"  baseline, in process: engine.get_data + build + encode  {base * 1e3:8.2f} ms")
        print(f"    of which engine.get_data (read, trim, decimate)       {eng * 1e3:8.2f} ms")
        print(f"  ours: HTTP /query p50 (bridge, crossbar, node)          {ours * 1e3:8.2f} ms  {ours / base:5.2f}x")
        verdict = "meets" if ours / base <= 3.0 else "MISSES"
        print(f"P5: {ours / base:.2f}x the in-process call ({verdict} the <= 3x bar)")
    finally:
        if proc is not None:
            proc.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
