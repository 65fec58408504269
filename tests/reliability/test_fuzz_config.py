"""Hostile site files for the config loader: only ConfigError, never another exception.

Hypothesis writes TOML documents with every TOML type in every place (sections that
should be tables given as strings, ports as floats, NaN, datetimes, huge integers,
unicode and empty keys, unknown keys, nodes of every installed plugin with random
options, so each plugin's own option checks run too), breaks valid files at random
byte positions, and sets the environment variables the loader honours to junk. Each
document is loaded with the real plugins (entry points): the result is a SiteConfig
or a ConfigError whose every line names the file (or variable) and a reason.
A few of the broken files also go through ``sisock check``: exit code 2, no traceback.
"""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sisock_core.config import ConfigError, SiteConfig, load_config_text
from sisock_core.plugins import installed_plugins

from .support import record

pytestmark = [pytest.mark.reliability]

SOURCE = "fuzz.toml"
PLUGINS = sorted(installed_plugins())
STATS = {"documents": 0, "valid": 0, "errors": 0, "problems": 0}

_key = st.one_of(
    st.sampled_from(["state_dir", "log_level", "start", "host", "listen", "tls_port", "ocs_port", "ocs_listen",
                     "allow_public_ocs", "realm", "tls_cert", "secrets_file", "wamp_user", "port", "username",
                     "password_file", "max_targets", "query_timeout", "cors_origins", "gzip", "plugin",
                     "description", "enabled", "max_points", "data_dir", "target", "feed", "buffer_time",
                     "max_samples", "keep_ocs_names", "db", "cache_mb", "scan_interval", "interval", "path",
                     "sql_host", "watch", "debounce", "address_root", "tls_prot", "plugn"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
)
_scalar = st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 65535, 65536, 8080, 0.5, 1e300]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.sampled_from(["debug", "info", "127.0.0.1", "0.0.0.0", "::1", "localhost", "weather", "g3", "",
                     "sqlite:///x.sqlite", "mysql://u:p@h:99999/db", "mysql://", "sqlite://", "/nonexistent",
                     "../..", "~", "\u0000", "💥", "x" * 5000]),
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)), st.dates(), st.times(),
)
_value = st.recursive(_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(_key, c, max_size=4),
                      max_leaves=10)
_table = st.dictionaries(_key, _value, max_size=6)
_node_name = st.one_of(st.sampled_from(["apex_archive", "g3_reader", "lakeshore", "x", "Bad-Name", "1st", ""]),
                       st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10))


@st.composite
def _node(draw):
    table = draw(_table)
    if draw(st.integers(0, 4)):
        table["plugin"] = draw(st.sampled_from(PLUGINS) | _value)
    return table


@st.composite
def documents(draw):
    doc = {}
    for key in draw(st.sets(st.sampled_from(["state_dir", "log_level", "router", "hub", "http", "nodes", "junk"]))):
        if key in ("router", "hub", "http"):
            doc[key] = draw(_table | _value)
        elif key == "nodes":
            doc[key] = draw(st.dictionaries(_node_name, _node() | _value, max_size=4) | _value)
        else:
            doc[key] = draw(_value)
    return doc


_ENV_VARS = ["CROSSBAR_HOST", "CROSSBAR_TLS_PORT", "CROSSBAR_OCS_PORT", "WAMP_USER", "PORT", "LOGLEVEL",
             "MAX_POINTS", "SISOCK_STATE_DIR", "DATA_DIRECTORY", "SCAN_INTERVAL", "SQL_HOST", "SQL_USER",
             "SQL_PASSWD", "SQL_DB", "TARGET", "FEED", "NAME", "DESCRIPTION", "BUFFER_TIME"]
_env = st.dictionaries(st.sampled_from(_ENV_VARS), st.one_of(
    st.sampled_from(["", "0", "-1", "65536", "8080", "nan", "inf", "1e999", "debug", "loud", "x y", "💥",
                     "/tmp", "../x", "0.0.0.0"]),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)), max_size=5)


def load(text: str, env: dict) -> SiteConfig | ConfigError:
    STATS["documents"] += 1
    try:
        cfg = load_config_text(text, SOURCE, env, base_dir="/tmp")
    except ConfigError as exc:
        STATS["errors"] += 1
        STATS["problems"] += len(exc.problems)
        assert exc.problems, "a ConfigError without problems"
        for line in exc.problems:
            assert line.startswith((f"{SOURCE}:", "env ", "environment")) or ": " in line, line
            assert line.split(": ", 1)[-1].strip(), line
        return exc
    STATS["valid"] += 1
    assert isinstance(cfg, SiteConfig)
    return cfg


_FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_FUZZ
@given(doc=documents(), env=_env)
def test_generated_documents(doc, env):
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):  # a value TOML cannot hold (e.g. a time with a zone)
        return
    load(text, env)


VALID = """\
state_dir = "state"
log_level = "info"

[router]
tls_port = 8080
ocs_port = 8001

[http]
port = 5000

[nodes.apex_archive]
plugin = "weather"

[nodes.lakeshore]
plugin = "datafeed"
target = "LSA22YE"
feed = "temperatures"

[nodes.g3_reader]
plugin = "g3"
data_dir = "/data/hk"
db = "sqlite:///index.sqlite"
"""


@_FUZZ
@given(cuts=st.lists(st.tuples(st.integers(0, len(VALID)), st.integers(0, 6),
                               st.text(st.characters(exclude_categories=("Cs",)), max_size=4)),
                     min_size=1, max_size=4))
def test_broken_valid_files(cuts):
    text = VALID
    for at, drop, insert in cuts:
        at = min(at, len(text))
        text = text[:at] + insert + text[at + drop:]
    load(text, {})


def test_valid_file_loads_and_every_env_override_is_checked():
    cfg = load(VALID, {})
    assert isinstance(cfg, SiteConfig) and set(cfg.nodes) == {"apex_archive", "lakeshore", "g3_reader"}
    for var in _ENV_VARS:
        for junk in ("nan", "-1", "💥", "1e999", ""):
            load(VALID, {var: junk})


@pytest.mark.parametrize("text", [
    "[router\ntls_port = 1",
    "router = 5\nnodes = []",
    "[nodes.a]\nplugin = 'g3'\ndata_dir = 7\ndb = 'mysql://root@127.0.0.1:99999/x'",
    "[nodes.a]\nplugin = 'datafeed'\ntarget = 'a.b'\nfeed = ''\nbuffer_time = nan",
    "[http]\nport = 1e3\nmax_targets = -1\nquery_timeout = inf\ncors_origins = 'x'",
    "\ufeff[nodes.x]\nplugin = 'weather'\ndata_dir = '/nonexistent/\u0000'",
    "a = " + "[" * 500 + "]" * 500,
])
def test_sisock_check_reports_clearly(tmp_path, text):
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "sisock_core.cli", "check", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and str(path) in out.stderr, out.stderr


def test_report():
    record("config fuzz", f"{STATS['documents']} documents: {STATS['valid']} valid, {STATS['errors']} "
                          f"ConfigErrors ({STATS['problems']} problem lines), no other exception")
    assert STATS["errors"] > STATS["documents"] // 2 and STATS["valid"] > 0
