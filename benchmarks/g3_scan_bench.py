"""P7: the g3 scanner: first scan of a day of aggregator files, re-scan, new-file latency.

Run: ``python -m benchmarks.g3_scan_bench [--repeat 5] [--dir DIR] [--no-mariadb]``.

Times, over a day of aggregator output (:mod:`benchmarks.g3_data`, 24 files):

* the first scan into a new index (:meth:`Scanner.scan_tree`: read every frame,
  write feeds/fields/frames/summary rows), on SQLite and on the local MariaDB, against
  the baseline of performance.md: so3g ``HKArchiveScanner.process_file`` over the same
  files (+ ``finalize``). Bar: <= 1.5x.
* a re-scan of the unchanged tree (stat only, no file opened). Bar: <= 0.05x of the
  first scan.
* new-file latency: the scanner service with its watchdog (default 1 s debounce)
  running, a file is written and closed in the data directory; the time until the
  index holds it. Bar: <= 2 s.

Prints medians (and the worst latency). Files are in the OS page cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import so3g  # noqa: F401  (before spt3g)
from so3g.hk import HKArchiveScanner

from benchmarks.g3_data import day_archive, g3_files, size_mb
from sisock_plugins.g3.index import DatabaseUnavailable, Index
from sisock_plugins.g3.scanner import Scanner


def median(times: list[float]) -> float:
    return statistics.median(times)


def first_scans(url_factory, data, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        index, cleanup = url_factory()
        t0 = time.perf_counter()
        stats = Scanner(index, data).scan_tree()
        times.append(time.perf_counter() - t0)
        assert stats.read == stats.seen and stats.errors == 0, stats
        index.close()
        cleanup()
    return times


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
    parser.add_argument("--dir", help="where the generated day lives (default: a temp dir, reused)")
    parser.add_argument("--no-mariadb", action="store_true", help="skip the MariaDB case")
    parser.add_argument("--mariadb", default="mysql://root@127.0.0.1:3306/sisock_bench_p7",
                        help="MariaDB URL for that case (the database is dropped afterwards)")
    parser.add_argument("--debounce", type=float, default=1.0, help="watchdog quiet period (default 1 s)")
    args = parser.parse_args(argv)

    data = day_archive(args.dir)
    files = g3_files(data)
    print(f"data: {len(files)} files, {size_mb(files):.1f} MB in {data}")

    def so3g_scan() -> None:
        sc = HKArchiveScanner()
        for f in files:
            sc.process_file(f)
        sc.finalize()

    so3g_scan()  # page cache
    base_times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        so3g_scan()
        base_times.append(time.perf_counter() - t0)
    base = median(base_times)
    print(f"baseline: so3g HKArchiveScanner.process_file over the {len(files)} files: {base * 1e3:.1f} ms "
          f"(median of {args.repeat})")
    print(f"{'case':<58} {'median ms':>10} {'ratio':>8}")

    def sqlite_index():
        tmp = tempfile.mkdtemp(prefix="sisock-g3-p7-")
        return Index(f"sqlite:///{tmp}/index.sqlite"), lambda: shutil.rmtree(tmp, ignore_errors=True)

    first = median(first_scans(sqlite_index, data, args.repeat))
    print(f"{'P7 first scan, SQLite (x so3g)':<58} {first * 1e3:>10.1f} {first / base:>8.2f}")

    if not args.no_mariadb:
        def mariadb_index():
            idx = Index(args.mariadb)
            idx.drop_all()
            return Index(args.mariadb), lambda: None

        try:
            Index(args.mariadb).check()
        except DatabaseUnavailable as exc:
            print(f"P7 first scan, MariaDB: skipped ({exc})")
        else:
            first_my = median(first_scans(mariadb_index, data, args.repeat))
            print(f"{'P7 first scan, MariaDB (x so3g)':<58} {first_my * 1e3:>10.1f} {first_my / base:>8.2f}")
            import MySQLdb

            u = Index(args.mariadb).url
            conn = MySQLdb.connect(host=u.host, port=u.port or 3306, user=u.user or "root", passwd=u.password or "")
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{u.database}`")
            conn.close()

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
        print(f"bars: first scan <= 1.5x -> {first / base:.2f}x {'OK' if first / base <= 1.5 else 'MISSED'}; "
              f"re-scan <= 0.05x -> {rescan / first:.4f}x {'OK' if rescan / first <= 0.05 else 'MISSED'}; "
              f"new file <= 2 s -> {max(lat):.2f} s {'OK' if max(lat) <= 2.0 else 'MISSED'}", flush=True)

    latency(data, args.repeat, args.debounce, report)


if __name__ == "__main__":
    main()
