"""Hostile arguments to every WAMP procedure of a running site, over real sessions.

Hypothesis draws the arguments (any value msgpack carries: NaN and infinities, huge and
negative numbers, unicode, bytes, nested lists and maps, wrong arity, unknown keyword
arguments) for:

- the weather node ``apex_archive`` and the datafeed node ``lakeshore``:
  ``get_fields(start, end)`` and ``get_data(field, start, end, min_stride, max_points=)``,
  as the consumer user (what Grafana's bridge and old consumers are);
- the hub: ``data_node.add(name, description, session_id)``,
  ``data_node.subtract(name, session_id)`` (as the server user, the only one allowed)
  and ``consumer.get_data_node()``.

Every call ends with an answer of the documented shape or a WAMP error carrying a
message; none hangs; afterwards every process is the same one, answers normally and
has bounded memory, and the hub lists exactly the nodes it listed before.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sisock_core.wamp import HUB_ADD, HUB_LIST, HUB_SUBTRACT, node_uri
from tests.events import until_hub_lists
from tests.helpers_router import in_reactor

from .support import joined, one_pid, record, rss_mib

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

#: Memory a node or the hub may gain over the module (MiB).
RSS_BOUND_MIB = 80.0
CALL_TIMEOUT = 30.0
STATS: dict[str, Any] = {"calls": 0, "errors": {}, "answers": 0}

ROLES = ("node apex_archive", "node lakeshore", "hub")


@pytest.fixture(scope="module")
def wamp(shared_site):
    """(site, consumer session, server session, pids, RSS before)."""
    cfg, secrets = shared_site.cfg, shared_site.secrets
    consumer = in_reactor(joined, cfg, "simonsobs", secrets["consumer"])
    server = in_reactor(joined, cfg, cfg.router.wamp_user, secrets["server"])
    pids = {role: one_pid(shared_site.path, role) for role in ROLES}
    rss = {role: rss_mib(pid) for role, pid in pids.items()}
    listing = in_reactor(consumer.call, HUB_LIST)
    yield shared_site, consumer, server, pids, rss, listing
    for s in (consumer, server):
        if s.is_attached():
            in_reactor(s.leave)
    after = {role: rss_mib(pid) for role, pid in pids.items() if _alive(pid)}
    record("WAMP fuzz", f"{STATS['calls']} calls: {STATS['answers']} answers, errors "
                        f"{dict(sorted(STATS['errors'].items()))}; RSS MiB " + ", ".join(
                            f"{r} {rss[r]:.0f}->{after.get(r, float('nan')):.0f}" for r in ROLES))


def _alive(pid: int) -> bool:
    try:
        rss_mib(pid)
        return True
    except OSError:
        return False


# -- values a peer can put on the wire -------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)  # msgpack needs valid UTF-8
_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-2**63, 2**64 - 1),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308]),
    _text, st.binary(max_size=20),
    st.sampled_from(["apex_humidity", "apex_radiometer", "channel_01_t", "", " ", "*", "..", "now",
                     "2017-07-20T00:00:00Z", "💥", "\u0000", "a" * 10_000]),
)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(_text, c, max_size=4),
                       max_leaves=15)
_times = st.one_of(st.integers(-2**63, 2**64 - 1), st.floats(),
                   st.sampled_from([1, 0, -1, -3600, 1499990400, 1501200000, 10**12, -10**12]), _values)
_fields = st.one_of(
    st.lists(st.sampled_from(["apex_humidity", "apex_radiometer", "apex_windspeed", "channel_01_t",
                              "channel_02_r", "missing"]) | _text, max_size=8),
    _values,
)


@st.composite
def _get_data_args(draw):
    args = [draw(_fields), draw(_times), draw(_times)]
    if draw(st.booleans()):
        args.append(draw(st.none() | st.floats() | st.integers(-10**6, 10**18) | _values))
    kwargs = {}
    if draw(st.booleans()):
        kwargs["max_points"] = draw(st.none() | st.integers(-2**63, 2**63 - 1) | st.floats() | _values)
    if draw(st.integers(0, 9)) == 0:
        kwargs[draw(_text.filter(lambda k: k not in ("max_points", "options")))] = draw(_values)
    if draw(st.integers(0, 9)) == 0:  # wrong arity
        args = args[: draw(st.integers(0, 2))] if draw(st.booleans()) else args + draw(
            st.lists(_values, min_size=1, max_size=3))
    return args, kwargs


@st.composite
def _get_fields_args(draw):
    n = draw(st.sampled_from([2, 2, 2, 0, 1, 3, 5]))
    return [draw(_times) for _ in range(n)], {}


async def _call(session, uri: str, args: list, kwargs: dict) -> Any:
    STATS["calls"] += 1
    t0 = time.monotonic()
    try:
        answer = await session.call(uri, *args, **kwargs).addTimeout(CALL_TIMEOUT, _reactor())
    except ApplicationError as exc:
        key = exc.error
        STATS["errors"][key] = STATS["errors"].get(key, 0) + 1
        text = " ".join(str(a) for a in exc.args)
        assert exc.error.startswith(("org.simonsobservatory.error.", "wamp.error.")), (uri, args, exc)
        assert text.strip(), (uri, args, exc.error)  # a message, not just a code
        assert "internal error" not in text, (uri, args, text)  # a bug, not a refusal
        return exc
    finally:
        assert time.monotonic() - t0 < CALL_TIMEOUT
    STATS["answers"] += 1
    return answer


def _reactor():
    from twisted.internet import reactor

    return reactor


def _check_get_data(answer: Any, args: list) -> None:
    if isinstance(answer, ApplicationError):
        return
    assert set(answer) == {"data", "timeline"}, answer
    names = args[0] if isinstance(args[0], list) else [args[0]]
    assert set(answer["data"]) == set(names), (set(answer["data"]) ^ set(names))
    for tl in answer["timeline"].values():
        assert set(tl) == {"t", "finalized_until"}


def _check_get_fields(answer: Any) -> None:
    if isinstance(answer, ApplicationError):
        return
    fields, timelines = answer
    for name, info in fields.items():
        assert info["timeline"] in timelines and info["type"] in ("number", "string", "bool"), (name, info)


async def _call_node(wamp: tuple, node: str, procedure: str, call: tuple[list, dict]) -> Any:
    """``procedure`` of ``node`` with the drawn ``(args, kwargs)``, as the consumer."""
    _site, consumer, *_ = wamp
    args, kwargs = call
    return await _call(consumer, node_uri(node, procedure), args, kwargs)


_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(node=st.sampled_from(["apex_archive", "lakeshore"]), call=_get_data_args())
@pytest_twisted.ensureDeferred
async def test_get_data_arguments(wamp, node, call):
    _check_get_data(await _call_node(wamp, node, "get_data", call), call[0])


@_SETTINGS
@given(node=st.sampled_from(["apex_archive", "lakeshore"]), call=_get_fields_args())
@pytest_twisted.ensureDeferred
async def test_get_fields_arguments(wamp, node, call):
    _check_get_fields(await _call_node(wamp, node, "get_fields", call))


_names = st.one_of(_values, _text, st.sampled_from(["apex_archive", "lakeshore", "fuzz_node", ""]))


@_SETTINGS
@given(op=st.sampled_from(["add", "add", "subtract", "list"]), name=_names, description=_values,
       sid=st.one_of(st.just("own"), _values), extra=st.lists(_values, max_size=2))
@pytest_twisted.ensureDeferred
async def test_hub_procedures(wamp, op, name, description, sid, extra):
    _site, consumer, server, *_ = wamp
    session_id = server.details.session if sid == "own" else sid
    if op == "add":
        answer = await _call(server, HUB_ADD, [name, description, session_id, *extra], {})
        if answer is True:  # it took our junk: take it back (the test checks the listing at the end)
            await _call(server, HUB_SUBTRACT, [name, session_id], {})
        elif not isinstance(answer, ApplicationError):
            assert answer is False
            assert name in ("apex_archive", "lakeshore") or extra, (name, session_id)
    elif op == "subtract":
        answer = await _call(server, HUB_SUBTRACT, [name, session_id, *extra], {})
    else:
        answer = await _call(consumer, HUB_LIST, extra, {})
        if not isinstance(answer, ApplicationError):
            assert {"apex_archive", "lakeshore"} <= {n["name"] for n in answer}


@pytest_twisted.ensureDeferred
async def test_a_million_field_names(wamp):
    """``get_data`` with 10^6 field names: a clear error, fast, memory bounded."""
    site, consumer, _server, pids, rss, _listing = wamp
    before = rss_mib(pids["node apex_archive"])
    names = [f"field_{i}" for i in range(10**6)]
    t0 = time.monotonic()
    answer = await _call(consumer, node_uri("apex_archive", "get_data"), [names, 1, 0], {})
    took = time.monotonic() - t0
    assert isinstance(answer, ApplicationError), "a million field names were answered"
    assert answer.error == "org.simonsobservatory.error.invalid_argument"
    assert "at most" in " ".join(map(str, answer.args))
    first = rss_mib(pids["node apex_archive"])
    # each such request must be freed at once (it was not: a reference cycle through the
    # worker thread's traceback kept ~70 MB per request until the cyclic GC ran)
    for _ in range(3):
        again = await _call(consumer, node_uri("apex_archive", "get_data"), [names, 1, 0], {})
        assert isinstance(again, ApplicationError)
    same = await _call(consumer, node_uri("apex_archive", "get_data"), [["apex_humidity"] * 10**6, 1, 0], {})
    assert not isinstance(same, ApplicationError) and len(same["data"]["apex_humidity"]) == 14 * 24
    after = rss_mib(pids["node apex_archive"])
    record("WAMP 10^6 field names", f"get_data refused in {took:.2f} s "
                                    f"({answer.args[0][:60]!r}...); node RSS {before:.0f} -> {first:.0f} MiB "
                                    f"after the first call, {after:.0f} MiB after four more")
    assert after - before < 40, (before, first, after)
    rss["node apex_archive"] += after - before  # the baseline of the last test


@pytest_twisted.ensureDeferred
async def test_every_process_survived_and_the_hub_lists_what_it_did(wamp):
    site, consumer, server, pids, rss, listing = wamp
    await server.leave()  # whatever the fuzzing session left in the hub goes with it
    for role, pid in pids.items():
        assert one_pid(site.path, role) == pid, f"{role} was restarted"
        assert rss_mib(pid) - rss[role] < RSS_BOUND_MIB, (role, rss[role], rss_mib(pid))
    # once the hub has seen the fuzzing session leave
    await until_hub_lists(consumer, lambda now: now == listing, 30,
                          "the hub to list what it did before the fuzzing")
    data = await consumer.call(node_uri("apex_archive", "get_data"), ["apex_pressure"], 1499990400, 1500076800)
    assert len(data["data"]["apex_pressure"]) == 24
    fields, _ = await consumer.call(node_uri("lakeshore", "get_fields"), 1, 0)
    assert isinstance(fields, dict)
    log = site.proc.log_text()
    assert "unexpected error in node" not in log
    # wrong arity and unknown keywords are invalid_argument errors, not a traceback per call
    node_lines = [ln for ln in log.splitlines() if "[node " in ln or "[hub]" in ln]
    assert not [ln for ln in node_lines if "onUserError" in ln or "Traceback" in ln], "tracebacks logged"
    assert "wamp.error.runtime_error" not in STATS["errors"], STATS["errors"]
    assert "stopped unexpectedly" not in log and "restarting in" not in log
