"""apex: the cost of choosing files grows with the range asked for, not with the archive.

Run: ``python -m benchmarks.apex_files_bench [--span 86400] [--repeat 200]``.

Writes two archives of empty files named as the APEX archive is
(``targets/APEX_<field>_<start>_<end>.dat``, 7 fields, one file per field per
``span`` seconds): one year and ten years. For each it times, per query of one
field, what ``read_range`` does before opening any file (the directory ``stat``
and the binary search in the name index), for ranges of 1 hour, 1 day and 1 year.
Baseline in the same run: the original node's way (glob every file of the field
and scan all their names) for the same 1-hour query. Also shows the one-time
index build (one listing). Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
from pathlib import Path

from sisock_plugins.apex.plugin import ApexArchive
from tests.archive_generators import utc, write_apex_archive
from benchmarks._timing import median_time

START = utc("2015-01-01T00:00")
YEAR = 365 * 86400.0


def original_choice(targets: str, field: str, start: float, end: float) -> list[str]:
    """The original apex node's ``_build_file_list``: glob all files, scan every name."""
    files = sorted(glob.glob(os.path.join(targets, f"*{field}*.dat")))
    out, add = [], False
    for f in files:
        info = os.path.split(f)[1].replace(".dat", "").split("_")
        fs, fe = int(info[2]), int(info[3])
        if not add:
            if fs <= start <= fe:
                add = True
            if fs <= end <= fe:
                out.append(f)
                break
        elif fs <= end <= fe:
            out.append(f)
            break
        if add:
            out.append(f)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--span", type=float, default=86400.0, help="seconds per file (default 1 day)")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per case (median)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="apex-bench-") as tmp:
        archives = {}
        for years in (1, 10):
            root = Path(tmp) / f"{years}y"
            t0 = time.perf_counter()
            n = len(write_apex_archive(root, START, START + years * YEAR, span=args.span, step=args.span / 24,
                                       names_only=True))
            made = time.perf_counter() - t0
            t0 = time.perf_counter()
            archive = ApexArchive(root / "targets", cache_bytes=0)
            archive.refresh()
            built = time.perf_counter() - t0
            archives[years] = archive
            print(f"{years:>2}-year archive: {n:,} files (written in {made:.1f} s); "
                  f"index built from one listing in {built * 1e3:.1f} ms")

        q = START + 43200.0  # queries start half a day in: inside both archives
        ranges = {"1 h": 3600.0, "1 day": 86400.0, "1 year": YEAR - 86400.0}
        results: dict[tuple[int, str], float] = {}
        print(f"\nfile choice per query (refresh stat + bisect), median of {args.repeat}:")
        print(f"{'archive':>8} {'range':>7} {'files':>6} {'median us':>10}")
        for years, archive in archives.items():
            for label, width in ranges.items():
                def choose(a=archive, w=width):
                    a.refresh()
                    return a.files_for("humidity", q, q + w)

                k = len(choose())
                dt = median_time(choose, args.repeat)
                results[(years, label)] = dt
                print(f"{years:>7}y {label:>7} {k:>6} {dt * 1e6:>10.1f}")

        print("\nbaseline, the original node (glob + scan every name), 1 h query:")
        base = {}
        for years, archive in archives.items():
            targets = str(archive.targets)
            got = original_choice(targets, "humidity", q, q + 3600)
            dt = median_time(lambda: original_choice(targets, "humidity", q, q + 3600),
                             max(5, args.repeat // 20))
            base[years] = dt
            print(f"{years:>7}y {'1 h':>7} {len(got):>6} {dt * 1e6:>10.1f}")

        print("\nratios (medians):")
        print(f"  ours, 1 h query, 10-year / 1-year archive: "
              f"{results[(10, '1 h')] / results[(1, '1 h')]:.2f}x  (flat: cost does not grow with the archive)")
        print(f"  ours, 10-year archive, 1-year / 1-h range: "
              f"{results[(10, '1 year')] / results[(10, '1 h')]:.1f}x  (grows with the files in range)")
        print(f"  original, 1 h query, 10-year / 1-year archive: {base[10] / base[1]:.1f}x")
        print(f"  ours / original, 1 h query in the 10-year archive: {results[(10, '1 h')] / base[10]:.5f}x")


if __name__ == "__main__":
    main()
