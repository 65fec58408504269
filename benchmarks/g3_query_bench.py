"""P2: g3 node, 24 h x 16 channels at 1 Hz decimated to 1000 points, ready to send.

Run: ``python -m benchmarks.g3_query_bench [--repeat 7] [--dir DIR]``.

Times the node's whole ``get_data`` (:class:`sisock_core.engine.NodeEngine` with the
g3 plugin: index query, frame reads and so3g decoding, the core's decimation to
``max_points`` 1000, conversion to wire lists) over a day of aggregator files
(:mod:`benchmarks.g3_data`; the 16 channels are an LS372's, one block per channel, as
real aggregator files hold them), cold (a fresh reader, empty cache) and on a repeat of
the same window, from the raw frames and from the summaries the scanner writes, against the baseline of performance.md: reading the same files'
frames with ``spt3g.core.G3File``. Bars: <= 2.0x cold, <= 0.1x repeat. References:
so3g ``HKArchive.get_data`` on a pre-scanned archive, and with the scan per query.
Prints medians and ratios. Files are in the OS page cache for every case.

spt3g deserializes a frame's contents lazily, on first access: iterating a
``G3File`` without touching the frames only splits the file into frames. Both are
printed; the ratios use "reading the frames" = iterating every frame of every file
and accessing its contents (``frame["blocks"]`` of data frames), the least any
reader of these frames must do. The lazy split is shown as a second column.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import so3g  # noqa: F401  (before spt3g)
from so3g.hk import HKArchiveScanner
from spt3g import core

from benchmarks.g3_data import DAY, P2_FIELDS, T0, day_archive, g3_files, size_mb
from sisock_core.engine import NodeEngine
from sisock_core.model import NodeContext
from sisock_core.plugins import make_plugin_manager
from sisock_core.summarystore import SummaryStore
from sisock_plugins.g3 import plugin as g3_plugin
from sisock_plugins.g3.index import Index
from sisock_plugins.g3.scanner import Scanner


def median_time(fn, repeat: int, setup=None) -> float:
    times = []
    for _ in range(repeat):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        fn(arg) if setup else fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per case (median)")
    parser.add_argument("--dir", help="where the generated day lives (default: a temp dir, reused)")
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args(argv)

    data = day_archive(args.dir)
    files = g3_files(data)
    print(f"data: {len(files)} files, {size_mb(files):.1f} MB in {data}")
    tmp = tempfile.mkdtemp(prefix="sisock-g3-p2-")
    url = f"sqlite:///{tmp}/index.sqlite"
    Scanner(Index(url), data).scan_tree()

    def baseline() -> None:
        for f in files:
            for frame in core.G3File(f):
                if "blocks" in frame:
                    frame["blocks"]

    def lazy() -> None:
        for f in files:
            for _frame in core.G3File(f):
                pass

    lazy()  # warm the page cache
    base = median_time(baseline, args.repeat)
    split = median_time(lazy, args.repeat)
    print(f"baseline: read every frame with spt3g.core.G3File (contents deserialized): {base * 1e3:.1f} ms; "
          f"frames split only (lazy): {split * 1e3:.1f} ms (medians of {args.repeat})")
    print(f"{'case':<64} {'median ms':>10} {'x G3File':>9} {'x lazy':>8}")

    def row(name: str, dt: float) -> None:
        print(f"{name:<64} {dt * 1e3:>10.1f} {dt / base:>9.2f} {dt / split:>8.2f}")

    def engine(summaries: bool = False) -> NodeEngine:
        ctx = NodeContext(name="g3_reader", description="bench",
                          options=g3_plugin.Options(data_dir=str(data), db=url), state={})
        pm = make_plugin_manager(g3_plugin, name="g3")
        pm.hook.node_start(node=ctx)
        store = SummaryStore(pm.hook.summary_store(node=ctx)) if summaries else None
        return NodeEngine(ctx, pm, "g3", max_points=args.points, summaries=store)

    def query(e: NodeEngine) -> dict:
        ans = e.get_data(P2_FIELDS, T0, T0 + DAY)
        return ans

    check = query(engine())
    n = len(check["data"][P2_FIELDS[0]])
    assert 2 < n <= args.points, n
    cold = median_time(query, args.repeat, setup=engine)
    row(f"P2 cold: get_data 16 ch x 24 h -> {args.points} points (fresh reader)", cold)
    warm_engine = engine()
    query(warm_engine)
    repeat = median_time(lambda: query(warm_engine), args.repeat)
    row("P2 repeat: the same window again (decoded chunks cached)", repeat)

    summ_cold = median_time(query, args.repeat, setup=lambda: engine(True))
    row("P2 cold, with the scanner's summaries (fresh reader and store)", summ_cold)
    summ_engine = engine(True)
    query(summ_engine)
    row("P2 repeat, with the scanner's summaries", median_time(lambda: query(summ_engine), args.repeat))

    reader_only = engine()
    read = median_time(lambda: reader_only.node.state["g3"].read_range(P2_FIELDS, T0, T0 + DAY), args.repeat)
    row("  of which: read_range alone, repeat (index + cache + concatenate)", read)

    sc = HKArchiveScanner()
    for f in files:
        sc.process_file(f)
    arch = sc.finalize()
    row("reference: so3g HKArchive.get_data (archive scanned beforehand)",
        median_time(lambda: arch.get_data(P2_FIELDS, T0, T0 + DAY), args.repeat))

    def rescan_and_get() -> None:
        s = HKArchiveScanner()
        for f in files:
            s.process_file(f)
        s.finalize().get_data(P2_FIELDS, T0, T0 + DAY)

    row("reference: so3g scan of the files + get_data per query", median_time(rescan_and_get, args.repeat))
    print(f"bars: cold <= 2.0x -> {cold / base:.2f}x {'OK' if cold / base <= 2.0 else 'MISSED'} "
          f"({cold / split:.2f}x the lazy split); repeat <= 0.1x -> {repeat / base:.3f}x "
          f"{'OK' if repeat / base <= 0.1 else 'MISSED'} ({repeat / split:.3f}x the lazy split)")


if __name__ == "__main__":
    main()
