"""P8: long ranges. 16 channels x {24 h, 7 d, 30 d, 1 year} to 1000 points, cold and warm.

Run: ``python -m benchmarks.longrange_bench [--cache DIR] [--year-rate HZ] [--cold 3]``.

Data (generated once into ``--cache``, default ``~/.cache/sisock-bench``, never the repo):
a Lakeshore 372 feed as the OCS aggregator writes it (one block per channel, each with its
own timestamps, fields ``Channel_XX_T`` and ``Channel_XX_R``, 600 s frames, hourly files;
:func:`benchmarks.g3_data.ls372_archive`): 30 days at 1 Hz (~1 GB; the 24 h and 7 d panels
are its last day and week) and a year at ``--year-rate`` Hz: by default 1 Hz (~12 GB,
~20 minutes to generate once on a 2-core machine) when the cache's disk has room for it,
else 0.1 Hz, and the output says which and why.

Cases, each a fresh process (the node's import and start-up excluded, its first query
timed: "cold"; then the same query repeated: "warm"), with the OS page cache dropped
before every cold run when the benchmark may (root writing ``/proc/sys/vm/drop_caches``;
it says whether it could):

* sisock: the g3 plugin in :class:`sisock_core.engine.NodeEngine` with the summaries the
  scanner wrote, ``get_data(16 fields, range, max_points=1000)``, ready to send;
* sisock raw: the same node without summaries (today's path; 24 h and 7 d only, the 30
  days took > 25 s before summaries existed);
* baseline so3g: ``HKArchiveScanner.process_file`` over the files of the range +
  ``HKArchive.get_data`` + the same decimation to 1000 points; warm = ``get_data`` +
  decimation again on the scanned archive.

* InfluxDB 1.x (:mod:`benchmarks.influxdb`; installed here from the Debian package if
  missing and we are root, else the reason is printed and it is left out): a private
  ``influxd`` on a free loopback port with its data under ``--cache``, loaded once with the
  same samples of the 16 queried fields (read from the .g3 files, line protocol over HTTP,
  batched), asked ``SELECT min(..), max(..) ... GROUP BY time(range / 1000)`` (the min and
  max per bucket sisock keeps); cold = the first query after restarting ``influxd`` with the
  page cache dropped, warm = the same query repeated. 24 h, 7 d and 30 d (the month) and
  the year (its own database, loaded once: ~500 M points at 1 Hz, tens of minutes).

Also (in a fresh interpreter, as `sisock scan` runs): the first scan of two days of files
with and without summaries (medians of 5 interleaved rounds after an untimed one) and
so3g's scan of the same files, and the summaries' size against the raw .g3 bytes.
Prints medians and ratios against the bars of performance.md (P8).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.g3_data import DAY, T0, ls372_archive

LS = "observatory.LSA22YE.feeds.temperatures"
FIELDS = [f"{LS}.Channel_{i:02d}_T" for i in range(1, 17)]
POINTS = 1000
BARS = {"24 h": (150, None), "7 d": (None, None), "30 d": (300, 30), "1 year": (500, None)}


def drop_caches() -> bool:
    """Drop the OS page cache if permitted; whether it was."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def files_between(data: Path, t0: float, t1: float) -> list[str]:
    """Files whose first frame (ctime in the name) may hold samples in [t0, t1)."""
    from sisock_plugins.g3.scanner import files_in

    out = []
    for f in files_in(data):
        start = float(f.stem)
        if start < t1 and start + 3600 > t0:
            out.append(str(f))
    return out


# -- child processes ---------------------------------------------------------------------


def child(spec: dict) -> dict:
    """One fresh process: the first (cold) query, then ``warm`` repeats."""
    import numpy as np

    t0, t1 = spec["t0"], spec["t1"]
    if spec["kind"] == "so3g":
        import so3g  # noqa: F401
        from so3g.hk import HKArchiveScanner

        from sisock_core.decimate import decimate_timeline

        def decimated(arch):
            data, timelines = arch.get_data(FIELDS, t0, t1, short_match=False)
            n = 0
            for tl in timelines.values():
                t = np.asarray(tl["t"])
                out_t, cols = decimate_timeline(t, {f: np.asarray(data[f]) for f in tl["fields"]},
                                                max_points=POINTS)
                n = max(n, out_t.size)
            return n

        files = files_between(Path(spec["data"]), t0, t1)
        start = time.perf_counter()
        sc = HKArchiveScanner()
        for f in files:
            sc.process_file(f)
        arch = sc.finalize()
        n = decimated(arch)
        cold = time.perf_counter() - start
        warm = []
        for _ in range(spec["warm"]):
            s = time.perf_counter()
            decimated(arch)
            warm.append(time.perf_counter() - s)
        return {"cold": cold, "warm": statistics.median(warm) if warm else None, "points": n}

    from sisock_core.engine import NodeEngine
    from sisock_core.model import NodeContext
    from sisock_core.plugins import make_plugin_manager
    from sisock_core.summarystore import SummaryStore
    from sisock_plugins.g3 import plugin as g3_plugin

    ctx = NodeContext(name="g3_reader", description="bench",
                      options=g3_plugin.Options(data_dir=spec["data"], db=spec["db"]), state={})
    pm = make_plugin_manager(g3_plugin, name="g3")
    pm.hook.node_start(node=ctx)
    store = SummaryStore(pm.hook.summary_store(node=ctx)) if spec["kind"] == "sisock" else None
    engine = NodeEngine(ctx, pm, "g3", summaries=store)

    def query() -> int:
        ans = engine.get_data(FIELDS, t0, t1, max_points=POINTS)
        return max(len(v) for v in ans["data"].values())

    start = time.perf_counter()
    n = query()
    cold = time.perf_counter() - start
    warm = []
    for _ in range(spec["warm"]):
        s = time.perf_counter()
        query()
        warm.append(time.perf_counter() - s)
    import resource

    return {"cold": cold, "warm": statistics.median(warm) if warm else None, "points": n,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(spec: dict, drop: bool) -> dict:
    if drop:
        drop_caches()
    out = subprocess.run([sys.executable, "-m", "benchmarks.longrange_bench", "--child", json.dumps(spec)],
                         capture_output=True, text=True, check=True, env={**os.environ})
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- InfluxDB ---------------------------------------------------------------------------

INFLUX_DB = "sisock_bench"
MEASUREMENT = "temperatures"


def influx_db(name: str) -> str:
    """The InfluxDB database of a data set: the month keeps the historical name."""
    return INFLUX_DB if name == "month" else f"{INFLUX_DB}_{name}"


def influx_load(server, data: Path, db: str = INFLUX_DB, batch: int = 100_000) -> tuple[int, float]:
    """Write the samples of :data:`FIELDS` in the files of ``data`` into database ``db``
    (line protocol, ns); (points, seconds)."""
    import numpy as np

    import so3g  # noqa: F401
    from spt3g import core

    from sisock_plugins.g3.scanner import files_in

    wanted = {f.rsplit(".", 1)[1] for f in FIELDS}
    tick_ns = 1e9 / core.G3Units.s
    server.create_database(db)
    start = time.perf_counter()
    lines: list[str] = []
    points = 0
    for path in files_in(data):
        reader = core.G3Reader(str(path))
        while True:
            frames = reader.Process(None)
            if not frames:
                break
            frame = frames[0]
            if "blocks" not in frame:
                continue
            for block in frame["blocks"]:
                names = wanted.intersection(block.keys())
                if not names:
                    continue
                t = (np.asarray(block.times, dtype=np.int64) * int(tick_ns)).tolist()  # once per block
                for name in names:
                    fmt = f"{MEASUREMENT} {name}=%r %d"
                    lines.extend(fmt % tv for tv in zip(np.asarray(block[name]).tolist(), t))
            if len(lines) >= batch:
                server.write(db, "\n".join(lines).encode())
                points += len(lines)
                lines = []
    if lines:
        server.write(db, "\n".join(lines).encode())
        points += len(lines)
    return points, time.perf_counter() - start


def influx_query_text(t0: float, t1: float) -> str:
    names = [f.rsplit(".", 1)[1] for f in FIELDS]
    aggs = ", ".join(f'min("{n}") AS "min_{n}", max("{n}") AS "max_{n}"' for n in names)
    interval_ms = max(1, round((t1 - t0) / POINTS * 1000))
    return (f'SELECT {aggs} FROM "{MEASUREMENT}" WHERE time >= {int(t0 * 1000)}ms AND time < {int(t1 * 1000)}ms '
            f"GROUP BY time({interval_ms}ms)")


def influx_case(server, t0: float, t1: float, cold_runs: int, warm_runs: int, drop: bool,
                db: str = INFLUX_DB) -> dict:
    """Cold (a restarted influxd, page cache dropped) and warm times of one panel."""
    q = influx_query_text(t0, t1)
    colds = []
    body = b""
    for _ in range(cold_runs):
        server.stop()
        if drop:
            drop_caches()
        server.start()
        s = time.perf_counter()
        body = server.query(db, q)
        colds.append(time.perf_counter() - s)
    warms = []
    for _ in range(warm_runs):
        s = time.perf_counter()
        server.query(db, q)
        warms.append(time.perf_counter() - s)
    answer = json.loads(body)
    series = answer["results"][0].get("series") or []
    if answer["results"][0].get("error"):
        raise RuntimeError(f"InfluxDB: {answer['results'][0]['error']}")
    buckets = len(series[0]["values"]) if series else 0
    return {"cold": statistics.median(colds), "warm": statistics.median(warms), "points": buckets}


def start_influx(cache: Path, sets: dict[str, Path], install: bool):
    """A private influxd with each of ``sets`` (name: data directory) loaded into a
    database of its own (once), or (None, why not)."""
    from benchmarks.influxdb import InfluxServer, ensure_influxd

    influxd, how = ensure_influxd(install)
    if influxd is None:
        return None, how
    server = InfluxServer(influxd, cache / "influxdb")
    try:
        server.start()
        for name, data in sets.items():
            loaded = cache / "influxdb" / f".loaded-{name}"
            if not loaded.exists():
                print(f"InfluxDB: loading the {name} (once)", flush=True)
                points, took = influx_load(server, data, influx_db(name))
                loaded.write_text(str(points))
                how += f"; loaded the {name}: {points / 1e6:.1f} M points in {took:.0f} s"
            settled = cache / "influxdb" / f".compacted-{name}"
            if not settled.exists():  # time it as an archive written a while ago: compacted
                waited = server.settle()
                settled.touch()
                how += f"; compacted in {waited:.0f} s"
    except (OSError, RuntimeError) as exc:
        server.stop()
        return None, f"influxd could not be run: {exc}"
    return server, how


# -- set-up -----------------------------------------------------------------------------


def index(data: Path, db: Path, summarize: bool = True) -> float:
    """Index ``data`` into ``db`` (once; kept beside the data); seconds it took."""
    from sisock_plugins.g3.index import Index
    from sisock_plugins.g3.scanner import Scanner

    done = db.with_suffix(".done")
    if done.exists():
        return float(done.read_text())
    start = time.perf_counter()
    Scanner(Index(f"sqlite:///{db}"), data, summarize=summarize).scan_tree()
    took = time.perf_counter() - start
    done.write_text(str(took))
    return took


def scan_costs(month: Path, work: Path) -> dict:
    """First scan of two days with and without summaries, so3g's scan, sizes (run it in a
    fresh interpreter)."""
    import so3g  # noqa: F401
    from so3g.hk import HKArchiveScanner

    from sisock_core.summarystore import SummaryStore
    from sisock_plugins.g3.index import Index
    from sisock_plugins.g3.scanner import Scanner

    sub = work / "two-days"
    if sub.exists():
        shutil.rmtree(sub)
    files = files_between(month, T0, T0 + 2 * DAY)
    for f in files:
        dest = sub / Path(f).relative_to(month)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f, dest)
    raw = sum(os.path.getsize(f) for f in files)
    out: dict = {"files": len(files), "raw_bytes": raw}
    # one untimed pair first (imports, allocator), then 5 rounds: medians, as g3_scan_bench
    for n, summarize in enumerate((False, True) * 6):
        db = work / f"scan-{int(summarize)}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{db}{suffix}"):
                os.unlink(f"{db}{suffix}")
        index_ = Index(f"sqlite:///{db}")
        start, cpu = time.perf_counter(), time.process_time()
        Scanner(index_, sub, summarize=summarize).scan_tree()
        if n >= 2:
            out.setdefault(f"scan_{int(summarize)}", []).append(time.perf_counter() - start)
            out.setdefault(f"cpu_{int(summarize)}", []).append(time.process_time() - cpu)
        index_.close()
        import sqlite3

        conn = sqlite3.connect(db)  # the WAL's pages into the file: its size is the data's
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        out[f"db_{int(summarize)}"] = os.path.getsize(db)
    out["blob_bytes"] = SummaryStore(f"sqlite:///{work / 'scan-1.sqlite'}").size_bytes()
    times = []
    for _ in range(2):
        start = time.perf_counter()
        sc = HKArchiveScanner()
        for f in files:
            sc.process_file(f)
        sc.finalize()
        times.append(time.perf_counter() - start)
    out["so3g"] = min(times)
    return out


#: Bytes of the year of 16 channels at 1 Hz (.g3 files and index), with room to spare.
YEAR_1HZ_BYTES = 15e9


def year_rate(cache: Path, asked: float | None) -> tuple[float, str]:
    """The year's sample rate and why: as asked, else 1 Hz if the disk holds it (or it was
    generated already), else 0.1 Hz."""
    if asked is not None:
        return asked, "--year-rate"
    if (cache / "ls372-365d-1hz" / ".complete").exists():
        return 1.0, "generated already"
    probe = cache
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free >= YEAR_1HZ_BYTES:
        return 1.0, f"{free / 1e9:.0f} GB free"
    return 0.1, f"only {free / 1e9:.0f} GB free for the ~12 GB a year at 1 Hz takes"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/sisock-bench"),
                        help="where generated data and indexes live (reused between runs)")
    parser.add_argument("--year-rate", type=float, default=None,
                        help="sample rate of the year (Hz; default 1 if the cache's disk holds ~12 GB more, "
                             "else 0.1)")
    parser.add_argument("--cold", type=int, default=3, help="fresh processes per cold case (median)")
    parser.add_argument("--warm", type=int, default=7, help="repeats per warm case (median)")
    parser.add_argument("--skip-year", action="store_true", help="leave the year out")
    parser.add_argument("--no-influx", action="store_true", help="leave InfluxDB out")
    parser.add_argument("--no-influx-year", action="store_true",
                        help="compare InfluxDB on the month only (loading the year at 1 Hz, ~500 M points, "
                             "takes over an hour on a 2-core machine)")
    parser.add_argument("--no-influx-install", action="store_true",
                        help="compare with InfluxDB only if influxd is already installed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    cache = Path(args.cache)
    began = time.perf_counter()
    print(f"data in {cache} (generated on first use)", flush=True)
    month = ls372_archive(cache / "ls372-30d-1hz", T0, 30, 1.0)
    sets = {"month": (month, T0, 30)}
    if not args.skip_year:
        rate, why = year_rate(cache, args.year_rate)
        print(f"the year: {rate:g} Hz ({why})", flush=True)
        year = ls372_archive(cache / f"ls372-365d-{rate:g}hz", T0, 365, rate)
        sets["year"] = (year, T0, 365)
    took = {k: index(d, d.parent / "index.sqlite") for k, (d, _, _) in sets.items()}
    for k, (d, _, days) in sets.items():
        size = sum(f.stat().st_size for f in d.rglob("*.g3"))
        print(f"{k}: {days} days, {size / 1e9:.2f} GB of .g3, indexed with summaries in {took[k]:.0f} s")
    dropped = drop_caches()
    print(f"OS page cache {'dropped before every cold run' if dropped else 'NOT dropped (no permission): cold = fresh process only'}")
    influx, how = (None, "left out (--no-influx)") if args.no_influx else \
        start_influx(cache, {k: d for k, (d, _, _) in sets.items() if k == "month" or not args.no_influx_year},
                     not args.no_influx_install)
    print(f"InfluxDB: {how if influx is not None else how + ': not compared'}", flush=True)
    end = T0 + 30 * DAY
    panels = [("24 h", "month", end - DAY, end), ("7 d", "month", end - 7 * DAY, end),
              ("30 d", "month", T0, end)]
    if "year" in sets:
        panels.append(("1 year", "year", T0, T0 + 365 * DAY))
    rows = []
    for label, which, t0, t1 in panels:
        data, _, _ = sets[which]
        base = {"data": str(data), "db": f"sqlite:///{data.parent / 'index.sqlite'}", "t0": t0, "t1": t1,
                "warm": args.warm}
        res = {}
        for kind in ("sisock", "raw", "so3g"):
            if kind == "raw" and label not in ("24 h", "7 d"):
                continue
            n = args.cold if not (kind == "so3g" and label == "1 year") else 1
            runs = [run_child({**base, "kind": kind}, dropped) for _ in range(n)]
            res[kind] = {"cold": statistics.median(r["cold"] for r in runs),
                         "warm": statistics.median(r["warm"] for r in runs if r["warm"] is not None),
                         "points": runs[0]["points"], "rss": max(r.get("rss_mb", 0) for r in runs)}
            print(f"  {label:>6} {kind:<6} cold {res[kind]['cold'] * 1e3:9.1f} ms  warm "
                  f"{res[kind]['warm'] * 1e3:8.1f} ms  points {res[kind]['points']}"
                  + (f"  max RSS {res[kind]['rss']:.0f} MB" if res[kind]["rss"] else ""), flush=True)
        if influx is not None and (which == "month" or not args.no_influx_year):
            res["influx"] = influx_case(influx, t0, t1, args.cold, args.warm, dropped, influx_db(which))
            print(f"  {label:>6} influx cold {res['influx']['cold'] * 1e3:9.1f} ms  warm "
                  f"{res['influx']['warm'] * 1e3:8.1f} ms  buckets {res['influx']['points']}", flush=True)
        rows.append((label, res))
    if influx is not None:
        influx.stop()
    print()
    print("| panel (16 ch -> 1000 points) | sisock cold | sisock warm | sisock raw cold | so3g cold | so3g warm | "
          "cold vs so3g | InfluxDB cold | InfluxDB warm | InfluxDB / sisock cold, warm | bars |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, res in rows:
        s, g = res["sisock"], res["so3g"]
        raw = f"{res['raw']['cold'] * 1e3:.0f} ms" if "raw" in res else "-"
        bar_cold, bar_warm = BARS[label]
        verdict = []
        if bar_cold:
            verdict.append(f"cold <= {bar_cold} ms {'OK' if s['cold'] * 1e3 <= bar_cold else 'MISSED'}")
        if bar_warm:
            verdict.append(f"warm <= {bar_warm} ms {'OK' if s['warm'] * 1e3 <= bar_warm else 'MISSED'}")
        inf = res.get("influx")
        influx_cols = (f"{inf['cold'] * 1e3:.0f} ms | {inf['warm'] * 1e3:.1f} ms | "
                       f"{inf['cold'] / s['cold']:.1f}x, {inf['warm'] / s['warm']:.1f}x") if inf else "- | - | -"
        print(f"| {label} | {s['cold'] * 1e3:.0f} ms | {s['warm'] * 1e3:.1f} ms | {raw} | {g['cold'] * 1e3:.0f} ms | "
              f"{g['warm'] * 1e3:.0f} ms | {s['cold'] / g['cold']:.3f}x | {influx_cols} | {'; '.join(verdict) or '-'} |")
    # in a fresh interpreter, as the scanner runs (`sisock scan`): this process holds the
    # generated data's objects, whose garbage collections the scans would pay for
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        costs = pool.submit(scan_costs, month, cache / "scan-costs").result()
    s0, s1 = statistics.median(costs["scan_0"]), statistics.median(costs["scan_1"])
    c0, c1 = statistics.median(costs["cpu_0"]), statistics.median(costs["cpu_1"])
    print()
    print(f"first scan of {costs['files']} files ({costs['raw_bytes'] / 1e6:.0f} MB), medians of 5: without "
          f"summaries {s0:.2f} s, with {s1:.2f} s ({s1 / s0:.2f}x wall, {c1 / c0:.2f}x CPU; bar <= 1.5x "
          f"{'OK' if s1 / s0 <= 1.5 else 'MISSED'}); so3g HKArchiveScanner {costs['so3g']:.2f} s (with summaries "
          f"{s1 / costs['so3g']:.2f}x so3g)")
    extra = costs["db_1"] - costs["db_0"]
    print(f"summaries' size: {costs['blob_bytes'] / 1e6:.2f} MB packed, database grows by {extra / 1e6:.2f} MB = "
          f"{extra / costs['raw_bytes'] * 100:.1f} % of the raw .g3 bytes (bar <= 10 % "
          f"{'OK' if extra <= 0.1 * costs['raw_bytes'] else 'MISSED'})")
    print(f"benchmark took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
