"""50 datafeed nodes in one process vs one process each: memory and query latency (issue 16).

Run: ``python -m benchmarks.node_groups_bench [--nodes 50] [--feed-seconds 30] [--query-seconds 45]``.

A real site (``sisock up``: crossbar router, hub, the nodes) with ``--nodes`` datafeed nodes
``feed00``.., each following one fake OCS agent (:mod:`tests.reliability.ocs_agents` in a
child process, real WAMP publishers on the OCS port: 16 channels at 1 Hz, as a Lakeshore
agent), is run twice in the same run:

* **process per node** (the baseline, sisock before node groups): every node ``process = "own"``;
* **grouped** (the default now): no ``process`` key, so the datafeed nodes share one process.

After the agents have published ``--feed-seconds``, ``--clients`` consumers (real WAMP
sessions, :class:`sisock_core.testing.SiteClient`) ask ``get_data`` of 4 channels of a
random node over the last 15 minutes with ``max_points = 1200`` (a Grafana panel), each
every ``--interval`` seconds (16 panels a second in all by default: 20 dashboards of 4
panels refreshed every 5 s), for ``--query-seconds``. Printed per layout: start-up time,
the resident memory summed over the node processes and over every process of the site
(``sisock up`` and its descendants: router, hub, nodes), PSS likewise (shared pages counted
once), and the latency of the calls (p50, p95, max), then the ratios and the issue's bar
(<= 1 GiB for the grouped nodes, p95 <= 1.5x process per node).

On the 2-core development machine (shared with other work), four runs (4.5 minutes each
with the defaults): process per node 50 node processes, 3820-3870 MiB RSS (~2350 MiB PSS),
the site 4250-4305 MiB, up in 20-66 s; grouped 1 node process, 88-89 MiB RSS (62 MiB PSS),
the site ~520 MiB, up in 6-13 s. get_data p95 grouped / per node, with the defaults:
17.4 / 16.5 ms (1.05x), 12.2 / 10.2 ms (1.20x), 12.0 / 11.5 ms (1.04x); with 6 clients
asking back to back (``--interval 0 --clients 6``): 33.4 / 36.2 ms (0.92x), 344 vs 316
calls/s. Every answer had data.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

CHANNELS = 16
PANEL_FIELDS = 4


def _nodes_toml(n: int, own: bool) -> str:
    extra = 'process = "own"\n' if own else ""
    return "".join(f'[nodes.feed{i:02d}]\nplugin = "datafeed"\ntarget = "agent{i:02d}"\n'
                   f'feed = "temperatures"\n{extra}\n' for i in range(n))


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _memory(up_pid: int) -> dict[str, float]:
    """MiB of RSS and PSS over the node processes and over the whole site."""
    root = psutil.Process(up_pid)
    out = {"nodes_rss": 0.0, "site_rss": 0.0, "nodes_pss": 0.0, "site_pss": 0.0, "node_procs": 0, "procs": 0}
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
            is_node = " node " in " ".join(proc.cmdline()) + " "
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss, pss = info.rss / 2**20, getattr(info, "pss", info.rss) / 2**20
        out["site_rss"] += rss
        out["site_pss"] += pss
        out["procs"] += 1
        if is_node:
            out["nodes_rss"] += rss
            out["nodes_pss"] += pss
            out["node_procs"] += 1
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_layout(label: str, own: bool, args: argparse.Namespace, tmp: Path) -> dict:
    from sisock_core.testing import SisockProcess, SiteClient, free_ports, wait_until, write_site
    from sisock_core.wamp import HUB_LIST, node_uri
    from tests.reliability.support import Agents

    directory = tmp / label.replace(" ", "_")
    directory.mkdir()
    tls_port, ocs_port = free_ports(2)
    path = write_site(directory / "site.toml", state_dir=directory / "state", tls_port=tls_port,
                      ocs_port=ocs_port, nodes=_nodes_toml(args.nodes, own), log_level="info")
    _say(f"{label}: starting sisock up with {args.nodes} datafeed nodes")
    t0 = time.monotonic()
    up = SisockProcess(["up", str(path)], directory / "up.log")
    agents = None
    clients: list = []
    try:
        up.wait_ready("site", timeout=600)
        started = time.monotonic() - t0
        clients = [SiteClient(path, directory / f"client{i}.log") for i in range(args.clients)]
        names = [f"feed{i:02d}" for i in range(args.nodes)]
        wait_until(lambda: set(names) <= {n["name"] for n in clients[0].call(HUB_LIST)}, timeout=120,
                   what="every node listed")
        _say(f"{label}: site up in {started:.1f} s; starting {args.nodes} fake OCS agents")
        agents = Agents(ocs_port, args.nodes, channels=CHANNELS, rate=1.0, prefix="agent",
                        log_path=directory / "agents.log")
        agents.wait_ready(timeout=180)
        for left in range(int(args.feed_seconds), 0, -10):
            _say(f"{label}: agents publishing; queries start in {left} s")
            time.sleep(min(10, left))
        idle = _memory(up.proc.pid)

        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + args.query_seconds

        def consumer(client, seed: int) -> None:
            rng = random.Random(seed)
            next_at = time.monotonic() + rng.random() * args.interval
            while True:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if time.monotonic() >= stop_at:
                    return
                next_at += args.interval
                node = rng.choice(names)
                first = rng.randrange(CHANNELS)
                fields = [f"channel_{(first + k) % CHANNELS + 1:02d}_t" for k in range(PANEL_FIELDS)]
                t = time.perf_counter()
                try:
                    answer = client.call(node_uri(node, "get_data"), fields, -900, 0, None, max_points=1200)
                    ok = all(len(answer["data"].get(f, [])) > 0 for f in fields)
                except Exception as exc:  # counted and shown, not hidden
                    ok, answer = False, exc
                took = time.perf_counter() - t
                with lock:
                    latencies.append(took)
                    if not ok:
                        errors.append(f"{node}: {answer!r}"[:200])

        threads = [threading.Thread(target=consumer, args=(c, i), daemon=True) for i, c in enumerate(clients)]
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads):
            time.sleep(5)
            with lock:
                done = len(latencies)
            _say(f"{label}: {done} queries so far")
        busy = _memory(up.proc.pid)
        result = {"label": label, "started": started, "idle": idle, "busy": busy, "latencies": latencies,
                  "errors": errors}
        _say(f"{label}: {len(latencies)} queries, {len(errors)} without data; p95 "
             f"{_pct(latencies, 0.95) * 1000:.1f} ms; nodes RSS {busy['nodes_rss']:.0f} MiB in "
             f"{busy['node_procs']} processes")
        return result
    finally:
        for c in clients:
            c.close()
        if agents is not None:
            agents.stop()
        rc = up.stop(timeout=120)
        if rc != 0:
            print(f"{label}: sisock up exited with {rc}\n{up.log_tail(20, debug=False)}", file=sys.stderr)


def _report(results: list[dict]) -> None:
    print("\nlayout             start   node procs  nodes RSS  nodes PSS   site RSS  site PSS   "
          "queries  p50 ms  p95 ms  max ms  no data")
    for r in results:
        m, lat = r["busy"], r["latencies"]
        print(f"{r['label']:<18} {r['started']:5.0f} s  {m['node_procs']:10d}  {m['nodes_rss']:6.0f} MiB "
              f"{m['nodes_pss']:6.0f} MiB {m['site_rss']:6.0f} MiB {m['site_pss']:6.0f} MiB  {len(lat):7d}  "
              f"{statistics.median(lat) * 1000:6.1f}  {_pct(lat, 0.95) * 1000:6.1f}  {max(lat) * 1000:6.0f}  "
              f"{len(r['errors']):7d}")
    base, grouped = results
    ratio = _pct(grouped["latencies"], 0.95) / _pct(base["latencies"], 0.95)
    mem = grouped["busy"]["nodes_rss"]
    print(f"\nnodes RSS grouped / per node: {mem:.0f} / {base['busy']['nodes_rss']:.0f} MiB "
          f"({mem / base['busy']['nodes_rss']:.2f}x); idle before the queries: "
          f"{grouped['idle']['nodes_rss']:.0f} / {base['idle']['nodes_rss']:.0f} MiB")
    print(f"p95 grouped / per node: {ratio:.2f}x")
    print(f"bar: nodes grouped <= 1024 MiB: {'met' if mem <= 1024 else 'NOT met'}; "
          f"p95 <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'}")
    for r in results:
        for e in r["errors"][:3]:
            print(f"  {r['label']}: no data: {e}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=50, help="datafeed nodes (and fake OCS agents)")
    p.add_argument("--feed-seconds", type=float, default=30.0, help="seconds of publishing before the queries")
    p.add_argument("--query-seconds", type=float, default=45.0, help="seconds of queries per layout")
    p.add_argument("--clients", type=int, default=4, help="consumer sessions asking at the same time")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between one client's queries")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sisock-groups-bench-") as tmp:
        results = [run_layout("process per node", True, args, Path(tmp)),
                   run_layout("grouped", False, args, Path(tmp))]
    _report(results)


if __name__ == "__main__":
    main()
