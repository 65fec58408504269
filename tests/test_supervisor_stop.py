"""``sisock up`` stopping its children: one that ignores SIGTERM is killed after the grace
period, and the supervisor says so at warn; one that stops in time is not mentioned."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from sisock_core.logs import READY_MARKER
from sisock_core.supervisor import SupervisedChild


@pytest.mark.parametrize("stubborn", [True, False])
@pytest_twisted.ensureDeferred
async def test_a_child_still_running_after_the_grace_period_is_killed_and_logged(tmp_path, stubborn):
    # a real child process: site.py runs this before the CLI, so it holds the child there
    (tmp_path / "sitecustomize.py").write_text(
        "import signal, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if stubborn else "")
        + f"print({READY_MARKER + ' child'!r}, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    child = SupervisedChild("stubborn child", ["--help"], reactor=reactor, env=env, restart=False)
    events: list = []
    globalLogPublisher.addObserver(events.append)
    try:
        child.start()
        await child.ready.addTimeout(60, reactor)
        await child.stop(grace=0.5).addTimeout(30, reactor)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert not child.running
    said = [e for e in events if "did not stop within" in formatEvent(e)]
    if stubborn:
        assert [formatEvent(e) for e in said] == ["stubborn child did not stop within 0.5 s of SIGTERM; killing it"]
        assert said[0]["log_level"] == LogLevel.warn
    else:
        assert said == []
