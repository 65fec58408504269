"""End to end: a live g3 node on a real router, with real files and a real agent.

``sisock up`` runs the router, the hub, a ``g3_reader`` node with ``live = true`` and the
scanner (watchdog). A writer appends frames to .g3 files with so3g, rotating them, as the
OCS aggregator does, while a fake OCS agent (a WAMP client on the OCS port) publishes
the same samples. A consumer queries across the seam before and after a rotation and
after the agent restarts (new session, new provider id in the files), and each answer
equals the union of what was written and published: no gap, no duplicate. The node's
``.live`` topic carries the new samples under the archive's names. Every wait is woken by
an event (the node's live pushes and its ``archive_until`` announcements), not a timer.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import reactor

from sisock_core.client import with_session
from sisock_core.config import load_config
from sisock_core.wamp import node_uri

from .events import Signal, until
from .g3gen import Aggregator, lakeshore, value
from .siteproc import site_up, wait_until
from .test_datafeed_integration import FakeAgent

pytestmark = pytest.mark.integration

LS = "observatory.LSA22YE.feeds.temperatures"
TIMELINE = f"{LS}.temps"
FIELDS = [f"{LS}.Channel_{i:02d}_T" for i in (1, 4)]
RATE = 5.0  # samples per second


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("g3live")
    data = tmp / "data"
    data.mkdir()
    nodes = (f'[nodes.g3_reader]\nplugin = "g3"\ndata_dir = "{data}"\nlive = true\n'
             'debounce = 0.2\nscan_interval = 3600\n')
    with site_up(tmp, nodes, log_tail=60) as (path, proc):
        wait_until(lambda: "scanner is ready" in proc.log_text(), timeout=60, what="the scanner's first pass")
        yield load_config(path), proc, data


class Agent(FakeAgent):
    """The LS372-like agent, publishing the samples g3gen's writer writes (same values)."""

    def __init__(self, cfg, session_id: str) -> None:
        super().__init__(cfg, "LSA22YE", "msgpack")
        self.session_id = session_id
        self.published: list[float] = []

    def feed_data(self, feed: str) -> dict:
        return {**super().feed_data(feed), "session_id": self.session_id}

    def send(self, provider, t: np.ndarray) -> None:
        for chunk in np.array_split(t, max(1, t.size // 5)):  # about one message per second of data
            msg = {name: {"block_name": name, "timestamps": chunk.tolist(),
                          "data": {f: value(f, kind, chunk).tolist() for f, kind in fields.items()}}
                   for name, fields in provider.blocks.items()}
            self.publish("temperatures", msg)
            self.published.extend(chunk.tolist())


def grid(t0: float, t1: float) -> np.ndarray:
    return np.arange(math.ceil(t0 * RATE), math.ceil(t1 * RATE)) / RATE


async def settle(session, moved: Signal, expected_final: float, expected_last: float, t0: float) -> dict:
    """The answer once its seam is at the files' end (the scanner has indexed them and the
    node has seen it) and its last sample is the last one published (the feed is in);
    asked again at each ``moved``: the node's live push or its ``archive_until`` announcement."""

    async def settled():
        ans = await session.call(node_uri("g3_reader", "get_data"), FIELDS, t0 - 1, 0)
        tl = ans["timeline"].get(TIMELINE)
        if tl and tl["finalized_until"] is not None and abs(tl["finalized_until"] - expected_final) < 1e-4 \
                and abs(tl["t"][-1] - expected_last) < 1e-4:
            return ans
        return None

    return await until(settled, moved, 60, f"the seam to reach {expected_final} and the feed {expected_last}")


def check_union(ans: dict, written: list[float], published: list[float]) -> None:
    union = np.unique(np.round(np.concatenate([written, published]) * RATE)) / RATE
    t = np.asarray(ans["timeline"][TIMELINE]["t"])
    assert t.size == union.size, f"{t.size} samples served, {union.size} written or published"
    np.testing.assert_allclose(t, union, rtol=0, atol=1e-5)
    assert np.all(np.diff(t) > 0)
    for f in FIELDS:
        np.testing.assert_allclose(ans["data"][f], value(f.rsplit(".", 1)[1], "float", union), rtol=1e-9)  # 0.2 s apart: 4e-7


@pytest_twisted.ensureDeferred
async def test_one_series_across_the_seam_rotation_and_agent_restart(site):
    cfg, proc, data = site
    start = math.floor(time.time()) - 120.0
    agg = Aggregator(data, time_per_file=20, frame_length=5, start_time=start, session_id=77)
    provider = agg.add(lakeshore(4, rate=RATE))
    written: list[float] = []

    def write(t0: float, t1: float) -> None:
        agg.run(t0, t1)
        agg.writer.Flush()
        written.extend(grid(t0, t1).tolist())

    agent = await Agent(cfg, "1.0").start()
    pushed: list = []
    got_push = Signal()
    announced: list = []
    moved = Signal()
    try:
        async def work(session):
            await session.subscribe(lambda payload: (pushed.append(payload), got_push(), moved()),
                                    node_uri("g3_reader", "live"))
            await session.subscribe(lambda payload: (announced.append(payload), moved()),
                                    node_uri("g3_reader", "archive_until"))
            # the agent publishes a minute; the aggregator has written the first 40 s (two files)
            agent.send(provider, grid(start, start + 60))
            write(start, start + 40)
            first = await settle(session, moved, start + 40 - 1 / RATE, agent.published[-1], start)
            # a rotation: the next file holds the rest of the minute
            write(start + 40, start + 60)
            second = await settle(session, moved, start + 60 - 1 / RATE, agent.published[-1], start)
            # the agent restarts (new session; the files get a new provider id) and goes on
            await agent.stop()
            agent2 = await Agent(cfg, "2.0").start()
            try:
                new = agg.restart(provider, start + 60)
                agent2.send(new, grid(start + 60, start + 80))
                agg.run(start + 60, start + 70)
                agg.writer.Flush()
                written.extend(grid(start + 60, start + 70).tolist())
                third = await settle(session, moved, start + 70 - 1 / RATE, agent2.published[-1], start)
            finally:
                await agent2.stop()
            # the node announced each move of the archive's end (the latest final time)
            await until(lambda: [a["archive_until"] for a in announced if a["node"] == "g3_reader"
                                 and abs(a["archive_until"] - (start + 70 - 1 / RATE)) < 1e-4],
                        moved, 30, "the node to announce the archive's end")
            await until(lambda: sum(len(p["timeline"].get(TIMELINE, {}).get("t", [])) for p in pushed) >= 400,
                        got_push, 60, "400 samples pushed on the live topic")
            return first, second, third, agent2.published

        first, second, third, published2 = await with_session(reactor, cfg, work, timeout=120)
    finally:
        if agent.session is not None and agent.session.is_attached():
            await agent.stop()
        agg.close()
    published = agent.published
    check_union(first, written[: len(grid(start, start + 40))], published)
    assert first["timeline"][TIMELINE]["finalized_until"] == pytest.approx(start + 40 - 0.2, abs=1e-5)
    check_union(second, written[: len(grid(start, start + 60))], published)
    check_union(third, written, published + published2)
    assert len(agg.files) == 4  # rotated every 20 s
    # the live topic: every published sample once, under the archive's field names, in order
    got = [t for p in pushed for t in p["timeline"].get(TIMELINE, {}).get("t", [])]
    np.testing.assert_allclose(got, published + published2, rtol=0, atol=1e-5)
    assert set(pushed[0]["data"]) == {f"{LS}.Channel_{i:02d}_T" for i in range(1, 5)}
    log = proc.log_text()
    assert "agent observatory.LSA22YE restarted (session 1.0 -> 2.0)" in log
    assert "g3_reader: answers join the archive" in log
