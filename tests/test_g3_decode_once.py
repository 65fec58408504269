"""Decode once: concurrent g3 reads of the same files share one decode, and the frame cache's
bound counts the arrays requests in flight use as well as those at rest."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sisock_core import cancel
from sisock_plugins.g3 import reader as reader_mod
from sisock_plugins.g3.reader import FrameCache, HKReader, Lease

from .test_g3_reader import LS, T0, scanned


def arr(n_bytes: int) -> np.ndarray:
    return np.zeros((n_bytes - 200) // 8)


def test_arrays_in_use_are_not_evicted_and_count_until_their_request_ends():
    cache = FrameCache(3000)
    lease = Lease()
    a, b = arr(1000), arr(1000)
    cache.put("a", a, lease)
    cache.put("b", b, lease)
    cache.put("c", arr(1000))
    cache.put("d", arr(1000))  # over the bound: "c" goes (nobody uses it), not "a"
    assert cache.get("a") is a and cache.get("c") is None and cache.get("d") is not None
    assert cache.in_use == 2000 and cache.bytes == 3000
    big = arr(5000)  # too large to cache: it counts while in use
    cache.put("big", big, lease)
    assert cache.get("big") is None and cache.held == 5000
    assert cache.bytes == 2000  # "d" evicted to make room; "a" and "b" are in use
    cache.release(lease)
    assert cache.in_use == 0 and cache.held == 0 and cache.bytes <= 3000


def test_a_new_request_waits_while_the_arrays_in_use_fill_the_bound():
    cache = FrameCache(3000)
    first = Lease()
    cache.put("a", arr(4000), first)  # too large: held
    assert cache.in_use >= cache.max_bytes
    cache.admit(first)  # a request already using arrays never waits (no circular wait)
    cache.admit(Lease(small=True))  # nor a light call (bounded by the lanes' threshold)
    admitted = threading.Event()
    second = Lease()
    t = threading.Thread(target=lambda: (cache.admit(second), admitted.set()))
    t.start()
    assert not admitted.wait(0.3)
    cache.release(first)
    assert admitted.wait(10)
    t.join()


def test_waiting_for_the_bound_stops_when_the_caller_gives_up():
    cache = FrameCache(3000)
    cache.put("a", arr(4000), Lease())
    token = cancel.CancelToken()
    token.cancel()
    with cancel.scope(token), pytest.raises(cancel.Cancelled):
        cache.admit(Lease(), cancel.check)


def test_concurrent_reads_of_the_same_files_decode_each_file_once(tmp_path, monkeypatch):
    files, index = scanned(tmp_path)
    reads: list[str] = []
    gate = threading.Event()
    real = reader_mod.FrameReader

    class Gated(real):
        def read_many(self, requests):
            reads.append(self.path)
            gate.wait(30)
            return super().read_many(requests)

    monkeypatch.setattr(reader_mod, "FrameReader", Gated)
    reader = HKReader(index)
    names = [f"{LS}.Channel_0{i}_T" for i in range(1, 5)]
    results: list = []

    def read():
        results.append(reader.read_range(names, T0, T0 + 7200))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    # one thread decodes the first file; the other three wait for it
    deadline = threading.Event()
    for _ in range(600):
        with reader._lock:
            waiting = [f[1] for f in reader._flights.values()]
        if waiting == [4]:
            break
        deadline.wait(0.05)
    assert waiting == [4], waiting
    assert len(reads) == 1
    gate.set()
    for t in threads:
        t.join(60)
    assert sorted(reads) == sorted(set(reads)), "a file was decoded more than once"
    assert set(reads) == {str(f) for f in files}
    assert len(results) == 4
    for other in results[1:]:
        for name, tl in results[0].items():
            np.testing.assert_array_equal(other[name].t, tl.t)
            for k, v in tl.data.items():
                np.testing.assert_array_equal(other[name].data[k], v)
    assert reader.cache.in_use == 0


def test_a_read_waiting_for_another_requests_decode_stops_when_its_caller_gives_up(tmp_path, monkeypatch):
    _, index = scanned(tmp_path)
    gate = threading.Event()
    started = threading.Event()
    real = reader_mod.FrameReader

    class Gated(real):
        def read_many(self, requests):
            started.set()
            gate.wait(30)
            return super().read_many(requests)

    monkeypatch.setattr(reader_mod, "FrameReader", Gated)
    reader = HKReader(index)
    names = [f"{LS}.Channel_01_T"]
    decoding = threading.Thread(target=reader.read_range, args=(names, T0, T0 + 600))
    decoding.start()
    assert started.wait(30)
    token = cancel.CancelToken()
    outcome: list = []

    def waiter():
        with cancel.scope(token):
            try:
                reader.read_range(names, T0, T0 + 600)
            except cancel.Cancelled as exc:
                outcome.append(exc)

    w = threading.Thread(target=waiter)
    w.start()
    for _ in range(600):
        with reader._lock:
            if [f[1] for f in reader._flights.values()] == [2]:
                break
        started.wait(0.05)
    token.cancel()
    w.join(10)
    assert not w.is_alive() and outcome, "the waiting read did not stop"
    gate.set()
    decoding.join(30)
