"""Site configuration: ``site/nodes.toml`` parsed into attrs classes with cattrs.

The site file is TOML::

    state_dir = "/var/lib/sisock"      # optional
    log_level = "info"                 # optional (env LOGLEVEL)

    [router]                           # optional, see RouterConfig
    tls_port = 8080

    [nodes.apex_archive]               # one table per data node
    plugin = "weather"                 # required: an installed plugin
    description = "APEX weather"       # optional: default from the plugin
    enabled = true                     # optional
    max_points = 0                     # optional: 0 or absent means no cap
    data_dir = "/data/apex"            # any other key is an option of the plugin

:func:`load_config` reads it, checks everything at once and raises one
:class:`ConfigError` listing every problem, one line each::

    site.toml: router.tls_prot: unknown key (did you mean 'tls_port'?)
    site.toml: nodes.x.plugin: missing required key

The environment variables of the original sisock containers (``CROSSBAR_HOST``,
``CROSSBAR_TLS_PORT``, ``CROSSBAR_OCS_PORT``, ``WAMP_USER``, ``PORT``, ``LOGLEVEL``,
``MAX_POINTS``) and ``SISOCK_STATE_DIR`` override the file, so an existing deployment
carries over. A plugin's :attr:`~sisock_core.model.PluginSpec.env` maps further
variables to its options; a variable mapped to ``"name"`` or ``"description"`` (when
the options class has no field of that name) renames or describes the node instead.
Empty variables count as unset.

Pure code: no Twisted here, so it is tested with plain pytest.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Mapping as AbcMapping
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from sisock_core.model import PluginSpec
from sisock_core.plugins import PluginError, installed_plugins, load_plugin


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where generated files go: ``$SISOCK_STATE_DIR``, else ``$XDG_STATE_HOME/sisock``."""
    if env.get("SISOCK_STATE_DIR"):
        return Path(env["SISOCK_STATE_DIR"]).expanduser()
    base = env.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "sisock"


def _at_least(low: int, value: int) -> None:
    if value < low:
        raise ValueError(f"must be >= {low}, got {value}")


def _above(low: float, value: float) -> None:
    if not value > low:
        raise ValueError(f"must be > {low}, got {value}")


#: what ``[router] path`` may be: ``/`` or one path segment
WS_PATH_RE = re.compile(r"^/[A-Za-z0-9._~-]*$")


def _check_ws_path(value: str) -> None:
    if not WS_PATH_RE.match(value):
        raise ValueError(
            f"must be '/' or '/' and one path segment (letters, digits, '.', '_', '~', '-'), "
            f"e.g. '/ws'; got {value!r}"
        )


@attrs.frozen
class RouterConfig:
    """``[router]``: the crossbar WAMP router, and how every component reaches it."""

    start: bool = True  #: run crossbar on this machine (false: use one elsewhere)
    host: str = "127.0.0.1"  #: where components connect (env CROSSBAR_HOST)
    listen: str = "127.0.0.1"  #: interface the TLS WebSocket binds to
    tls_port: int = 8080  #: TLS WebSocket with WAMP-CRA (env CROSSBAR_TLS_PORT)
    ocs_port: int = 8001  #: plain WebSocket for OCS agents (env CROSSBAR_OCS_PORT)
    #: URL path of the router's WebSocket, where components connect; ``/ws`` like the
    #: original's crossbar, which serves a static page at ``/`` (env CROSSBAR_PATH)
    path: str = attrs.field(default="/ws", validator=lambda i, a, v: _check_ws_path(v))
    ocs_listen: str = "127.0.0.1"  #: interface of the OCS port; keep it on loopback
    #: let ``ocs_listen`` be a non-loopback interface (the OCS port has no authentication)
    allow_public_ocs: bool = False
    #: migration only: let sisock 0.2 data nodes on the OCS port (anonymous, like the original
    #: data-feed server) register ``org.simonsobservatory.consumer.*`` and join the hub;
    #: refused unless ``ocs_listen`` is loopback
    allow_legacy_ocs_nodes: bool = False
    realm: str = "test_realm"  #: WAMP realm of every component (the original's)
    tls_cert: str | None = None  #: PEM certificate; generated under state_dir when unset
    tls_key: str | None = None  #: PEM private key; generated with the certificate
    ca_cert: str | None = None  #: certificate clients trust (default: tls_cert)
    wamp_user: str = "server"  #: WAMP-CRA identity of nodes and hub (env WAMP_USER)
    secrets_file: str | None = None  #: TOML file with the WAMP-CRA secrets


@attrs.frozen
class HubConfig:
    """``[hub]``: the registry of live data nodes."""

    start: bool = True  #: run the hub on this machine


@attrs.frozen
class HttpConfig:
    """``[http]``: the Grafana HTTP bridge."""

    start: bool = True  #: run the HTTP bridge on this machine
    listen: str = "127.0.0.1"  #: a non-loopback interface requires basic auth
    port: int = 5000  #: env PORT
    username: str | None = None  #: basic-auth user (env SISOCK_HTTP_USER)
    password_file: str | None = None  #: file holding the password (env SISOCK_HTTP_PASSWORD wins)
    #: cap on the lists of /search, /metrics and /variable answers
    max_targets: int = attrs.field(default=1000, validator=lambda i, a, v: _at_least(1, v))
    #: seconds to wait for a node's answer (Grafana's proxy gives up after ~30 s)
    query_timeout: float = attrs.field(default=25.0, validator=lambda i, a, v: _above(0.0, v))
    #: origins allowed for browser-mode Grafana ("*": any origin)
    cors_origins: tuple[str, ...] = ("*",)
    #: gzip answers for clients that accept it (worth it only when Grafana is far away)
    gzip: bool = False
    #: open connections at most (lowered to fit the open-file limit); when full, a new
    #: connection replaces the oldest one that is not being answered
    max_connections: int = attrs.field(default=512, validator=lambda i, a, v: _at_least(1, v))
    #: seconds a client has to send a request's headers and body, from its first byte
    request_deadline: float = attrs.field(default=10.0, validator=lambda i, a, v: _above(0.0, v))
    #: requests of one client address answered at once; more get a 429
    max_client_requests: int = attrs.field(default=64, validator=lambda i, a, v: _at_least(1, v))
    #: points per series at most (Grafana's maxDataPoints, the data API's points); a larger
    #: budget is lowered with a notice on the panel
    max_points: int = attrs.field(default=20_000, validator=lambda i, a, v: _at_least(2, v))


@attrs.frozen
class NodeConfig:
    """One ``[nodes.<name>]`` table: a data node wrapping one plugin."""

    name: str
    plugin: str
    description: str
    enabled: bool = True
    max_points: int | None = None  #: cap on points per field (env MAX_POINTS)
    options: Any = None  #: instance of the plugin's options class
    #: the OS process serving it: ``None`` (the default: one per plugin), ``"own"`` or a group
    #: name (see :mod:`sisock_core.nodegroups`)
    process: str | None = None


@attrs.frozen
class SiteConfig:
    """The whole site file."""

    path: str  #: file it was read from ("<embedded defaults>" for the built-in one)
    state_dir: Path
    log_level: str = "info"  #: env LOGLEVEL
    router: RouterConfig = RouterConfig()
    hub: HubConfig = HubConfig()
    http: HttpConfig = HttpConfig()
    nodes: dict[str, NodeConfig] = attrs.field(factory=dict)


# -- the embedded default site ---------------------------------------------------------

#: Source name of the built-in configuration (``load_config(None)``).
EMBEDDED_SOURCE = "<embedded defaults>"

#: The site used when no file is given; ``site/nodes.toml`` holds the same text.
DEFAULT_SITE_TOML = """\
# sisock site configuration.
#
# Run everything on this machine with `sisock up site/nodes.toml`; check this file with
# `sisock check site/nodes.toml`. Every key is optional except each node's `plugin`.
# The commented values are the defaults. Relative paths are relative to this file.
# The environment variables of the original sisock containers override this file
# (CROSSBAR_HOST, CROSSBAR_TLS_PORT, CROSSBAR_OCS_PORT, WAMP_USER, PORT, LOGLEVEL,
# MAX_POINTS), and so does SISOCK_STATE_DIR.

# Generated files (TLS certificate, router config). Default: $SISOCK_STATE_DIR,
# else $XDG_STATE_HOME/sisock (~/.local/state/sisock).
# state_dir = "state"

# One of debug, info, warn, error, critical (env LOGLEVEL).
# log_level = "info"

# The crossbar WAMP router every component connects to.
# [router]
# start = true              # run it here; false to use a router elsewhere
# host = "127.0.0.1"        # where components connect (env CROSSBAR_HOST; a remote
#                           # host there also turns off start for router and hub)
# listen = "127.0.0.1"      # interface of the TLS WebSocket
# tls_port = 8080           # TLS WebSocket with WAMP-CRA (env CROSSBAR_TLS_PORT)
# ocs_port = 8001           # plain WebSocket for OCS agents (env CROSSBAR_OCS_PORT)
# path = "/ws"              # URL path of the WebSocket, as the original's (env CROSSBAR_PATH)
# ocs_listen = "127.0.0.1"  # keep it on loopback: anyone reaching it may publish
# allow_public_ocs = false  # true lets ocs_listen be another interface (trusted networks)
# allow_legacy_ocs_nodes = false  # migration only: sisock 0.2 data nodes on the OCS port
#                           # may register and join the hub (ocs_listen must be loopback)
# realm = "test_realm"
# tls_cert = "server_cert.pem"  # default: generated under state_dir/tls
# tls_key = "server_key.pem"
# ca_cert = "ca.pem"        # what clients trust; default: tls_cert
# wamp_user = "server"      # WAMP-CRA identity of nodes and hub (env WAMP_USER)
# secrets_file = "secrets.toml"  # WAMP-CRA secrets

# The registry of live data nodes.
# [hub]
# start = true

# The Grafana HTTP bridge (simple JSON datasource).
# [http]
# start = true
# listen = "127.0.0.1"      # another interface requires username and a password
# port = 5000               # env PORT
# username = "grafana"      # basic auth (env SISOCK_HTTP_USER)
# password_file = "http_password"  # mode 600; env SISOCK_HTTP_PASSWORD wins
# max_targets = 1000        # cap on /search, /metrics, /variable lists
# query_timeout = 25.0      # seconds to wait for a node's answer
# cors_origins = ["*"]      # origins allowed for browser-mode Grafana
# gzip = false              # compress answers (helps only over slow links)
# max_connections = 512     # open at most (and below the open-file limit)
# request_deadline = 10.0   # seconds to send a request's headers and body
# max_client_requests = 64  # answered at once per client address; more get a 429
# max_points = 20000        # points per series at most (maxDataPoints above: a notice)

# Data nodes: one [nodes.<name>] table each. The name (lowercase letters, digits,
# '_', starting with a letter) is the node's name on the wire. Keys:
#   plugin       required: an installed plugin (`sisock plugins` lists them)
#   description  default: the plugin's own description
#   enabled      default: true
#   max_points   cap on points returned per field; 0 or absent: no cap (env MAX_POINTS)
#   process      the OS process serving it: absent, the one shared by the nodes of its
#                plugin; "own", a process of its own; another name, that named group
# Every other key is an option of the plugin.

# Weather station archive, served from the example data bundled with the plugin.
[nodes.apex_archive]
plugin = "weather"
"""


# -- problems --------------------------------------------------------------------------


class ConfigError(Exception):
    """The site configuration is invalid; ``problems`` lists every problem, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


KeyPath = tuple[str | int, ...]
Found = list[tuple[KeyPath, str]]  # problems as (key path, reason)

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_key_path(path: Sequence[str | int]) -> str:
    """A dotted TOML key path: ``("nodes", "x", "data_dir")`` -> ``nodes.x.data_dir``.

    Keys that are not bare TOML keys are quoted; array indexes are written ``[i]``.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
        out = f"{out}.{key}" if out else key
    return out


def format_problem(file: str, path: str | Sequence[str | int], reason: str) -> str:
    """One problem line: ``<file>: <key path>: <reason>``."""
    where = path if isinstance(path, str) else format_key_path(path)
    return f"{file}: {where}: {reason}"


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(key: str, valid: Iterable[str]) -> str:
    return "unknown key" + _did_you_mean(key, valid)


def _kind(value: Any) -> str:
    """Friendly TOML name of a value's type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    return type(value).__name__


def _describe(value: Any) -> str:
    """``string 'abc'``, ``integer 5``, ``boolean true``, ``a table``..."""
    kind = _kind(value)
    if kind in ("table", "list"):
        return f"a {kind}"
    if kind == "boolean":
        return f"boolean {'true' if value else 'false'}"
    if kind == "string":
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"string {text!r}"
    if kind in ("datetime", "date", "time"):
        return f"{kind} {value.isoformat()}"
    return f"{kind} {value!r}"


class _WrongValue(TypeError):
    """A value of the wrong type or outside its domain; the message is shown as is."""


def _expected(what: str, value: Any) -> _WrongValue:
    return _WrongValue(f"expected {what}, got {_describe(value)}")


# -- the converter ---------------------------------------------------------------------


_SEQUENCES = {list, tuple, set, frozenset}
_ABC_SEQUENCES = {"Sequence", "MutableSequence", "Set", "MutableSet", "Collection", "Iterable"}


def _is_sequence_type(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    if origin in _SEQUENCES:
        return True
    return (
        getattr(origin, "__module__", "") == "collections.abc"
        and getattr(origin, "__name__", "") in _ABC_SEQUENCES
    )


def _is_mapping_type(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return origin is dict or origin in (AbcMapping, typing.Mapping) or (
        getattr(origin, "__module__", "") == "collections.abc"
        and getattr(origin, "__name__", "") in ("Mapping", "MutableMapping")
    )


def _structure_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value)
    return value


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected("an integer", value)
    return value


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _expected("a number", value)
    return float(value)


def _structure_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise _expected("a boolean", value)
    return value


def _structure_path(value: Any, _: Any) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise _expected("a string", value)
    return Path(value).expanduser()


def _structure_literal(value: Any, tp: Any) -> Any:
    allowed = typing.get_args(tp)
    for choice in allowed:
        if value == choice and type(value) is type(choice):
            return choice
    choices = ", ".join(repr(a) for a in allowed)
    raise _WrongValue(f"must be one of {choices}, got {_describe(value)}")


def _sequence_hook_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    origin = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    container: Callable[[list[Any]], Any] = list
    if origin in (tuple, set, frozenset):
        container = origin
    elif getattr(origin, "__name__", "") in ("Set", "MutableSet"):
        container = set
    hetero = origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis)
    elem_types = list(args) if hetero else [args[0] if args else Any]

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _expected("a list", value)
        if hetero and len(value) != len(elem_types):
            raise _WrongValue(f"expected a list of {len(elem_types)} items, got {len(value)}")
        out, errors = [], []
        for i, item in enumerate(value):
            et = elem_types[i] if hetero else elem_types[0]
            try:
                out.append(item if et is Any else conv.structure(item, et))
            except Exception as exc:
                note = IterableValidationNote(f"item {i}", i, et)
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return container(out)

    return hook


def _mapping_hook_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = typing.get_args(tp)
    key_type, value_type = (args[0], args[1]) if len(args) == 2 else (Any, Any)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _expected("a table", value)
        out, errors = {}, []
        for k, v in value.items():
            try:
                key = k if key_type in (Any, str) else conv.structure(k, key_type)
                out[key] = v if value_type is Any else conv.structure(v, value_type)
            except Exception as exc:
                note = IterableValidationNote(f"key {k}", k, value_type)
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return out

    return hook


def _attrs_hook_factory(cl: type, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    base = make_dict_structure_fn(cl, conv)

    def hook(value: Any, tp: Any) -> Any:
        if isinstance(value, cl):
            return value
        if not isinstance(value, dict):
            raise _expected("a table", value)
        return base(value, tp)

    return hook


def make_converter() -> cattrs.Converter:
    """The strict converter used for every table of the site file.

    Unknown keys are errors (``forbid_extra_keys``), errors are collected per key
    (``detailed_validation``), and no value is coerced: ``"8080"`` is not an integer,
    ``1`` is not a boolean, ``"abc"`` is not a list.
    """
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(Path, _structure_path)
    conv.register_structure_hook_func(lambda t: typing.get_origin(t) is Literal, _structure_literal)
    conv.register_structure_hook_factory(
        _is_sequence_type, lambda t: _sequence_hook_factory(t, conv)
    )
    conv.register_structure_hook_factory(
        _is_mapping_type, lambda t: _mapping_hook_factory(t, conv)
    )
    conv.register_structure_hook_factory(attrs.has, lambda t: _attrs_hook_factory(t, conv))
    return conv


# Environment values are strings; these hooks parse them into the option's type.

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_int(value: Any, _: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _WrongValue(f"expected an integer, got {value!r}") from None
    return _structure_int(value, int)


def _env_float(value: Any, _: Any) -> float:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _WrongValue(f"expected a number, got {value!r}") from None
    return _structure_float(value, float)


def _env_bool(value: Any, _: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise _WrongValue(f"expected a boolean (true or false), got {value!r}")
    return _structure_bool(value, bool)


def make_env_converter() -> cattrs.Converter:
    """Like :func:`make_converter`, but parses strings from environment variables:
    ``"8080"`` -> 8080, ``"false"`` -> False, ``"a,b"`` -> ``["a", "b"]`` for lists."""
    conv = make_converter()
    conv.register_structure_hook(int, _env_int)
    conv.register_structure_hook(float, _env_float)
    conv.register_structure_hook(bool, _env_bool)
    strict_sequence = _sequence_hook_factory

    def sequence_factory(tp: Any) -> Callable[[Any, Any], Any]:
        inner = strict_sequence(tp, conv)

        def hook(value: Any, t: Any) -> Any:
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            return inner(value, t)

        return hook

    conv.register_structure_hook_factory(_is_sequence_type, sequence_factory)
    return conv


# -- turning cattrs errors into problems -----------------------------------------------


def _message(exc: BaseException) -> str:
    """The text of an exception as the operator should see it."""
    if isinstance(exc, KeyError):
        return "missing required key"
    text = str(exc)
    return text if text else type(exc).__name__


def _lookup(root: Any, path: KeyPath) -> Any:
    value = root
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _init_fields(cl: type) -> list[str]:
    return [a.name for a in attrs.fields(cl) if a.init]


@attrs.define
class _Structurer:
    """Structures raw TOML values with the strict converter, collecting problems.

    Walks cattrs' ``ClassValidationError``/``IterableValidationError`` groups (via their
    ``group_exceptions`` and validation notes, like ``cattrs.transform_error``) but
    keeps paths as tuples, so problems can be sorted into file order and printed as
    dotted TOML paths.
    """

    conv: cattrs.Converter
    #: extra valid keys to suggest for unknown keys, by path (node core keys next to options)
    also_valid: dict[KeyPath, list[str]] = attrs.field(factory=dict)

    def structure(self, raw: Any, cl: Any, path: KeyPath) -> tuple[Any, Found]:
        try:
            return self.conv.structure(raw, cl), []
        except Exception as exc:  # every problem of this value, as (path, reason)
            return None, self._walk(exc, raw, path, ())

    def _walk(self, exc: BaseException, root: Any, base: KeyPath, rel: KeyPath) -> Found:
        found: Found = []
        if isinstance(exc, ClassValidationError):
            with_notes, without = exc.group_exceptions()
            for sub, note in with_notes:
                found += self._walk(sub, root, base, rel + (note.name,))
            refused = False
            for sub in without:
                if isinstance(sub, ForbiddenExtraKeysError):
                    found += self._extra_keys(sub, _lookup(root, rel), base + rel)
                else:  # the class itself refused its values: an attrs validator
                    refused = True
                    found += self._validators(exc.cl, _lookup(root, rel), base + rel, sub)
            if not refused:  # cattrs stopped before the validators: run those it can
                failed = {note.name for _, note in with_notes}
                found += self._field_validators(exc.cl, _lookup(root, rel), base + rel, failed)
        elif isinstance(exc, IterableValidationError):
            with_notes, without = exc.group_exceptions()
            for sub, note in with_notes:
                found += self._walk(sub, root, base, rel + (note.index,))
            for sub in without:
                found.append((base + rel, _message(sub)))
        else:
            found.append((base + rel, _message(exc)))
        return found

    def _extra_keys(self, exc: ForbiddenExtraKeysError, raw: Any, path: KeyPath) -> Found:
        valid = _init_fields(exc.cl) + self.also_valid.get(path, [])
        if isinstance(raw, dict):  # in file order
            keys = [k for k in raw if k in exc.extra_fields]
        else:
            keys = sorted(exc.extra_fields)
        out = []
        for key in keys:
            out.append((path + (key,), _unknown_key(key, valid)))
        return out

    def _field_validators(self, cl: type, raw: Any, path: KeyPath, failed: set[str]) -> Found:
        """Validators of the fields that structured fine, when another key's problem
        kept cattrs from building the instance. They run without an instance, so a
        validator needing one (``AttributeError``) is skipped."""
        if not isinstance(raw, dict):
            return []
        found = []
        for a in attrs.fields(cl):
            if a.validator is None or a.name in failed or a.name not in raw or not a.init:
                continue
            try:
                value = self.conv.structure(raw[a.name], a.type)
            except Exception:
                continue
            try:
                a.validator(None, a, value)
            except AttributeError:
                continue
            except Exception as sub:
                found.append((path + (a.name,), _message(sub)))
        return found

    def _validators(self, cl: type, raw: Any, path: KeyPath, exc: BaseException) -> Found:
        """Find which fields' validators fail, by building the instance without them
        and running each validator alone (attrs would stop at the first)."""
        try:
            with attrs.validators.disabled():
                instance = self.conv.structure(raw, cl)
        except Exception:
            return [(path, _message(exc))]
        found = []
        for a in attrs.fields(cl):
            if a.validator is None:
                continue
            try:
                a.validator(instance, a, getattr(instance, a.name))
            except Exception as sub:
                found.append((path + (a.name,), _message(sub)))
        return found or [(path, _message(exc))]


# -- the loader ------------------------------------------------------------------------

TOP_LEVEL_KEYS = ("state_dir", "log_level", "router", "hub", "http", "nodes")
NODE_CORE_KEYS = ("plugin", "description", "enabled", "max_points", "process")
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
NODE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

_TABLES: dict[str, type] = {"router": RouterConfig, "hub": HubConfig, "http": HttpConfig}
_PORTS = {("router", "tls_port"), ("router", "ocs_port"), ("http", "port")}
_ROUTER_PATHS = ("tls_cert", "tls_key", "ca_cert", "secrets_file")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}

PluginLoader = Callable[[str], tuple[Any, PluginSpec]]


@attrs.frozen
class _NodeCore:
    """The keys of a ``[nodes.<name>]`` table that are not plugin options."""

    plugin: str  #: an installed plugin (``sisock plugins`` lists them)
    description: str | None = None  #: shown to consumers; default: the plugin's description
    enabled: bool = True  #: false: keep the table but do not run the node
    max_points: int | None = None  #: cap on points returned per field; 0 or absent: no cap (env MAX_POINTS)
    #: the OS process serving it: absent, the one shared by the nodes of its plugin; "own", a
    #: process of its own; another name (lowercase letters, digits, '_'), that group's process
    process: str | None = None


def _check_port(value: int) -> str | None:
    if not 1 <= value <= 65535:
        return f"must be between 1 and 65535, got {value}"
    return None


def _check_log_level(value: str) -> tuple[str | None, str | None]:
    low = value.strip().lower()
    low = "warn" if low == "warning" else low
    if low in LOG_LEVELS:
        return low, None
    return None, f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}"


def _is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bad_node_name(name: str) -> str:
    reason = "invalid node name: use lowercase letters, digits and '_', starting with a letter"
    fixed = re.sub(r"[^a-z0-9_]", "_", name.strip().lower())
    if NODE_NAME_RE.match(fixed) and fixed != name:
        reason += f" (e.g. {fixed!r})"
    return reason


def _resolve_path(value: str | Path, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = base_dir / p
    return Path(os.path.normpath(p))


def _toml_error(source: str, doc: str, exc: tomllib.TOMLDecodeError) -> str:
    """``file: line N, column M: reason`` from tomllib's message."""
    text = str(exc)
    m = re.match(r"^(.*) \(at line (\d+), column (\d+)\)$", text, re.S)
    if m:
        return f"{source}: line {m.group(2)}, column {m.group(3)}: {m.group(1)}"
    m = re.match(r"^(.*) \(at end of document\)$", text, re.S)
    if m:
        lines = doc.split("\n")
        return f"{source}: line {len(lines)}, column {len(lines[-1]) + 1}: {m.group(1)}"
    return f"{source}: {text}"


class _Loader:
    """One load: parses, structures, applies the environment, collects problems."""

    def __init__(
        self,
        source: str,
        env: Mapping[str, str],
        base_dir: Path,
        plugin_loader: PluginLoader,
        installed: Callable[[], Iterable[str]],
    ) -> None:
        self.source = source
        self.env = {k: v for k, v in env.items() if v != ""}
        self.base_dir = base_dir
        self.plugin_loader = plugin_loader
        self.installed = installed
        self.conv = make_converter()
        self.env_conv = make_env_converter()
        self.raw: dict[str, Any] = {}
        self.file_problems: list[tuple[KeyPath, str]] = []
        self.env_problems: list[str] = []
        #: keys whose value came from the environment: path -> "env VAR"
        self.origins: dict[KeyPath, str] = {}
        self._plugins: dict[str, tuple[Any, PluginSpec] | str] = {}

    # -- problems ----------------------------------------------------------------

    def problem(self, path: KeyPath, reason: str) -> None:
        self.file_problems.append((path, reason))

    def env_problem(self, var: str, reason: str) -> None:
        self.env_problems.append(format_problem(self.source, f"env {var}", reason))

    def _position(self, path: KeyPath) -> tuple[int, ...]:
        """Where a key sits in the file: indexes of each component (tables in the order
        they first appear); keys missing from the file sort at the end of their table."""
        pos, value = [], self.raw
        for part in path:
            if isinstance(value, dict) and part in value:
                pos.append(list(value).index(part))
                value = value[part]
            elif isinstance(value, list) and isinstance(part, int) and part < len(value):
                pos.append(part)
                value = value[part]
            else:
                pos.append(len(value) if isinstance(value, (dict, list)) else 0)
                value = None
        return tuple(pos)

    def _label(self, path: KeyPath) -> str:
        for i in range(len(path), 0, -1):
            if path[:i] in self.origins:
                return self.origins[path[:i]]
        return format_key_path(path)

    def all_problems(self) -> list[str]:
        ordered = sorted(self.file_problems, key=lambda p: self._position(p[0]))
        lines = [format_problem(self.source, self._label(path), reason) for path, reason in ordered]
        lines += self.env_problems
        return list(dict.fromkeys(lines))  # the same problem once

    # -- the file ----------------------------------------------------------------

    def load(self, text: str) -> SiteConfig:
        try:
            self.raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([_toml_error(self.source, text, exc)]) from None
        except RecursionError:  # tomllib recurses per nesting level
            raise ConfigError([f"{self.source}: arrays or tables nested too deeply to read"]) from None

        for key in self.raw:
            if key not in TOP_LEVEL_KEYS:
                self.problem((key,), _unknown_key(key, TOP_LEVEL_KEYS))

        state_dir = self._state_dir()
        log_level = self._log_level()
        tables = {name: self._table(name, cl) for name, cl in _TABLES.items()}
        nodes = self._nodes()
        tables, nodes = self._apply_env(tables, nodes)

        problems = self.all_problems()
        if problems:
            raise ConfigError(problems)
        if "SISOCK_STATE_DIR" in self.env:
            state_dir = Path(os.path.abspath(Path(self.env["SISOCK_STATE_DIR"]).expanduser()))
        return SiteConfig(
            path=self.source,
            state_dir=state_dir,
            log_level=log_level,
            router=tables["router"],
            hub=tables["hub"],
            http=tables["http"],
            nodes=nodes,
        )

    def _state_dir(self) -> Path:
        if "state_dir" not in self.raw:
            return default_state_dir(self.env)
        value = self.raw["state_dir"]
        if not isinstance(value, str):
            self.problem(("state_dir",), str(_expected("a string", value)))
            return default_state_dir(self.env)
        return _resolve_path(value, self.base_dir)

    def _log_level(self) -> str:
        level = "info"
        if "log_level" in self.raw:
            value = self.raw["log_level"]
            if not isinstance(value, str):
                self.problem(("log_level",), str(_expected("a string", value)))
            else:
                checked, reason = _check_log_level(value)
                if reason:
                    self.problem(("log_level",), reason)
                else:
                    level = checked or level
        if "LOGLEVEL" in self.env:
            checked, reason = _check_log_level(self.env["LOGLEVEL"])
            if reason:
                self.env_problem("LOGLEVEL", reason)
            else:
                level = checked or level
        return level

    def _table(self, name: str, cl: type) -> Any:
        raw = self.raw.get(name, {})
        if not isinstance(raw, dict):
            self.problem((name,), str(_expected("a table", raw)))
            return None
        value, problems = _Structurer(self.conv).structure(raw, cl, (name,))
        for path, reason in problems:
            self.problem(path, reason)
        bad_port = False
        for table, field in _PORTS:
            port = raw.get(field)
            if table == name and isinstance(port, int) and not isinstance(port, bool):
                reason = _check_port(port)
                if reason:
                    self.problem((name, field), reason)
                    bad_port = True
        if value is None:
            return None
        if name == "router":
            paths = {
                f: str(_resolve_path(getattr(value, f), self.base_dir))
                for f in _ROUTER_PATHS
                if getattr(value, f) is not None
            }
            value = attrs.evolve(value, **paths)
        if name == "http" and value.password_file is not None:
            value = attrs.evolve(
                value, password_file=str(_resolve_path(value.password_file, self.base_dir))
            )
        return None if bad_port else value

    def _nodes(self) -> dict[str, NodeConfig | None]:
        raw = self.raw.get("nodes", {})
        if not isinstance(raw, dict):
            self.problem(("nodes",), str(_expected("a table", raw)))
            return {}
        nodes: dict[str, NodeConfig | None] = {}
        for name, table in raw.items():
            nodes[name] = self._node(name, table)
        return nodes

    def _plugin(self, name: str) -> tuple[Any, PluginSpec] | str:
        """The loaded plugin, or why it cannot be loaded (cached per plugin name)."""
        if name not in self._plugins:
            installed = sorted(self.installed())
            if name not in installed:
                self._plugins[name] = (
                    f"plugin {name!r} is not installed{_did_you_mean(name, installed)}; "
                    f"installed: {', '.join(installed) if installed else 'none'}"
                )
            else:
                try:
                    loaded = self.plugin_loader(name)
                except PluginError as exc:
                    self._plugins[name] = str(exc)
                except Exception as exc:  # a plugin bug: show it, keep checking the file
                    self._plugins[name] = f"plugin {name!r} failed to load: {_message(exc)}"
                else:
                    options = loaded[1].options
                    if options is not None and not attrs.has(options):
                        self._plugins[name] = f"plugin {name!r}: options must be an attrs class"
                    else:
                        self._plugins[name] = loaded
        return self._plugins[name]

    def _node(self, name: str, table: Any) -> NodeConfig | None:
        path: KeyPath = ("nodes", name)
        ok = True
        if not NODE_NAME_RE.match(name):
            self.problem(path, _bad_node_name(name))
            ok = False
        if not isinstance(table, dict):
            self.problem(path, str(_expected("a table", table)))
            return None
        core_raw = {k: v for k, v in table.items() if k in NODE_CORE_KEYS}
        options_raw = {k: v for k, v in table.items() if k not in NODE_CORE_KEYS}
        core, problems = _Structurer(self.conv).structure(core_raw, _NodeCore, path)
        for p, reason in problems:
            self.problem(p, reason)
        max_points = table.get("max_points")
        if isinstance(max_points, int) and not isinstance(max_points, bool) and max_points < 0:
            self.problem(path + ("max_points",), f"must be >= 0, got {max_points}")
            ok = False
        process = table.get("process")
        if isinstance(process, str) and not NODE_NAME_RE.match(process):
            self.problem(path + ("process",), f'must be "own" or a group name (lowercase letters, digits '
                                              f"and '_', starting with a letter), got {process!r}")
            ok = False
        plugin_name = table.get("plugin")
        if not isinstance(plugin_name, str):
            return None  # reported above as missing or of the wrong type
        loaded = self._plugin(plugin_name)
        if isinstance(loaded, str):
            self.problem(path + ("plugin",), loaded)
            return None
        spec = loaded[1]
        options = self._options(path, plugin_name, spec, options_raw)
        if core is None or options is _FAILED or not ok:
            return None
        return NodeConfig(
            name=name,
            plugin=plugin_name,
            description=core.description if core.description is not None else spec.description,
            enabled=core.enabled,
            max_points=core.max_points or None,
            options=options,
            process=core.process,
        )

    def _options(self, path: KeyPath, plugin: str, spec: PluginSpec, raw: dict[str, Any]) -> Any:
        """The plugin's options instance, with the plugin's environment variables applied."""
        cl = spec.options
        if cl is None:
            for key in raw:
                reason = _unknown_key(key, NODE_CORE_KEYS)
                if reason == "unknown key":
                    reason += f" (plugin {plugin!r} takes no options)"
                self.problem(path + (key,), reason)
            return _FAILED if raw else None
        env_values, failed_env = self._plugin_env_values(plugin, spec)
        merged = dict(raw)
        later: dict[str, tuple[str, Any]] = {}
        for option, (var, value) in env_values.items():
            if option in raw:
                later[option] = (var, value)
            else:  # fills a key the file leaves out (maybe a required one)
                merged[option] = value
                self.origins[path + (option,)] = f"env {var}"
        structurer = _Structurer(self.conv, also_valid={path: list(NODE_CORE_KEYS)})
        value, problems = structurer.structure(merged, cl, path)
        for p, reason in problems:
            key = p[len(path)] if len(p) > len(path) else None
            if reason == "missing required key" and key in failed_env:
                continue  # the variable meant to provide it is malformed; reported already
            self.problem(p, reason)
        if value is None:
            return _FAILED
        for option, (var, new) in later.items():
            try:
                value = attrs.evolve(value, **{option: new})
            except Exception as exc:
                self.env_problem(var, _message(exc))
                return _FAILED
        return value

    # -- the environment -----------------------------------------------------------

    def _env_target(
        self, plugin: str, spec: PluginSpec, var: str, target: str
    ) -> tuple[str, Any] | None:
        """``("option", type)`` or ``("node", key)`` for a plugin variable, or None."""
        cl = spec.options
        if cl is not None:
            try:
                attrs.resolve_types(cl)
            except Exception as exc:
                reason = f"plugin {plugin!r}: cannot resolve option types: {_message(exc)}"
                self.env_problem(var, reason)
                return None
            fields = attrs.fields_dict(cl)
            if target in fields and fields[target].init:
                return "option", fields[target].type
        if target in ("name", "description"):
            return "node", target
        self.env_problem(var, f"plugin {plugin!r} maps it to unknown option {target!r}")
        return None

    def _plugin_env_values(
        self, plugin: str, spec: PluginSpec
    ) -> tuple[dict[str, tuple[str, Any]], set[str]]:
        """Option values from the plugin's variables, converted to the option types."""
        values: dict[str, tuple[str, Any]] = {}
        failed: set[str] = set()
        for var, target in spec.env.items():
            if var not in self.env:
                continue
            kind = self._env_target(plugin, spec, var, target)
            if kind is None or kind[0] != "option":
                continue
            value, problems = _Structurer(self.env_conv).structure(self.env[var], kind[1], ())
            if problems:
                for _, reason in problems:
                    self.env_problem(var, reason)
                failed.add(target)
            else:
                values[target] = (var, value)
        return values, failed

    def _env_int(self, var: str, check: Callable[[int], str | None]) -> int | None:
        if var not in self.env:
            return None
        try:
            value = _env_int(self.env[var], int)
        except _WrongValue as exc:
            self.env_problem(var, str(exc))
            return None
        reason = check(value)
        if reason:
            self.env_problem(var, reason)
            return None
        return value

    def _apply_env(
        self, tables: dict[str, Any], nodes: dict[str, NodeConfig | None]
    ) -> tuple[dict[str, Any], dict[str, NodeConfig]]:
        router: dict[str, Any] = {}
        if "CROSSBAR_HOST" in self.env:
            router["host"] = self.env["CROSSBAR_HOST"].strip()
        for var, field in (("CROSSBAR_TLS_PORT", "tls_port"), ("CROSSBAR_OCS_PORT", "ocs_port")):
            port = self._env_int(var, _check_port)
            if port is not None:
                router[field] = port
        if "WAMP_USER" in self.env:
            router["wamp_user"] = self.env["WAMP_USER"]
        if "CROSSBAR_PATH" in self.env:
            path = self.env["CROSSBAR_PATH"].strip()
            try:
                _check_ws_path(path)
            except ValueError as exc:
                self.env_problem("CROSSBAR_PATH", str(exc))
            else:
                router["path"] = path
        http_port = self._env_int("PORT", _check_port)
        max_points = self._env_int(
            "MAX_POINTS", lambda n: f"must be >= 0, got {n}" if n < 0 else None
        )

        if "host" in router and not _is_loopback(router["host"]):
            # the router runs elsewhere (the original's CROSSBAR_HOST=sisock-crossbar)
            for name in ("router", "hub"):
                raw = self.raw.get(name)
                explicit = isinstance(raw, dict) and "start" in raw
                if not explicit and tables[name] is not None:
                    tables[name] = attrs.evolve(tables[name], start=False)
        if tables["router"] is not None and router:
            tables["router"] = attrs.evolve(tables["router"], **router)
        if tables["http"] is not None and http_port is not None:
            tables["http"] = attrs.evolve(tables["http"], port=http_port)

        renamed: dict[str, tuple[str, str]] = {}  # old name -> (new name, variable)
        for name, node in list(nodes.items()):
            if node is None:
                continue
            if max_points is not None:
                node = attrs.evolve(node, max_points=max_points or None)
            loaded = self._plugins.get(node.plugin)
            if isinstance(loaded, tuple):
                node, new_name = self._node_env(node, loaded[1])
                if new_name is not None:
                    renamed[name] = new_name
            nodes[name] = node

        final: dict[str, NodeConfig] = {}
        owners: dict[str, list[str | None]] = {}
        for name, node in nodes.items():
            new, var = renamed.get(name, (name, None))
            owners.setdefault(new, []).append(var)
            if node is not None:
                final.setdefault(new, attrs.evolve(node, name=new))
        for new, vars_ in owners.items():
            if len(vars_) > 1:
                var = next((v for v in vars_ if v is not None), None)
                if var is not None:
                    self.env_problem(var, f"duplicate node name {new!r}")
        return tables, final

    def _node_env(
        self, node: NodeConfig, spec: PluginSpec
    ) -> tuple[NodeConfig, tuple[str, str] | None]:
        """Apply the node-level targets ("name", "description") of a plugin's variables."""
        new_name = None
        for var, target in spec.env.items():
            if var not in self.env or target not in ("name", "description"):
                continue
            if spec.options is not None and target in attrs.fields_dict(spec.options):
                continue  # an option of that name: applied with the options
            value = self.env[var].strip()
            if target == "description":
                node = attrs.evolve(node, description=value)
            elif not NODE_NAME_RE.match(value):
                self.env_problem(var, _bad_node_name(value))
            else:
                new_name = (value, var)
        return node, new_name


_FAILED = object()  # marks options that could not be structured (problems recorded)


# -- public API --------------------------------------------------------------------------


def load_config_text(
    text: str,
    source_name: str = "<string>",
    env: Mapping[str, str] = os.environ,
    *,
    base_dir: str | Path | None = None,
    plugin_loader: PluginLoader = load_plugin,
    installed: Callable[[], Iterable[str]] = installed_plugins,
) -> SiteConfig:
    """Parse site-config ``text``; ``source_name`` names it in problems and ``path``.

    Relative paths are resolved against ``base_dir`` (default: the directory of
    ``source_name``). ``plugin_loader`` (name -> ``(plugin manager, PluginSpec)``)
    and ``installed`` (plugin names) default to the real entry-point ones; tests
    inject fakes. Raises :class:`ConfigError` listing every problem.
    """
    base = Path(base_dir) if base_dir is not None else Path(source_name).parent
    loader = _Loader(source_name, env, Path(os.path.abspath(base)), plugin_loader, installed)
    return loader.load(text)


def load_config(
    path: str | Path | None,
    env: Mapping[str, str] = os.environ,
    *,
    plugin_loader: PluginLoader = load_plugin,
    installed: Callable[[], Iterable[str]] = installed_plugins,
) -> SiteConfig:
    """Load the site file at ``path`` (``None``: :data:`DEFAULT_SITE_TOML`).

    The environment (``env``) overrides the file; see the module docstring. Raises
    :class:`ConfigError` listing every problem, one line each
    (``<file>: <key path>: <reason>``).
    """
    if path is None:
        return load_config_text(
            DEFAULT_SITE_TOML, EMBEDDED_SOURCE, env,
            base_dir=Path.cwd(), plugin_loader=plugin_loader, installed=installed,
        )
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    return load_config_text(
        text, source, env, plugin_loader=plugin_loader, installed=installed
    )


def describe_config(config: SiteConfig) -> str:
    """A short human summary of ``config`` (printed by ``sisock check``)."""
    r, hub, http = config.router, config.hub, config.http
    where = "started here" if r.start else "not started here"
    lines = [
        f"config:    {config.path}",
        f"state dir: {config.state_dir}",
        f"log level: {config.log_level}",
        f"router:    wss://{r.host}:{r.tls_port}{r.path} realm {r.realm!r} as {r.wamp_user!r} ({where}"
        + (f", listening on {r.listen}:{r.tls_port}" if r.start else "")
        + f"); OCS ws://{r.ocs_listen}:{r.ocs_port}"
        + (" (legacy data nodes may register there: router.allow_legacy_ocs_nodes; turn it off "
           "once they are replaced)" if r.allow_legacy_ocs_nodes else ""),
        f"hub:       {'started here' if hub.start else 'not started here'}",
        f"http:      "
        + (f"http://{http.listen}:{http.port}" if http.start else "not started here"),
    ]
    enabled = [n for n in config.nodes.values() if n.enabled]
    lines.append(f"nodes:     {len(enabled)} enabled of {len(config.nodes)}")
    width = max((len(n) for n in config.nodes), default=0)
    pwidth = max((len(n.plugin) for n in config.nodes.values()), default=0)
    for node in config.nodes.values():
        extra = []
        if not node.enabled:
            extra.append("disabled")
        if node.max_points is not None:
            extra.append(f"max_points {node.max_points}")
        suffix = f" [{', '.join(extra)}]" if extra else ""
        lines.append(f"  {node.name:<{width}}  {node.plugin:<{pwidth}}  {node.description}{suffix}")
    return "\n".join(lines)
