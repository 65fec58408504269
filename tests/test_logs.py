"""Log lines: one per event, one timestamp, the component, the child's own level and namespace.

Pure tests of :mod:`sisock_core.logs` (text and JSON formats) and :mod:`sisock_core.logrelay`
(a child's JSON line re-emitted by ``sisock up``); the whole-site checks are in
tests/test_site_integration.py.
"""

from __future__ import annotations

import json
import os
import re

from twisted.logger import Logger, LogLevel, LogPublisher

from sisock_core import logs
from sisock_core.logrelay import parse_child_line, relay_line

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def _events(emit) -> list[dict]:
    """The events ``emit(logger)`` logs, as Twisted builds them."""
    publisher = LogPublisher()
    seen: list[dict] = []
    publisher.addObserver(seen.append)
    emit(Logger(namespace="sisock_core.hub.Hub", observer=publisher))
    return seen


def test_text_line_has_one_timestamp_the_component_namespace_and_level():
    (event,) = _events(lambda log: log.warn("data node {name} added", name="lakeshore"))
    event["log_time"] = 1800000000.25
    line = logs.format_text({**event, logs.COMPONENT_KEY: "hub"})
    assert line == "2027-01-15T08:00:00.250Z [hub] [sisock_core.hub.Hub#warn] data node lakeshore added\n"
    assert len(STAMP.findall(line)) == 1


def test_json_line_has_the_fixed_keys_and_named_fields():
    (event,) = _events(lambda log: log.info("{n} fields; {message}", n=5, message="a clash"))
    out = json.loads(logs.format_json({**event, logs.COMPONENT_KEY: "node w"}))
    assert out["level"] == "info" and out["component"] == "node w"
    assert out["namespace"] == "sisock_core.hub.Hub" and out["message"] == "5 fields; a clash"
    assert out["n"] == 5 and out["_message"] == "a clash"  # a field named like a fixed key
    assert not [k for k in out if k.startswith("log_")]


def test_a_childs_json_line_is_re_emitted_once_with_its_own_level_namespace_and_time():
    def emit(log):
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("query on {node} failed", node="apex")

    (event,) = _events(emit)
    child_line = logs.format_json(event).rstrip("\n")
    assert "\n" not in child_line  # one line per event, traceback included
    seen: list[dict] = []
    relay_line("node apex", child_line, publish=seen.append)
    (again,) = seen
    assert again["log_level"] == LogLevel.critical and again["log_namespace"] == "sisock_core.hub.Hub"
    assert abs(again["log_time"] - event["log_time"]) < 0.001
    assert again["node"] == "apex"
    text = logs.format_text(again)
    first, *rest = text.splitlines()
    assert first.endswith("[node apex] [sisock_core.hub.Hub#critical] query on apex failed")
    assert len(STAMP.findall(text)) == 1
    assert "ZeroDivisionError" in text and all(line.startswith("\t") for line in rest)


def test_other_child_output_is_kept_as_a_warning_of_the_childs_stderr():
    seen: list[dict] = []
    relay_line("scanner", "Fatal Python error: Segmentation fault", publish=seen.append)
    relay_line("scanner", "{not json", publish=seen.append)
    assert [e["log_level"] for e in seen] == [LogLevel.warn, LogLevel.warn]
    assert logs.format_text(seen[0]).split(" ", 1)[1] == \
        "[scanner] [scanner.stderr#warn] Fatal Python error: Segmentation fault\n"
    assert parse_child_line('{"a": 1}') is None  # JSON, but not a log line of ours


def test_connection_attempts_are_not_warnings():
    publisher = LogPublisher()
    log = Logger(namespace="autobahn.twisted.component.Component", observer=publisher)
    fmt = 'trying transport {transport_idx} ("{transport_url}") using connect delay {transport_delay}'
    events: list[dict] = []
    publisher.addObserver(events.append)
    log.warn(fmt, transport_idx=0, transport_url="wss://127.0.0.1:8080/", transport_delay=0)
    log.warn(fmt, transport_idx=0, transport_url="wss://127.0.0.1:8080/", transport_delay=2.1)
    for e in events:
        logs._quiet_connection_attempts(e)
    assert [e["log_level"] for e in events] == [LogLevel.debug, LogLevel.info]


def test_under_systemd_journald_gets_the_level_as_priority_and_keeps_its_own_time(tmp_path):
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        assert logs.to_journal(stream, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logs.to_journal(stream, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not logs.to_journal(stream, env={})
    (event,) = _events(lambda log: log.error("node {name} stopped", name="w"))
    line = logs.format_journal({**event, logs.COMPONENT_KEY: "up"})
    assert line == "<3>[up] [sisock_core.hub.Hub#error] node w stopped\n"


def test_web_access_lines_leave_the_time_to_the_log_line():
    from twisted.web.test.requesthelper import DummyRequest

    request = DummyRequest([b"query"])
    request.method, request.uri, request.clientproto = b"POST", b"/query", b"HTTP/1.1"
    request.code, request.sentLength = 200, 157
    line = logs.access_log_line("[29/Nov/2026:04:41:38 +0000]", request)  # (as twisted.web gives it)
    assert "29/Nov/2026" not in line and '"POST /query HTTP/1.1" 200 157' in line, line


def test_a_bad_log_format_in_the_environment_is_refused():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "sisock_core.cli", "check"], capture_output=True, text=True,
                         env={**os.environ, "SISOCK_LOG_FORMAT": "xml"}, timeout=60)
    assert out.returncode == 2 and "$SISOCK_LOG_FORMAT: log format 'xml': use one of text, json" in out.stderr


def test_an_event_logged_while_a_line_is_being_written_does_not_deadlock():
    """What a signal handler does: Twisted's SIGINT handler logs on the main thread, between
    two bytecodes of a write already holding the writer's lock (it once hung ``sisock up``)."""
    import io
    import threading

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            if text.startswith("outer") and writer is not None:
                writer({"text": "inner\n"})  # arrives mid-write, as a signal would
            return super().write(text)

    writer = None
    stream = Stream()
    writer = logs._Writer(stream, lambda event: event["text"])
    worker = threading.Thread(target=writer, args=({"text": "outer\n"},), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the nested log event deadlocked on the writer's lock"
    assert stream.getvalue().splitlines() == ["inner", "outer"]
