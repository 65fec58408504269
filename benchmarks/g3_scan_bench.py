"""P7: the g3 scanner: first scan with and without summaries, re-scan, new-file latency.

Run: ``python -m benchmarks.g3_scan_bench [--repeat 5] [--dir DIR] [--mariadb URL]``.

Times, on two data sets (:mod:`benchmarks.g3_data`): a day of a site's aggregator output
(24 files, five providers) and two days of a Lakeshore 372 alone (48 files, one block per
channel: the layout where summaries cost most, as every value is decoded while indexing
alone decodes none):

* the first scan into a new SQLite index (:meth:`Scanner.scan_tree`: read every frame,
  write feeds/fields/frames rows, summaries and their coarse tiers), with and without
  summaries (``summarize=False``), against the baseline of performance.md: so3g
  ``HKArchiveScanner.process_file`` over the same files (+ ``finalize``), all in the same
  run, interleaved. Bar: summaries add <= 1.5x to the scan without them. On the LS372
  data, where that CPU goes: decoding and reducing every value, and the rest (packing,
  storing, rolling up), each as a multiple of the plain scan. With
  ``--mariadb URL``, the first scan into that MariaDB too (its database is dropped
  afterwards; none is used otherwise).
* a re-scan of the unchanged tree (stat only, no file opened). Bar: <= 0.05x of the
  first scan.
* new-file latency: the scanner service with its watchdog (default 1 s debounce)
  running, a file is written and closed in the data directory; the time until the
  index holds it. Bar: <= 2 s.

Prints medians of wall-clock time and of the process's CPU time (``time.process_time``;
on a shared machine the CPU time is the steadier figure), and the worst latency. Files are
in the OS page cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import so3g  # noqa: F401  (before spt3g, which the scanner imports)
from so3g.hk import HKArchiveScanner

from benchmarks.g3_data import T0, day_archive, g3_files, ls372_archive, size_mb
from sisock_plugins.g3.index import DatabaseUnavailable, Index
from sisock_core import summaries as S
from sisock_plugins.g3 import scan as g3scan
from sisock_plugins.g3.scanner import Scanner


def median(times: list[float]) -> float:
    return statistics.median(times)


def first_scan(url_factory, data, summarize: bool = True) -> tuple[float, float]:
    """Wall-clock and CPU seconds of a first scan of ``data`` into a new index."""
    index, cleanup = url_factory()
    t0, c0 = time.perf_counter(), time.process_time()
    stats = Scanner(index, data, summarize=summarize).scan_tree()
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert stats.read == stats.seen and stats.errors == 0, stats
    index.close()
    cleanup()
    return took, cpu


def sqlite_index():
    tmp = tempfile.mkdtemp(prefix="sisock-g3-p7-")
    return Index(f"sqlite:///{tmp}/index.sqlite"), lambda: shutil.rmtree(tmp, ignore_errors=True)


def so3g_scan(files: list[str]) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    sc = HKArchiveScanner()
    for f in files:
        sc.process_file(f)
    sc.finalize()
    return time.perf_counter() - t0, time.process_time() - c0


def compare(label: str, data, repeat: int) -> dict[str, float]:
    """First scans with and without summaries and so3g's scan of ``data``, interleaved.
    Returns wall-clock medians by case, and CPU-time medians under ``cpu <case>``."""
    files = g3_files(data)
    print(f"{label}: {len(files)} files, {size_mb(files):.1f} MB in {data}")
    so3g_scan(files)  # page cache
    first_scan(sqlite_index, data)  # imports, allocator warm-up: not the first timed case's cost
    times: dict[str, list[tuple[float, float]]] = {"so3g": [], "without": [], "with": []}
    for _ in range(repeat):
        times["so3g"].append(so3g_scan(files))
        times["without"].append(first_scan(sqlite_index, data, summarize=False))
        times["with"].append(first_scan(sqlite_index, data, summarize=True))
    m = {k: median([w for w, _ in v]) for k, v in times.items()}
    m.update({f"cpu {k}": median([c for _, c in v]) for k, v in times.items()})
    print(f"  {'case (SQLite)':<50} {'wall ms':>8} {'x so3g':>7} {'x no sum.':>9} "
          f"{'CPU ms':>8} {'x so3g':>7} {'x no sum.':>9}")
    for key, what in (("so3g", "so3g HKArchiveScanner.process_file + finalize"),
                      ("without", "first scan without summaries"), ("with", "first scan with summaries")):
        c = f"cpu {key}"
        print(f"  {what:<50} {m[key] * 1e3:>8.1f} {m[key] / m['so3g']:>7.2f} {m[key] / m['without']:>9.2f} "
              f"{m[c] * 1e3:>8.1f} {m[c] / m['cpu so3g']:>7.2f} {m[c] / m['cpu without']:>9.2f}")
    return m


def cost_floor(data, m: dict[str, float], repeat: int) -> None:
    """Where the CPU time the summaries add goes: decoding and reducing every value (the
    scanner's own reading of the files with and without summaries, no database), and the
    rest (packing, storing, rolling up the coarse tiers), against the scan without
    summaries (``m``)."""
    files = g3_files(data)

    def cpu(fn) -> float:
        runs = []
        for _ in range(repeat):
            c0 = time.process_time()
            fn()
            runs.append(time.process_time() - c0)
        return median(runs)

    read = cpu(lambda: [g3scan.scan_file(f, summarize=False) for f in files])
    summarized = cpu(lambda: [g3scan.scan_file(f, summarize=True) for f in files])
    base, extra = m["cpu without"], m["cpu with"] - m["cpu without"]
    how = "compiled, one pass per block group" if S._buckets is not None else "numpy: no compiled kernel here"
    print(f"  where the summaries' CPU goes (scan without them: {base * 1e3:.0f} ms, of which reading the "
          f"files {read * 1e3:.0f} ms):")
    for what, ms in ((f"decoding and reducing every value ({how})", summarized - read),
                     ("packing, storing, rolling up the coarse tiers", extra - (summarized - read))):
        print(f"    {what:<66} +{ms * 1e3:6.0f} ms  (+{ms / base:.2f}x)")


def latency(data, repeat: int, debounce: float, report) -> None:
    """Seconds from closing a new file to seeing it in the index (real watchdog).

    Runs the reactor with ``task.react``, which exits the process: ``report(latencies)``
    is called before that.
    """
    from twisted.internet import defer, task

    from sisock_plugins.g3.service import ScannerService, ScanTarget

    tmp = tempfile.mkdtemp(prefix="sisock-g3-p7-watch-")
    watched = os.path.join(tmp, "data")
    shutil.copytree(data, watched)
    url = f"sqlite:///{tmp}/index.sqlite"
    source = g3_files(data)[0]
    out: list[float] = []

    async def main(reactor) -> None:
        first: defer.Deferred = defer.Deferred()
        svc = ScannerService([ScanTarget("bench", watched, url, watch=True, debounce=debounce)],
                             reactor=reactor, on_first_pass=lambda: first.callback(None))
        svc.startService()
        await first
        index = Index(url)
        for i in range(repeat):
            dst = os.path.join(watched, "99999", f"{1_700_000_000 + i}.g3")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            await task.deferLater(reactor, 0.5, lambda: None)  # let the directory event settle
            shutil.copyfile(source, dst)  # written and closed here
            closed = time.perf_counter()
            while True:
                row = index.file(dst)
                if row is not None and row.status == "ok":
                    out.append(time.perf_counter() - closed)
                    break
                if time.perf_counter() - closed > 30:
                    raise RuntimeError(f"{dst} not indexed after 30 s")
                await task.deferLater(reactor, 0.005, lambda: None)
        index.close()
        await defer.maybeDeferred(svc.stopService)
        shutil.rmtree(tmp, ignore_errors=True)
        report(out)

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--dir", help="where the generated data live (default: a temp dir, reused)")
    parser.add_argument("--mariadb", metavar="URL",
                        help="also scan into this MariaDB (mysql://user@host:port/db; the database is "
                             "dropped afterwards); default: SQLite only")
    parser.add_argument("--debounce", type=float, default=1.0, help="watchdog quiet period (default 1 s)")
    args = parser.parse_args(argv)

    data = day_archive(args.dir)
    base_dir = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    ls_data = ls372_archive(base_dir / "sisock-g3-bench-2d-ls372", T0, 2, 1.0, progress=False)
    results = {"a day of five providers": compare("a day of five providers", data, args.repeat),
               "two days of an LS372": compare("two days of an LS372", ls_data, args.repeat)}
    cost_floor(ls_data, results["two days of an LS372"], args.repeat)
    files = g3_files(data)
    first = results["a day of five providers"]["with"]

    if args.mariadb:
        def mariadb_index():
            idx = Index(args.mariadb)
            idx.drop_all()
            return Index(args.mariadb), lambda: None

        try:
            Index(args.mariadb).check()
        except DatabaseUnavailable as exc:
            print(f"P7 first scan, MariaDB: skipped ({exc})")
        else:
            first_my = median([first_scan(mariadb_index, data)[0] for _ in range(args.repeat)])
            base = results["a day of five providers"]["so3g"]
            print(f"{'P7 first scan of the day, MariaDB (x so3g)':<58} {first_my * 1e3:>10.1f} {first_my / base:>8.2f}")
            import MySQLdb

            u = Index(args.mariadb).url
            conn = MySQLdb.connect(host=u.host, port=u.port or 3306, user=u.user or "root", passwd=u.password or "")
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{u.database}`")
            conn.close()
    else:
        print("P7 first scan, MariaDB: not run (give --mariadb URL of a server you own)")

    index, cleanup = sqlite_index()
    sc = Scanner(index, data)
    sc.scan_tree()
    rescans = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        stats = sc.scan_tree()
        rescans.append(time.perf_counter() - t0)
        assert stats.read == 0 and stats.unchanged == len(files)
    rescan = median(rescans)
    print(f"{'P7 re-scan of the unchanged tree (x first scan)':<58} {rescan * 1e3:>10.2f} {rescan / first:>8.4f}")
    index.close()
    cleanup()

    def report(lat: list[float]) -> None:
        print(f"{'P7 new file indexed after close (watchdog), s':<58} {median(lat):>10.2f}   "
              f"max {max(lat):.2f} s")
        for label, m in results.items():
            ratio = m["with"] / m["without"]
            cpu = m["cpu with"] / m["cpu without"]
            print(f"bar: summaries add <= 1.5x to the first scan ({label}) -> {ratio:.2f}x wall "
                  f"{'OK' if ratio <= 1.5 else 'MISSED'}, {cpu:.2f}x CPU {'OK' if cpu <= 1.5 else 'MISSED'} "
                  f"({m['with'] / m['so3g']:.2f}x so3g)")
        print(
              f"bars: re-scan <= 0.05x -> {rescan / first:.4f}x {'OK' if rescan / first <= 0.05 else 'MISSED'}; "
              f"new file <= 2 s -> {max(lat):.2f} s {'OK' if max(lat) <= 2.0 else 'MISSED'}", flush=True)

    latency(data, args.repeat, args.debounce, report)


if __name__ == "__main__":
    main()
