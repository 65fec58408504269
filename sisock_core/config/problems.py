"""Problems in a site file: :class:`ConfigError` and how each problem line is written.

One line per problem, ``<file>: <key path>: <reason>``, with values described in TOML's
words (``expected an integer, got string '8080'``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from typing import Any, Iterable, Sequence


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


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key(key: str, valid: Iterable[str]) -> str:
    return "unknown key" + did_you_mean(key, valid)


#: TOML's name of each value type tomllib gives (bool before int, datetime before date)
_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (dict, "table"),
    (list, "list"), (dt.datetime, "datetime"), (dt.date, "date"), (dt.time, "time"),
)


def _kind(value: Any) -> str:
    """Friendly TOML name of a value's type."""
    return next((name for tp, name in _KINDS if isinstance(value, tp)), type(value).__name__)


def describe_value(value: Any) -> str:
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


class WrongValue(TypeError):
    """A value of the wrong type or outside its domain; the message is shown as is."""


def expected(what: str, value: Any) -> WrongValue:
    return WrongValue(f"expected {what}, got {describe_value(value)}")



def message(exc: BaseException) -> str:
    """The text of an exception as the operator should see it."""
    if isinstance(exc, KeyError):
        return "missing required key"
    text = str(exc)
    return text if text else type(exc).__name__
