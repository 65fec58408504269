"""The site-config loader: defaults, golden problem messages, environment overrides.

Plugins are faked (``fake_loader``/``fake_installed``) except where the real bundled
``weather`` plugin is the point (the embedded defaults and ``site/nodes.toml``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest

from sisock_core import PluginSpec, hookimpl
from sisock_core.config import (
    DEFAULT_SITE_TOML,
    EMBEDDED_SOURCE,
    ConfigError,
    HttpConfig,
    HubConfig,
    NodeConfig,
    RouterConfig,
    SiteConfig,
    default_state_dir,
    describe_config,
    format_problem,
    load_config,
    load_config_text,
)
from sisock_core.plugins import PluginError, make_plugin_manager, plugin_spec

REPO = Path(__file__).resolve().parent.parent


# -- fake plugins ------------------------------------------------------------------------


def _positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise ValueError("must be positive")


@attrs.frozen
class Alarm:
    low: float = 0.0
    high: float = attrs.field(default=1.0, validator=_positive)


@attrs.frozen
class ArchiveOptions:
    data_dir: str
    scan_interval: float = attrs.field(default=3600.0, validator=_positive)
    recursive: bool = False
    channels: list[str] = attrs.field(factory=list)
    mode: Literal["fast", "slow"] = "fast"
    cache: Path | None = None
    scale: dict[str, float] = attrs.field(factory=dict)
    alarm: Alarm | None = None


@attrs.frozen
class FeedOptions:
    target: str = "observatory.agent"
    feed: str = "feed"
    buffer_time: int = attrs.field(default=3600, validator=attrs.validators.ge(0))


class ArchivePlugin:
    @hookimpl
    def sisock_plugin_spec(self) -> PluginSpec:
        return PluginSpec(
            default_node_name="archive",
            description="Fake archive",
            options=ArchiveOptions,
            env={"DATA_DIRECTORY": "data_dir", "SCAN_INTERVAL": "scan_interval"},
        )


class FeedPlugin:
    @hookimpl
    def sisock_plugin_spec(self) -> PluginSpec:
        return PluginSpec(
            default_node_name="feed",
            description="Fake feed",
            options=FeedOptions,
            env={
                "NAME": "name",
                "DESCRIPTION": "description",
                "TARGET": "target",
                "FEED": "feed",
                "BUFFER_TIME": "buffer_time",
            },
        )


class ClockPlugin:
    @hookimpl
    def sisock_plugin_spec(self) -> PluginSpec:
        return PluginSpec(default_node_name="clock", description="Fake clock")


FAKES: dict[str, Any] = {
    "archive": ArchivePlugin(),
    "feed": FeedPlugin(),
    "clock": ClockPlugin(),
    "broken": None,  # installed, but fails to import
}


def fake_loader(name: str):
    obj = FAKES[name]
    if obj is None:
        raise PluginError(f"plugin {name!r} (fake.broken) failed to import: No module named 'numpyy'")
    pm = make_plugin_manager(obj, name=name)
    return pm, plugin_spec(pm, name)


def fake_installed() -> list[str]:
    return list(FAKES)


def load(text: str, env: dict[str, str] | None = None, **kw: Any) -> SiteConfig:
    kw = {"plugin_loader": fake_loader, "installed": fake_installed, **kw}
    return load_config_text(textwrap.dedent(text), "site.toml", env or {}, **kw)


def problems(text: str, env: dict[str, str] | None = None, **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, env, **kw)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


ARCHIVE = """
[nodes.a]
plugin = "archive"
data_dir = "/data"
"""


# -- defaults ------------------------------------------------------------------------------


def test_empty_file_gives_defaults() -> None:
    cfg = load("")
    assert cfg == SiteConfig(path="site.toml", state_dir=default_state_dir({}))
    assert cfg.router == RouterConfig() and cfg.hub == HubConfig() and cfg.http == HttpConfig()
    assert cfg.log_level == "info" and cfg.nodes == {}


def test_node_defaults_and_options() -> None:
    cfg = load(ARCHIVE)
    assert cfg.nodes == {
        "a": NodeConfig(
            name="a", plugin="archive", description="Fake archive",
            options=ArchiveOptions(data_dir="/data"),
        )
    }


def test_node_core_keys() -> None:
    cfg = load("""
        [nodes.a]
        plugin = "archive"
        description = "Archive A"
        enabled = false
        max_points = 500
        data_dir = "/data"
        scan_interval = 60
        channels = ["t", "p"]
        cache = "~/cache"

        [nodes.b]
        plugin = "clock"
        max_points = 0
    """)
    a = cfg.nodes["a"]
    assert (a.description, a.enabled, a.max_points) == ("Archive A", False, 500)
    assert a.options.scan_interval == 60.0 and isinstance(a.options.scan_interval, float)
    assert a.options.channels == ["t", "p"]
    assert a.options.cache == Path("~/cache").expanduser()
    assert cfg.nodes["b"].max_points is None  # 0 means no cap
    assert cfg.nodes["b"].options is None
    assert list(cfg.nodes) == ["a", "b"]


def test_tables_and_top_level(tmp_path: Path) -> None:
    cfg = load(
        """
        state_dir = "state"
        log_level = "DEBUG"
        [router]
        tls_port = 8443
        realm = "site"
        tls_cert = "certs/cert.pem"
        ca_cert = "/etc/ca.pem"
        [hub]
        start = false
        [http]
        port = 5001
        listen = "0.0.0.0"
        """,
        base_dir=tmp_path,
    )
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.log_level == "debug"
    assert cfg.router == RouterConfig(
        tls_port=8443, realm="site", tls_cert=str(tmp_path / "certs/cert.pem"), ca_cert="/etc/ca.pem"
    )
    assert cfg.hub == HubConfig(start=False)
    assert cfg.http == HttpConfig(port=5001, listen="0.0.0.0")


def test_relative_paths_follow_the_file(tmp_path: Path) -> None:
    site = tmp_path / "conf" / "site.toml"
    site.parent.mkdir()
    site.write_text('state_dir = "../state"\n')
    cfg = load_config(site, {}, plugin_loader=fake_loader, installed=fake_installed)
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.path == str(site)


def test_embedded_defaults_use_the_weather_plugin() -> None:
    cfg = load_config(None, {})
    assert cfg.path == EMBEDDED_SOURCE
    assert list(cfg.nodes) == ["apex_archive"]
    node = cfg.nodes["apex_archive"]
    assert node.plugin == "weather" and node.enabled and node.description


def test_site_nodes_toml_matches_embedded_defaults() -> None:
    """The same text (comments are the operator's documentation), hence the same config."""
    assert (REPO / "site" / "nodes.toml").read_text() == DEFAULT_SITE_TOML
    from_file = load_config(REPO / "site" / "nodes.toml", {})
    embedded = load_config(None, {})
    assert attrs.evolve(from_file, path=embedded.path) == embedded


def test_default_toml_documents_every_table() -> None:
    for table in ("[router]", "[hub]", "[http]", "[nodes.apex_archive]"):
        assert table in DEFAULT_SITE_TOML


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", {})
    assert info.value.problems == [f"{tmp_path / 'nope.toml'}: cannot read: No such file or directory"]


# -- golden problems -----------------------------------------------------------------------


def test_format_problem() -> None:
    assert format_problem("site.toml", "router.tls_port", "bad") == "site.toml: router.tls_port: bad"
    assert format_problem("s", ("nodes", "a b", "x", 2), "bad") == 's: nodes."a b".x[2]: bad'
    exc = ConfigError(["a", "b"])
    assert exc.problems == ["a", "b"] and str(exc) == "a\nb"


def test_unknown_key_with_suggestion() -> None:
    assert problems("[router]\ntls_prot = 8080\n") == [
        "site.toml: router.tls_prot: unknown key (did you mean 'tls_port'?)"
    ]


def test_unknown_key_without_suggestion() -> None:
    assert problems("[hub]\nflavour = 'x'\n") == ["site.toml: hub.flavour: unknown key"]


def test_unknown_top_level_key() -> None:
    assert problems("log_levle = 'info'\nfoo = 1\n") == [
        "site.toml: log_levle: unknown key (did you mean 'log_level'?)",
        "site.toml: foo: unknown key",
    ]


def test_unknown_plugin_option_and_core_key() -> None:
    assert problems(ARCHIVE + "data_dri = 'x'\nenabeld = true\nzzz = 1\n") == [
        "site.toml: nodes.a.data_dri: unknown key (did you mean 'data_dir'?)",
        "site.toml: nodes.a.enabeld: unknown key (did you mean 'enabled'?)",
        "site.toml: nodes.a.zzz: unknown key",
    ]


def test_unknown_key_for_plugin_without_options() -> None:
    assert problems("[nodes.c]\nplugin = 'clock'\nrate = 1\ndescriptoin = 'x'\n") == [
        "site.toml: nodes.c.rate: unknown key (plugin 'clock' takes no options)",
        "site.toml: nodes.c.descriptoin: unknown key (did you mean 'description'?)",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('tls_port = "abc"', "router.tls_port: expected an integer, got string 'abc'"),
        ("tls_port = true", "router.tls_port: expected an integer, got boolean true"),
        ("tls_port = 80.5", "router.tls_port: expected an integer, got number 80.5"),
        ("start = 1", "router.start: expected a boolean, got integer 1"),
        ('start = "yes"', "router.start: expected a boolean, got string 'yes'"),
        ("host = 5", "router.host: expected a string, got integer 5"),
        ("host = [1]", "router.host: expected a string, got a list"),
        ("host = {a = 1}", "router.host: expected a string, got a table"),
        ("tls_cert = false", "router.tls_cert: expected a string, got boolean false"),
        ("tls_port = 70000", "router.tls_port: must be between 1 and 65535, got 70000"),
        ("ocs_port = 0", "router.ocs_port: must be between 1 and 65535, got 0"),
    ],
)
def test_wrong_type_in_router(line: str, expected: str) -> None:
    assert problems(f"[router]\n{line}\n") == [f"site.toml: {expected}"]


def test_wrong_types_in_options() -> None:
    assert problems(
        ARCHIVE
        + 'scan_interval = "1h"\nrecursive = 1\nchannels = "t"\nmode = "medium"\n'
    ) == [
        "site.toml: nodes.a.scan_interval: expected a number, got string '1h'",
        "site.toml: nodes.a.recursive: expected a boolean, got integer 1",
        "site.toml: nodes.a.channels: expected a list, got string 't'",
        "site.toml: nodes.a.mode: must be one of 'fast', 'slow', got string 'medium'",
    ]
    assert problems(ARCHIVE + 'channels = ["t", 2]\n') == [
        "site.toml: nodes.a.channels[1]: expected a string, got integer 2"
    ]


def test_nested_option_tables() -> None:
    cfg = load(ARCHIVE + "scale = {t = 2, p = 0.5}\n[nodes.a.alarm]\nhigh = 3\n")
    assert cfg.nodes["a"].options.scale == {"t": 2.0, "p": 0.5}
    assert cfg.nodes["a"].options.alarm == Alarm(high=3.0)
    assert problems(ARCHIVE + 'scale = {t = "x"}\n[nodes.a.alarm]\nhihg = 3\nhigh = -1\n') == [
        "site.toml: nodes.a.scale.t: expected a number, got string 'x'",
        "site.toml: nodes.a.alarm.hihg: unknown key (did you mean 'high'?)",
        "site.toml: nodes.a.alarm.high: must be positive",
    ]
    assert problems(ARCHIVE + "alarm = 5\nscale = [1]\n") == [
        "site.toml: nodes.a.alarm: expected a table, got integer 5",
        "site.toml: nodes.a.scale: expected a table, got a list",
    ]


def test_tables_of_the_wrong_type() -> None:
    assert problems('router = 5\nhttp = "x"\nnodes = []\n') == [
        "site.toml: router: expected a table, got integer 5",
        "site.toml: http: expected a table, got string 'x'",
        "site.toml: nodes: expected a table, got a list",
    ]
    assert problems("[nodes]\na = 1\n") == ["site.toml: nodes.a: expected a table, got integer 1"]


def test_http_port() -> None:
    assert problems("[http]\nport = 70000\n") == [
        "site.toml: http.port: must be between 1 and 65535, got 70000"
    ]
    assert problems("[http]\nport = false\n") == [
        "site.toml: http.port: expected an integer, got boolean false"
    ]


def test_top_level_values() -> None:
    assert problems('log_level = "verbose"\n') == [
        "site.toml: log_level: must be one of debug, info, warn, error, critical, got 'verbose'"
    ]
    assert problems("log_level = 3\nstate_dir = 4\n") == [
        "site.toml: log_level: expected a string, got integer 3",
        "site.toml: state_dir: expected a string, got integer 4",
    ]


def test_node_core_values() -> None:
    assert problems(ARCHIVE + 'enabled = "no"\nmax_points = -1\ndescription = 5\n') == [
        "site.toml: nodes.a.enabled: expected a boolean, got string 'no'",
        "site.toml: nodes.a.max_points: must be >= 0, got -1",
        "site.toml: nodes.a.description: expected a string, got integer 5",
    ]
    assert problems(ARCHIVE + "max_points = true\n") == [
        "site.toml: nodes.a.max_points: expected an integer, got boolean true"
    ]


def test_missing_plugin_key() -> None:
    assert problems("[nodes.x]\ndescription = 'x'\n") == ["site.toml: nodes.x.plugin: missing required key"]


def test_missing_required_option() -> None:
    assert problems("[nodes.a]\nplugin = 'archive'\n") == [
        "site.toml: nodes.a.data_dir: missing required key"
    ]


def test_plugin_not_installed() -> None:
    assert problems("[nodes.x]\nplugin = 'archiv'\n") == [
        "site.toml: nodes.x.plugin: plugin 'archiv' is not installed (did you mean 'archive'?); "
        "installed: archive, broken, clock, feed"
    ]
    assert problems("[nodes.x]\nplugin = 'zzz'\n") == [
        "site.toml: nodes.x.plugin: plugin 'zzz' is not installed; installed: archive, broken, clock, feed"
    ]


def test_plugin_not_installed_golden_weather() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(
            "[nodes.x]\nplugin = 'wether'\n", "site.toml", {},
            plugin_loader=fake_loader, installed=lambda: ["weather"],
        )
    assert info.value.problems == [
        "site.toml: nodes.x.plugin: plugin 'wether' is not installed (did you mean 'weather'?); "
        "installed: weather"
    ]


def test_no_plugin_installed() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("[nodes.x]\nplugin = 'weather'\n", "site.toml", {}, installed=lambda: [])
    assert info.value.problems == [
        "site.toml: nodes.x.plugin: plugin 'weather' is not installed; installed: none"
    ]


def test_plugin_fails_to_import() -> None:
    assert problems("[nodes.x]\nplugin = 'broken'\n") == [
        "site.toml: nodes.x.plugin: plugin 'broken' (fake.broken) failed to import: No module named 'numpyy'"
    ]


def test_plugin_spec_raising_is_reported() -> None:
    def loader(name: str):
        raise RuntimeError("spec exploded")

    with pytest.raises(ConfigError) as info:
        load_config_text("[nodes.x]\nplugin = 'archive'\n", "site.toml", {},
                         plugin_loader=loader, installed=fake_installed)
    assert info.value.problems == [
        "site.toml: nodes.x.plugin: plugin 'archive' failed to load: spec exploded"
    ]


def test_validator_message_kept() -> None:
    assert problems(ARCHIVE + "scan_interval = -5\n") == [
        "site.toml: nodes.a.scan_interval: must be positive"
    ]


def test_validator_reported_next_to_other_problems() -> None:
    # another key's problem keeps cattrs from building the instance; the validator still runs
    assert problems(ARCHIVE + "scan_interval = -5\nrecursive = 2\n") == [
        "site.toml: nodes.a.scan_interval: must be positive",
        "site.toml: nodes.a.recursive: expected a boolean, got integer 2",
    ]


def test_attrs_builtin_validator_message() -> None:
    assert problems("[nodes.f]\nplugin = 'feed'\nbuffer_time = -1\n") == [
        "site.toml: nodes.f.buffer_time: 'buffer_time' must be >= 0: -1"
    ]


def test_invalid_node_names() -> None:
    assert problems(
        """
        [nodes.Apex-Archive]
        plugin = "clock"
        [nodes."9lives"]
        plugin = "clock"
        [nodes."a b"]
        plugin = "clock"
        """
    ) == [
        "site.toml: nodes.Apex-Archive: invalid node name: use lowercase letters, digits and '_', "
        "starting with a letter (e.g. 'apex_archive')",
        "site.toml: nodes.9lives: invalid node name: use lowercase letters, digits and '_', "
        "starting with a letter",
        "site.toml: nodes.\"a b\": invalid node name: use lowercase letters, digits and '_', "
        "starting with a letter (e.g. 'a_b')",
    ]


def test_duplicate_table_is_a_toml_error() -> None:
    assert problems(ARCHIVE + "\n[nodes.a]\nplugin = 'clock'\n") == [
        "site.toml: line 6, column 9: Cannot declare ('nodes', 'a') twice"
    ]


def test_toml_syntax_error() -> None:
    assert problems("[router]\ntls_port = = 8080\n") == [
        "site.toml: line 2, column 12: Invalid value"
    ]
    assert problems("x = [1,\n") == ["site.toml: line 2, column 1: Invalid value"]


def test_every_problem_at_once_in_file_order() -> None:
    text = """
        log_level = "loud"
        bogus = 1

        [router]
        tls_prot = 1
        tls_port = "abc"
        ocs_port = 70000

        [nodes.x]
        description = "no plugin"

        [nodes.y]
        plugin = "archiv"

        [nodes.a]
        plugin = "archive"
        scan_interval = -1
        chanels = ["t"]

        [http]
        port = true
    """
    assert problems(text) == [
        "site.toml: log_level: must be one of debug, info, warn, error, critical, got 'loud'",
        "site.toml: bogus: unknown key",
        "site.toml: router.tls_prot: unknown key (did you mean 'tls_port'?)",
        "site.toml: router.tls_port: expected an integer, got string 'abc'",
        "site.toml: router.ocs_port: must be between 1 and 65535, got 70000",
        "site.toml: nodes.x.plugin: missing required key",
        "site.toml: nodes.y.plugin: plugin 'archiv' is not installed (did you mean 'archive'?); "
        "installed: archive, broken, clock, feed",
        "site.toml: nodes.a.scan_interval: must be positive",
        "site.toml: nodes.a.chanels: unknown key (did you mean 'channels'?)",
        "site.toml: nodes.a.data_dir: missing required key",
        "site.toml: http.port: expected an integer, got boolean true",
    ]


# -- environment -------------------------------------------------------------------------


def test_env_overrides_fixed_tables() -> None:
    cfg = load(
        ARCHIVE + "max_points = 10\n[nodes.c]\nplugin = 'clock'\n",
        {
            "CROSSBAR_TLS_PORT": "8443",
            "CROSSBAR_OCS_PORT": "8002",
            "WAMP_USER": "alice",
            "PORT": "5050",
            "LOGLEVEL": "WARNING",
            "MAX_POINTS": "1000",
        },
    )
    assert (cfg.router.tls_port, cfg.router.ocs_port, cfg.router.wamp_user) == (8443, 8002, "alice")
    assert cfg.router.start and cfg.hub.start
    assert cfg.http.port == 5050
    assert cfg.log_level == "warn"
    assert [n.max_points for n in cfg.nodes.values()] == [1000, 1000]


def test_env_max_points_zero_means_no_cap() -> None:
    cfg = load(ARCHIVE + "max_points = 10\n", {"MAX_POINTS": "0"})
    assert cfg.nodes["a"].max_points is None


def test_env_state_dir(tmp_path: Path) -> None:
    cfg = load('state_dir = "/elsewhere"\n', {"SISOCK_STATE_DIR": str(tmp_path)})
    assert cfg.state_dir == tmp_path
    assert load("", {"XDG_STATE_HOME": str(tmp_path)}).state_dir == tmp_path / "sisock"


def test_empty_env_is_unset() -> None:
    assert load("", {"CROSSBAR_TLS_PORT": "", "CROSSBAR_HOST": ""}).router == RouterConfig()


def test_remote_crossbar_host_stops_local_router_and_hub() -> None:
    cfg = load("", {"CROSSBAR_HOST": "sisock-crossbar"})
    assert cfg.router.host == "sisock-crossbar"
    assert not cfg.router.start and not cfg.hub.start
    assert cfg.http.start


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.1.1", "::1"])
def test_loopback_crossbar_host_keeps_local_router(host: str) -> None:
    cfg = load("", {"CROSSBAR_HOST": host})
    assert cfg.router.host == host and cfg.router.start and cfg.hub.start


def test_explicit_start_wins_over_crossbar_host() -> None:
    cfg = load("[router]\nstart = true\n[hub]\nstart = false\n", {"CROSSBAR_HOST": "db.example.org"})
    assert cfg.router.start and not cfg.hub.start
    cfg = load("[hub]\nstart = true\n", {"CROSSBAR_HOST": "db.example.org"})
    assert not cfg.router.start and cfg.hub.start


def test_malformed_env() -> None:
    assert problems(
        "",
        {
            "CROSSBAR_TLS_PORT": "x",
            "CROSSBAR_OCS_PORT": "0",
            "PORT": "70000",
            "LOGLEVEL": "loud",
            "MAX_POINTS": "-1",
        },
    ) == [
        "site.toml: env LOGLEVEL: must be one of debug, info, warn, error, critical, got 'loud'",
        "site.toml: env CROSSBAR_TLS_PORT: expected an integer, got 'x'",
        "site.toml: env CROSSBAR_OCS_PORT: must be between 1 and 65535, got 0",
        "site.toml: env PORT: must be between 1 and 65535, got 70000",
        "site.toml: env MAX_POINTS: must be >= 0, got -1",
    ]


def test_env_problems_follow_file_problems() -> None:
    assert problems("[router]\ntls_prot = 1\n", {"PORT": "web"}) == [
        "site.toml: router.tls_prot: unknown key (did you mean 'tls_port'?)",
        "site.toml: env PORT: expected an integer, got 'web'",
    ]


def test_plugin_env_converts_to_option_types() -> None:
    cfg = load(ARCHIVE, {"SCAN_INTERVAL": "60", "DATA_DIRECTORY": "/mnt/data"})
    assert cfg.nodes["a"].options == ArchiveOptions(data_dir="/mnt/data", scan_interval=60.0)


def test_plugin_env_provides_required_option() -> None:
    cfg = load("[nodes.a]\nplugin = 'archive'\n[nodes.b]\nplugin = 'archive'\n", {"DATA_DIRECTORY": "/d"})
    assert [n.options.data_dir for n in cfg.nodes.values()] == ["/d", "/d"]


def test_plugin_env_malformed() -> None:
    assert problems(ARCHIVE, {"SCAN_INTERVAL": "hourly"}) == [
        "site.toml: env SCAN_INTERVAL: expected a number, got 'hourly'"
    ]
    assert problems(ARCHIVE, {"SCAN_INTERVAL": "-1"}) == [
        "site.toml: env SCAN_INTERVAL: must be positive"
    ]
    # the variable fills a key the file leaves out: the validator's problem names the variable
    assert problems("[nodes.f]\nplugin = 'feed'\n", {"BUFFER_TIME": "-1"}) == [
        "site.toml: env BUFFER_TIME: 'buffer_time' must be >= 0: -1"
    ]


def test_env_name_and_description_rename_the_node() -> None:
    cfg = load(
        "[nodes.feed]\nplugin = 'feed'\n[nodes.c]\nplugin = 'clock'\n",
        {"NAME": "lakeshore", "DESCRIPTION": "Thermometers", "FEED": "temps"},
    )
    assert list(cfg.nodes) == ["lakeshore", "c"]
    node = cfg.nodes["lakeshore"]
    assert (node.name, node.description, node.options.feed) == ("lakeshore", "Thermometers", "temps")


def test_env_name_collision_is_a_duplicate_node_name() -> None:
    assert problems("[nodes.feed]\nplugin = 'feed'\n[nodes.c]\nplugin = 'clock'\n", {"NAME": "c"}) == [
        "site.toml: env NAME: duplicate node name 'c'"
    ]


def test_env_name_must_be_valid() -> None:
    assert problems("[nodes.feed]\nplugin = 'feed'\n", {"NAME": "Lake-Shore"}) == [
        "site.toml: env NAME: invalid node name: use lowercase letters, digits and '_', "
        "starting with a letter (e.g. 'lake_shore')"
    ]


# -- summary -------------------------------------------------------------------------------


def test_describe_config() -> None:
    cfg = load(ARCHIVE + "max_points = 50\n[nodes.c]\nplugin = 'clock'\nenabled = false\n")
    text = describe_config(cfg)
    assert "wss://127.0.0.1:8080" in text
    assert "ws://127.0.0.1:8001" in text
    assert "http://127.0.0.1:5000" in text
    assert "1 enabled of 2" in text
    lines = text.splitlines()
    assert any(line.split()[:3] == ["a", "archive", "Fake"] and "max_points 50" in line for line in lines)
    assert any(line.split()[:2] == ["c", "clock"] and "disabled" in line for line in lines)
    remote = describe_config(load("", {"CROSSBAR_HOST": "sisock-crossbar"}))
    assert "wss://sisock-crossbar:8080" in remote and "not started here" in remote


def test_deeply_nested_toml_is_a_config_error() -> None:
    deep = "a = " + "[" * 5000 + "]" * 5000
    with pytest.raises(ConfigError) as err:
        load_config_text(deep, "deep.toml", {})
    assert err.value.problems == ["deep.toml: arrays or tables nested too deeply to read"]


# -- loading only what a process needs ---------------------------------------------------

SITE_WITH_A_BROKEN_NODE = """
[router]
tls_port = 9443

[nodes.a]
plugin = "archive"
data_dir = "/data"

[nodes.f]
plugin = "feed"

[nodes.b]
plugin = "broken"
"""


def counting_loader(loaded: list[str]):
    def loader(name: str):
        loaded.append(name)
        return fake_loader(name)

    return loader


def test_only_nodes_reads_those_tables_and_imports_their_plugins_only() -> None:
    loaded: list[str] = []
    cfg = load(SITE_WITH_A_BROKEN_NODE, only_nodes=["a"], plugin_loader=counting_loader(loaded))
    assert list(cfg.nodes) == ["a"] and cfg.nodes["a"].options.data_dir == "/data"
    assert loaded == ["archive"]  # the broken plugin's node is not read: no problem
    assert cfg.router.tls_port == 9443


def test_no_nodes_imports_no_plugin_and_still_checks_the_core_tables() -> None:
    loaded: list[str] = []
    cfg = load(SITE_WITH_A_BROKEN_NODE, only_nodes=(), plugin_loader=counting_loader(loaded))
    assert cfg.nodes == {} and loaded == []
    misspelt = SITE_WITH_A_BROKEN_NODE.replace("tls_port = 9443", "tls_prot = 1")
    assert problems(misspelt, only_nodes=()) == [
        "site.toml: router.tls_prot: unknown key (did you mean 'tls_port'?)"]


def test_only_plugins_reads_the_nodes_of_those_plugins() -> None:
    loaded: list[str] = []
    cfg = load(SITE_WITH_A_BROKEN_NODE, only_plugins=["feed"], plugin_loader=counting_loader(loaded))
    assert list(cfg.nodes) == ["f"] and loaded == ["feed"]


def test_every_node_is_read_by_default_and_a_broken_plugin_is_its_nodes_problem() -> None:
    assert problems(SITE_WITH_A_BROKEN_NODE) == [
        "site.toml: nodes.b.plugin: plugin 'broken' (fake.broken) failed to import: No module named 'numpyy'"
    ]
