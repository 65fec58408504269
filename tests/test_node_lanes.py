"""A data node's lanes: light calls are served while heavy ones fill the heavy lane; calls
abandoned while queued never start; stopping the node cancels the calls in progress."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sisock_core import Field, PluginSpec, Timeline, cancel, hookimpl, lanes

pytest_plugins = ["sisock_core.testing"]

T0 = 1_600_000_000.0
HOUR = 3600.0
DAY = 86400.0
FIELDS = [f"ch{i:02d}" for i in range(16)]


def test_the_lane_of_a_call_follows_its_raw_field_seconds():
    def lane(fields, span, **kw):
        kw.setdefault("summarized", True)
        return lanes.lane_of_get_data(fields, T0, T0 + span, clock=lambda: T0 + 30 * DAY, **kw)

    assert lane(FIELDS, HOUR) == lanes.LIGHT
    assert lane(FIELDS * 1, HOUR, summarized=False) == lanes.LIGHT
    assert lane(FIELDS, 7 * DAY) == lanes.HEAVY  # full resolution: summaries cannot answer
    assert lane(FIELDS, 7 * DAY, max_points=1000) == lanes.LIGHT  # from the summaries
    assert lane(FIELDS, 7 * DAY, max_points=1000, summarized=False) == lanes.HEAVY
    assert lane(FIELDS, 7 * DAY, min_stride=1.0) == lanes.HEAVY  # finer than the finest tier
    assert lane(FIELDS, 7 * DAY, node_max_points=500) == lanes.LIGHT  # the node's own cap decimates
    assert lane(FIELDS[:1], 3 * DAY, summarized=False) == lanes.HEAVY
    # wrong arguments fail at once with an error naming them: no need for the heavy lane
    assert lane(42, 7 * DAY) == lanes.LIGHT
    assert lanes.lane_of_get_data(FIELDS, "yesterday", 0) == lanes.LIGHT


def test_heavy_threads_yield_the_cpu_to_the_others():
    import os

    seen = {}

    def worker():
        tid = threading.get_native_id()
        seen["before"] = os.getpriority(os.PRIO_PROCESS, tid)
        lanes.lower_thread_priority()
        lanes.lower_thread_priority()  # once per thread
        seen["after"] = os.getpriority(os.PRIO_PROCESS, tid)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["after"] == min(19, seen["before"] + lanes.HEAVY_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == seen["before"]  # not this thread


class Blocking:
    """Reads longer than a day go on (checking between 'chunks') until released."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = 0
        self.running = 0
        self.cancelled = 0
        self.changed = threading.Condition(self.lock)
        self.release = threading.Event()

    @hookimpl
    def sisock_plugin_spec(self):
        return PluginSpec(default_node_name="blocking", description="blocking archive")

    @hookimpl
    def list_fields(self, start, end):
        return [Field(f, "tl") for f in FIELDS]

    @hookimpl
    def read_range(self, fields, start, end):
        if end - start > DAY:
            with self.changed:
                self.started += 1
                self.running += 1
                self.changed.notify_all()
            try:
                while not self.release.wait(0.01):
                    cancel.check()
            except cancel.Cancelled:
                with self.changed:
                    self.cancelled += 1
                    self.changed.notify_all()
                raise
            finally:
                with self.changed:
                    self.running -= 1
                    self.changed.notify_all()
        t = np.arange(start, min(end, start + 10))
        return {"tl": Timeline(t, {f: np.ones(t.size) for f in fields if f in FIELDS})}

    def wait(self, predicate, timeout=30.0):
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), timeout), \
                f"started {self.started}, running {self.running}, cancelled {self.cancelled}"


def _call_later(node, *args):
    """Start ``get_data(*args)`` on the node's reactor; returns a dict that gets its Deferred."""
    box: dict = {}
    done = threading.Event()

    def start():
        box["d"] = node.server.get_data(*args)
        box["d"].addBoth(lambda r: (box.setdefault("result", r), done.set(), None)[2])

    node.server.reactor.callFromThread(start)
    box["done"] = done
    return box


def test_a_light_call_is_answered_while_heavy_calls_fill_their_lane(sisock_node):
    plugin = Blocking()
    node = sisock_node(plugin, name="lanes", timeout=20)
    heavy = [_call_later(node, FIELDS, T0, T0 + 7 * DAY + i) for i in range(6)]
    plugin.wait(lambda p: p.running == lanes.HEAVY_THREADS)
    # without lanes this call would wait behind the six heavy ones, which never end unless released
    answer = node.get_data(FIELDS, T0, T0 + HOUR)
    assert len(answer["timeline"]["tl"]["t"]) == 10
    assert plugin.started == lanes.HEAVY_THREADS, "heavy calls ran beyond the heavy lane's threads"
    # the callers give up: the running calls stop at their next check, the queued ones never start
    for box in heavy:
        node.server.reactor.callFromThread(box["d"].cancel)
    for box in heavy:
        assert box["done"].wait(20)
    plugin.wait(lambda p: p.cancelled == lanes.HEAVY_THREADS and p.running == 0)
    done = threading.Event()
    node.server.reactor.callFromThread(done.set)  # queued calls have had their turn
    assert done.wait(20)
    assert plugin.started == lanes.HEAVY_THREADS
    plugin.release.set()


def test_stopping_a_node_cancels_the_calls_in_progress(sisock_node):
    plugin = Blocking()
    node = sisock_node(plugin, name="stopping", timeout=20)
    calls = [_call_later(node, FIELDS, T0, T0 + 7 * DAY + i) for i in range(3)]
    plugin.wait(lambda p: p.running == lanes.HEAVY_THREADS)
    node.stop()  # returns once the pools are stopped (their threads joined)
    assert plugin.running == 0 and plugin.cancelled == lanes.HEAVY_THREADS
    for box in calls:
        assert box["done"].wait(20)
        assert "stopping" in str(getattr(box["result"], "value", box["result"]))


def test_identical_calls_in_flight_share_one_run_until_their_last_caller_leaves(sisock_node):
    plugin = Blocking()
    node = sisock_node(plugin, name="shared", timeout=20)
    same = [_call_later(node, FIELDS, T0, T0 + 7 * DAY) for _ in range(3)]
    plugin.wait(lambda p: p.running == 1)
    other = _call_later(node, FIELDS[:1], T0, T0 + 7 * DAY)  # different arguments: its own run
    plugin.wait(lambda p: p.running == 2)
    node.server.reactor.callFromThread(same[0]["d"].cancel)  # one caller leaves: the others still wait
    assert same[0]["done"].wait(20)
    node.server.reactor.callFromThread(other["d"].cancel)
    plugin.wait(lambda p: p.cancelled == 1 and p.running == 1)  # only the other run stopped
    plugin.release.set()
    for box in same[1:]:
        assert box["done"].wait(20)
        assert len(box["result"]["data"]) == 16
    assert plugin.started == 2
    assert same[1]["result"] is same[2]["result"]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))
