"""P1: peak-preserving decimation of 10M float64 samples to 1000 points vs ``numpy.copy``.

Run: ``python -m benchmarks.decimate_bench [--n 10000000] [--repeat 9]``.

Times :func:`sisock_core.decimate.decimate_timeline` and, in the same run, the
baseline ``numpy.copy`` of the input (bar: ratio <= 1.0, see performance.md), plus
references: numpy reshape min+max (values only, equal-count buckets) and
tsdownsample's MinMax when it is installed. Prints medians and ratios.
"""

from __future__ import annotations

import argparse

import numpy as np

from sisock_core.decimate import decimate_timeline
from benchmarks._timing import median_time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="samples (default 10M)")
    parser.add_argument("--points", type=int, default=1000, help="max_points (default 1000)")
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per case (median)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(1)
    n = args.n
    t = 1.5e9 + np.arange(n, dtype=np.float64) * 0.01
    y = np.cumsum(rng.normal(size=n))
    y[n // 3] += 1e6  # a spike that must survive
    y_nan = y.copy()
    y_nan[::997] = np.nan
    y_int = (y * 1000).astype(np.int64)
    t_gaps = t.copy()
    t_gaps[n // 2:] += 86400.0 * 30  # a month-long hole

    baseline = median_time(lambda: np.copy(y), args.repeat)
    print(f"baseline numpy.copy of {n:,} float64: {baseline * 1e3:.2f} ms (median of {args.repeat})")
    print(f"{'case':<48} {'median ms':>10} {'x copy':>8}")

    def row(name: str, fn) -> float:
        dt = median_time(fn, args.repeat)
        print(f"{name:<48} {dt * 1e3:>10.2f} {dt / baseline:>8.2f}")
        return dt

    p = args.points
    ours = row(f"decimate_timeline float64 -> {p} (P1)", lambda: decimate_timeline(t, {"y": y}, max_points=p))
    tt, out = decimate_timeline(t, {"y": y}, max_points=p)
    assert out["y"].size <= p and out["y"].max() == y.max(), "spike lost"
    row(f"decimate_timeline with NaN every 997 -> {p}", lambda: decimate_timeline(t, {"y": y_nan}, max_points=p))
    row(f"decimate_timeline int64 -> {p}", lambda: decimate_timeline(t, {"y": y_int}, max_points=p))
    row(f"decimate_timeline month gap -> {p}", lambda: decimate_timeline(t_gaps, {"y": y}, max_points=p))
    row(f"decimate_timeline 2 fields -> {p}", lambda: decimate_timeline(t, {"a": y, "b": y_nan}, max_points=p))
    row(f"decimate_timeline float64 -> {10 * p}", lambda: decimate_timeline(t, {"y": y}, max_points=10 * p))
    row(f"decimate_timeline min_stride 10 s", lambda: decimate_timeline(t, {"y": y}, min_stride=10.0))

    buckets = p // 2
    m = (n // buckets) * buckets
    row("reference: numpy reshape min+max (values only)",
        lambda: (y[:m].reshape(buckets, -1).min(axis=1), y[:m].reshape(buckets, -1).max(axis=1)))
    try:
        from tsdownsample import MinMaxDownsampler
    except ImportError:
        print("reference: tsdownsample not installed")
    else:
        ds = MinMaxDownsampler()
        row("reference: tsdownsample MinMax (indices only)", lambda: ds.downsample(t, y, n_out=p))
    verdict = "meets" if ours / baseline <= 1.0 else "MISSES"
    print(f"P1: {ours / baseline:.2f}x numpy.copy ({verdict} the <= 1.0x bar)")


if __name__ == "__main__":
    main()
