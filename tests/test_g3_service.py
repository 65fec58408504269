"""The scanner service: periodic passes, debounced watchdog events, retries."""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet import defer, reactor, task

from sisock_plugins.g3.index import Index
from sisock_plugins.g3.service import BACKOFF, ScannerService, ScanTarget

from .events import Signal, until
from .g3gen import Aggregator, lakeshore, write_archive

T0 = 1_600_000_000.0
LS = "observatory.LSA22YE.feeds.temperatures"


def sync(f, *args):
    """Run a pass synchronously (the Clock tests have no threads)."""
    return defer.maybeDeferred(f, *args)


def service(tmp_path, clock, **kw):
    target = ScanTarget("g3_reader", str(tmp_path / "data"), kw.pop("db", f"sqlite:///{tmp_path}/i.sqlite"),
                        scan_interval=kw.pop("scan_interval", 3600.0), watch=False, debounce=1.0)
    firsts = []
    svc = ScannerService([target], reactor=clock, run_in_thread=sync, on_first_pass=lambda: firsts.append(1),
                         **kw)
    return svc, firsts


def test_full_passes_at_start_and_every_interval(tmp_path):
    write_archive(tmp_path / "data", T0, 1)
    clock = task.Clock()
    svc, firsts = service(tmp_path, clock, scan_interval=600)
    svc.startService()
    assert [k for k, _ in svc.history] == ["full"] and firsts == [1]
    assert svc.history[0][1].read == 1
    write_archive(tmp_path / "data", T0 + 3600, 1)
    clock.advance(599)
    assert len(svc.history) == 1
    clock.advance(1)
    assert [k for k, _ in svc.history] == ["full", "full"]
    assert (svc.history[1][1].read, svc.history[1][1].unchanged) == (1, 1)
    assert firsts == [1]
    svc.stopService()


def test_events_are_debounced(tmp_path):
    files = write_archive(tmp_path / "data", T0, 2, time_per_file=1800)
    clock = task.Clock()
    svc, _ = service(tmp_path, clock, max_delay=5.0)
    svc.startService()
    t = svc.targets[0]
    assert len(svc.history) == 1
    # two events on one file, 0.5 s apart: one pass, 1 s after the last
    svc.notify(t, [str(files[0])], False)
    clock.advance(0.5)
    svc.notify(t, [str(files[0]), str(files[1])], False)
    clock.advance(0.9)
    assert len(svc.history) == 1
    clock.advance(0.1)
    assert [k for k, _ in svc.history] == ["full", "paths"]
    assert svc.history[-1][1].seen == 2
    # a file written continuously (an event every 0.5 s for 10 s): it is still read,
    # max_delay (5 s) after the first event of each burst
    for _ in range(20):
        svc.notify(t, [str(files[2])], False)
        clock.advance(0.5)
    assert [k for k, _ in svc.history[2:]] == ["paths", "paths"]
    clock.advance(10.0)
    assert len(svc.history) == 4  # quiet: no more passes
    # a directory event asks for a full pass
    svc.notify(t, [], True)
    clock.advance(1.0)
    assert svc.history[-1][0] == "full"
    svc.stopService()


def test_failures_are_retried_with_backoff_and_never_stop_the_service(tmp_path):
    write_archive(tmp_path / "data", T0, 1)
    blocker = tmp_path / "db"
    blocker.write_text("a file where the database's directory should be")
    clock = task.Clock()
    svc, firsts = service(tmp_path, clock, db=f"sqlite:///{blocker}/i.sqlite")
    svc.startService()
    assert svc.history == [] and svc._retry.active()
    waited = []
    for _ in range(len(BACKOFF) + 2):
        waited.append(svc._retry.getTime() - clock.seconds())
        clock.advance(waited[-1])
    assert waited == list(BACKOFF) + [BACKOFF[-1]] * 2
    assert svc.running and firsts == []
    blocker.unlink()  # the database is back
    clock.advance(BACKOFF[-1])
    assert [k for k, _ in svc.history] == ["full"] and svc.history[0][1].read == 1
    assert firsts == [1]
    svc.stopService()


def test_a_missing_data_directory_is_retried_until_it_appears(tmp_path):
    clock = task.Clock()
    svc, firsts = service(tmp_path, clock)
    svc.startService()
    assert svc.history == [] and svc._retry.active()
    write_archive(tmp_path / "data", T0, 1)
    clock.advance(BACKOFF[0])
    assert len(svc.history) == 1 and firsts == [1]
    svc.stopService()


@pytest_twisted.ensureDeferred
async def test_the_watchdog_indexes_new_growing_and_deleted_files(tmp_path):
    data = tmp_path / "data"
    write_archive(data, T0, 1)
    url = f"sqlite:///{tmp_path}/i.sqlite"
    first, passes = Signal(), Signal()
    svc = ScannerService([ScanTarget("g3_reader", str(data), url, watch=True, debounce=0.3)],
                         reactor=reactor, on_first_pass=first, on_pass=passes)
    svc.startService()
    index = Index(url)

    def after_passes(check, what):  # the index changes only in a pass: checked after each one
        return until(check, passes, 30, what)

    try:
        await until(lambda: first.count, first, 30, "the first pass")
        assert set(index.files()) == {str(data / "16000" / "1600000000.g3")}
        # a file appears while the scanner runs (the aggregator rotates)
        agg = Aggregator(data, start_time=T0 + 3600)
        agg.add(lakeshore(4))
        agg.run(T0 + 3600, T0 + 3600 + 600)
        agg.close()
        new = str(agg.files[0])
        await after_passes(lambda: index.file(new) is not None and index.file(new).status == "ok",
                           "the new file in the index")
        ch1 = f"{LS}.Channel_01_T"
        assert {s.name: s.t1 for s in index.field_summaries()}[ch1] == T0 + 4199
        # it grows (appended frames): resumed from where it was
        full = tmp_path / "full.g3"
        os.rename(new, full)
        await after_passes(lambda: index.file(new) is None, "the moved file to leave the index")
        data_bytes = full.read_bytes()
        with open(new, "wb") as f:
            f.write(data_bytes[: len(data_bytes) // 2])
        await after_passes(lambda: index.file(new) is not None and index.file(new).status == "partial",
                           "the half-written file")
        with open(new, "ab") as f:
            f.write(data_bytes[len(data_bytes) // 2:])
        await after_passes(lambda: index.file(new).status == "ok", "the completed file")
        assert any(s.resumed for _, s in svc.history)  # by the watchdog, or a full pass if it came first
        assert {s.name: s.t1 for s in index.field_summaries()}[ch1] == T0 + 4199
        # deleted: gone from the index
        os.unlink(new)
        await after_passes(lambda: index.file(new) is None, "the deleted file to leave the index")
        assert {s.name: s.t1 for s in index.field_summaries()}[ch1] == T0 + 3599
    finally:
        index.close()
        await defer.maybeDeferred(svc.stopService)
