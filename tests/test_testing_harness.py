"""sisock_core.testing, the harness plugin authors use, and every hook exercised through it.

Each hook spec has a ``test_hook_<name>`` here (tests/test_docs.py checks it). The plugin
under test is :class:`Recorder`, an object implementing every hook and recording calls;
it runs in a real DataNodeServer through the ``sisock_node`` fixture. The ``sisock_site``
tests run a real router, hub and node (``-m integration``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import attrs
import numpy as np
import pytest
from autobahn.wamp.exception import ApplicationError

from sisock_core import Field, PluginSpec, Timeline, hookimpl
from sisock_core.config import ConfigError
from sisock_core.engine import ERROR_INVALID_ARGUMENT, ERROR_PLUGIN_FAILED
pytest_plugins = ["sisock_core.testing", "pytester"]

T0 = 1_600_000_000.0


@attrs.frozen
class Options:
    """Options of the recording plugin.

    ``scale``: multiply every value by this.
    """

    scale: float = 1.0
    path: str | None = None  #: a file that must exist when set
    label: str = attrs.field(default="main", metadata={"help": "timeline name"})


class Recorder:
    """A plugin object implementing every hook; ``calls`` records (hook, arguments)."""

    def __init__(self, **behaviour) -> None:
        self.calls: list[tuple] = []
        self.behaviour = behaviour
        self.published = threading.Event()
        self.go = threading.Event()

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    @hookimpl
    def sisock_plugin_spec(self):
        return PluginSpec(default_node_name="rec", description="Recording plugin", options=Options,
                          env={"REC_SCALE": "scale"})

    @hookimpl
    def node_start(self, node):
        self.calls.append(("node_start", node.name, node.options))
        if node.options.path and not Path(node.options.path).exists():
            raise ValueError(f"rec: {node.options.path} does not exist")
        node.state["started"] = True

    @hookimpl
    def node_stop(self, node):
        self.calls.append(("node_stop", node.name))

    @hookimpl
    def list_fields(self, node, start, end):
        self.calls.append(("list_fields", start, end))
        if self.behaviour.get("live"):
            return None
        return [
            Field("temp", node.options.label, units="K", description="a temperature", interval=1.0),
            Field("flag", node.options.label, type="bool"),
        ]

    @hookimpl
    def read_range(self, node, fields, start, end):
        self.calls.append(("read_range", list(fields), start, end))
        if self.behaviour.get("live"):
            return None
        if self.behaviour.get("crash"):
            raise OSError("disk on fire")
        t = T0 + np.arange(100.0)
        final = self.behaviour.get("finalized_until", float(t[-1]))
        return {node.options.label: Timeline(t, {"temp": t - T0 * node.options.scale,
                                                "flag": np.arange(100) % 2 == 0}, final)}

    @hookimpl
    def subscribe(self, node, publish):
        self.calls.append(("subscribe", node.name))
        if not self.behaviour.get("live"):
            return None
        stop = threading.Event()

        def on_feed(message, feed_data):  # an OCS-style feed event
            publish("feed", np.array([message["t"]]), {"feed_value": np.array([message["v"]])})

        node.wamp_subscribe("observatory.rec.feeds.temps", on_feed)

        def run():
            self.go.wait(30)
            now = time.time()  # the live cache keeps the last buffer_time seconds
            publish("live", np.array([now - 1.0, now]), {"count": np.array([1, 2])})
            self.published.set()
            stop.wait(30)

        threading.Thread(target=run, daemon=True).start()

        def unsubscribe():
            self.calls.append(("unsubscribe", node.name))
            stop.set()

        return unsubscribe


# -- the hooks ---------------------------------------------------------------------------


def test_hook_sisock_plugin_spec(sisock_node):
    plugin = Recorder()
    node = sisock_node(plugin)
    assert (node.name, node.plugin_name) == ("rec", "Recorder")
    assert node.listed() == [{"name": "rec", "description": "Recording plugin"}]
    assert node.options == Options()

    other = sisock_node(Recorder(), {"scale": 2, "label": "slow"}, name="rec2", description="second")
    assert other.options == Options(scale=2.0, label="slow")
    assert other.listed() == [{"name": "rec2", "description": "second"}]

    # options are checked exactly as in a site file, every problem at once
    with pytest.raises(ConfigError) as err:
        sisock_node(Recorder(), {"scal": 2, "label": 5})
    assert err.value.problems == [
        "<sisock_node>: nodes.rec.scal: unknown key (did you mean 'scale'?)",
        "<sisock_node>: nodes.rec.label: expected a string, got integer 5",
    ]
    # the plugin's environment variables, read from env= only (tests stay isolated)
    assert sisock_node(Recorder(), name="rec3", env={"REC_SCALE": "3.5"}).options.scale == 3.5


def test_hook_node_start(sisock_node, tmp_path):
    plugin = Recorder()
    node = sisock_node(plugin, {"path": str(tmp_path)})
    assert plugin.calls[0] == ("node_start", "rec", Options(path=str(tmp_path)))
    assert node.state["started"] is True

    refused = Recorder()
    with pytest.raises(ValueError, match=r"rec: /no/such/file does not exist"):
        sisock_node(refused, {"path": "/no/such/file"}, name="refused")
    assert refused.names() == ["node_start"]  # never registered, never stopped


def test_hook_node_stop(sisock_node):
    plugin = Recorder()
    node = sisock_node(plugin)
    assert node.listed() == [{"name": "rec", "description": "Recording plugin"}]
    node.stop()
    node.stop()  # idempotent
    assert plugin.names().count("node_stop") == 1
    assert node.session.hub.listing() == []  # it left the hub before node_stop


def test_hook_list_fields(sisock_node):
    plugin = Recorder()
    node = sisock_node(plugin, clock=lambda: T0 + 5000.0)
    fields, timelines = node.get_fields(-100, 0)  # sisock's time rule: now - 100 .. now
    assert ("list_fields", T0 + 4900.0, T0 + 5000.0) in plugin.calls
    assert fields == {
        "temp": {"description": "a temperature", "timeline": "main", "type": "number", "units": "K"},
        "flag": {"description": None, "timeline": "main", "type": "bool", "units": None},
    }
    assert timelines == {"main": {"interval": 1.0, "field": ["temp", "flag"]}}


def test_hook_read_range(sisock_node):
    plugin = Recorder()
    node = sisock_node(plugin)
    answer = node.get_data(["temp", "flag", "unknown"], T0 + 10, T0 + 20)
    assert answer["data"]["temp"] == [float(i) for i in range(10, 20)]
    assert answer["data"]["flag"] == [i % 2 == 0 for i in range(10, 20)]
    assert answer["data"]["unknown"] == []
    assert answer["timeline"] == {"main": {"t": [T0 + i for i in range(10, 20)],
                                           "finalized_until": T0 + 99}}
    assert plugin.calls[-1] == ("read_range", ["temp", "flag", "unknown"], T0 + 10, T0 + 20)

    # the core decimates: max_points (as the HTTP bridge sends it) and min_stride
    few = node.get_data(["temp"], T0, T0 + 100, max_points=10)["data"]["temp"]
    assert 2 <= len(few) <= 10 and min(few) == 0.0 and max(few) == 99.0
    strided = node.get_data(["temp"], T0, T0 + 100, 20)
    assert len(strided["data"]["temp"]) < 100

    # a field argument that is not a list: the consumer gets invalid_argument
    with pytest.raises(ApplicationError) as err:
        node.get_data(42, T0, T0 + 10)
    assert err.value.error == ERROR_INVALID_ARGUMENT


def test_hook_subscribe(sisock_node):
    plugin = Recorder(live=True)
    node = sisock_node(plugin, name="live")
    assert ("subscribe", "live") in plugin.calls
    events = node.subscribe("live")  # org.simonsobservatory.consumer.live.live
    plugin.go.set()
    assert plugin.published.wait(10)

    def count():
        return node.get_data(["count"], -600, 0)["data"]["count"]

    assert node.wait_until(count, what="the published samples") == [1, 2]
    fields, timelines = node.get_fields(-600, 0)
    assert fields["count"]["timeline"] == "live"
    events.wait(what="the live push")
    (pushed,), _ = events[0]
    assert pushed["node"] == "live" and pushed["data"] == {"count": [1, 2]}

    # a WAMP event the plugin subscribed to with node.wamp_subscribe
    now = time.time()
    node.publish("observatory.rec.feeds.temps", {"t": now, "v": 4.5}, {"feed_name": "temps"})
    assert node.wait_until(lambda: node.get_data(["feed_value"], -600, 0)["data"]["feed_value"]) == [4.5]
    node.stop()
    assert plugin.names()[-2:] == ["unsubscribe", "node_stop"] or \
        plugin.names()[-2:] == ["node_stop", "unsubscribe"]


# -- the harness -------------------------------------------------------------------------


def test_plugin_exception_is_a_wamp_error_and_the_node_keeps_serving(sisock_node):
    plugin = Recorder(crash=True)
    node = sisock_node(plugin)
    with pytest.raises(ApplicationError) as err:
        node.get_data(["temp"], T0, T0 + 10)
    assert err.value.error == ERROR_PLUGIN_FAILED
    assert "plugin" in err.value.args[0] and "OSError: disk on fire" in err.value.args[0]
    assert node.get_fields()[0]["temp"]["units"] == "K"


def test_answers_go_through_the_real_serializer(sisock_node):
    from sisock_core.testing import WireFormatError

    # numpy.float32 cannot be sent over WAMP; the harness says so instead of hiding it
    node = sisock_node(Recorder(finalized_until=np.float32(5.0)))
    with pytest.raises(WireFormatError, match=r"cannot be sent over WAMP \(msgpack\).*float32"):
        node.get_data(["temp"], T0, T0 + 10)

    js = sisock_node(Recorder(), name="json_rec", serializer="json")
    assert js.get_data(["temp"], T0, T0 + 2)["data"]["temp"] == [0.0, 1.0]


def test_options_instance_or_dict_only(sisock_node):
    node = sisock_node(Recorder(), Options(scale=4.0))
    assert node.options == Options(scale=4.0)
    with pytest.raises(TypeError, match="options must be a dict or an instance of Options"):
        sisock_node(Recorder(), ["scale"])


def test_installed_plugin_by_name(sisock_node):
    node = sisock_node("weather")
    assert node.plugin_name == "weather" and node.name == "apex_archive"
    answer = node.get_data(["apex_temperature"], 1500508800, 1500508800 + 3 * 3600)
    assert len(answer["data"]["apex_temperature"]) == 3


def test_module_plugin_named_after_its_entry_point(sisock_node):
    import sisock_plugins.weather.plugin as weather

    assert sisock_node(weather).plugin_name == "weather"


EXTERNAL_TEST = """
def test_weather(sisock_node):
    node = sisock_node("weather")
    fields, timelines = node.get_fields()
    assert "apex_humidity" in fields
"""


def test_plugin_is_opt_in_with_dash_p(pytester):
    pytester.makepyfile(test_external=EXTERNAL_TEST)
    enabled = pytester.runpytest_subprocess("-p", "sisock_core.testing", "-q")
    enabled.assert_outcomes(passed=1)
    # not registered under pytest11: without -p (or pytest_plugins) the fixture is absent
    plain = pytester.runpytest_subprocess("-q")
    plain.assert_outcomes(errors=1)
    plain.stdout.fnmatch_lines(["*fixture 'sisock_node' not found*"])


# -- a real site -------------------------------------------------------------------------


WX = {"wx": {"plugin": "weather", "description": "weather through the harness"}}


@pytest.fixture(scope="module")
def site(sisock_site):
    return sisock_site(WX, http=True)


@pytest.mark.integration
def test_site_serves_over_a_real_router(site, sisock_site):
    assert sisock_site(WX, http=True) is site
    assert site.nodes() == [{"name": "wx", "description": "weather through the harness"}]
    fields, timelines = site.get_fields("wx")
    assert fields["apex_radiometer"]["timeline"] == "minutely"
    answer = site.get_data("wx", ["apex_humidity", "missing"], 1500508800, 1500508800 + 3 * 3600)
    assert answer["data"] == {"apex_humidity": [11.6, 12.0, 13.1], "missing": []}
    with pytest.raises(ApplicationError) as err:
        site.get_data("wx", 42, 0)
    assert err.value.error == ERROR_INVALID_ARGUMENT
    with pytest.raises(ApplicationError) as err:
        site.get_fields("nobody")
    assert err.value.error == "wamp.error.no_such_procedure"

    out = site.cli("fields", "wx", "--json")
    assert out.returncode == 0, out.stderr
    assert "apex_windspeed" in out.stdout


@pytest.mark.integration
def test_site_says_why_a_node_cannot_start(tmp_path):
    from sisock_core.testing import start_site

    with pytest.raises(AssertionError) as err:
        start_site(tmp_path, {"wx": {"plugin": "weather", "data_dir": str(tmp_path / "nothing")}},
                   timeout=60)
    assert f"node wx cannot start: ValueError: weather: data directory {tmp_path / 'nothing'} " \
           f"does not exist" in str(err.value)


@pytest.mark.integration
def test_site_runs_the_http_bridge_when_asked(site):
    import json
    import urllib.request

    from sisock_core.testing import wait_until

    assert site.http_url == f"http://127.0.0.1:{site.config.http.port}"

    def search():
        request = urllib.request.Request(site.http_url + "/search", data=b'{"target": "wx::apex_h"}',
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    assert wait_until(search, timeout=30, what="the bridge to list wx's fields") == ["wx::apex_humidity"]
