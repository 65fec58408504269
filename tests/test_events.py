"""The test helper :mod:`tests.events`: woken by the event, a deadline naming what did not happen."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from .events import Signal, until


@pytest_twisted.ensureDeferred
async def test_until_times_out_naming_what_did_not_happen():
    signal = Signal()
    with pytest.raises(AssertionError, match=r"timed out after 0.3s waiting for the thing \(last: False; 0 events"):
        await until(lambda: False, signal, 0.3, "the thing")
    assert signal._waiting == []


@pytest_twisted.ensureDeferred
async def test_until_is_woken_by_the_event_and_checks_again():
    signal, box = Signal(), []
    reactor.callLater(0.1, lambda: (box.append(1), signal()))
    assert await until(lambda: box, signal, 30, "the box") == [1]
    assert signal.count == 1 and signal._waiting == []


@pytest_twisted.ensureDeferred
async def test_an_event_during_an_async_check_is_not_missed():
    signal, checks = Signal(), []

    async def check():
        checks.append(1)
        if len(checks) == 1:
            signal()  # happens while the first check runs
            return False
        return True

    assert await until(check, signal, 30, "the second check") is True
    assert len(checks) == 2
