"""Grafana template variables as they reach the bridge (pure, no Twisted).

Grafana interpolates a variable into a target or a ``/search``/``/variable`` text in
its *regex* format (``escapeRegex`` and the regex formatter of ``@grafana/data`` and
scenes): one value is regex-escaped (``a.b`` arrives as ``a\\.b``), several values
(a multi-value variable, or "All" without a custom value) become ``(a|b)``, and a
custom "All" value (``.*``) is inserted as typed. :func:`name_choices` reads a name
that way, :func:`text_matcher` a search text; user patterns are compiled by
:func:`compile_pattern`, which never raises.
"""

from __future__ import annotations

import re
from typing import Callable

#: Characters Grafana's regex format escapes with a backslash (``escapeRegex`` of
#: ``@grafana/data``: ``\\ ^ $ * + ? . ( ) | [ ] { } /``).
GRAFANA_REGEX_ESCAPED = frozenset("\\^$*+?.()|[]{}/")
_SPECIAL = re.compile("[" + re.escape("".join(sorted(GRAFANA_REGEX_ESCAPED))) + "]")
#: Longest name pattern compiled (a custom "All" value, a typed regex).
MAX_PATTERN = 500


def compile_pattern(text: str, flags: int = 0) -> re.Pattern[str] | str:
    """``re.compile(text)``, or why it is not a pattern (never raises: a repeat count too
    large for ``re`` is an ``OverflowError``, deep nesting a ``RecursionError``)."""
    try:
        return re.compile(text, flags)
    except (re.error, OverflowError, RecursionError) as exc:
        return str(exc) or type(exc).__name__


def unescape_literal(text: str) -> str | None:
    """The name Grafana's regex escaping turned into ``text`` (``a\\.b`` -> ``a.b``);
    None when ``text`` holds regex syntax that is not escaped."""
    if _SPECIAL.search(text) is None:  # the common case: a plain name
        return text
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 < len(text) and text[i + 1] in GRAFANA_REGEX_ESCAPED:
                out.append(text[i + 1])
                i += 2
                continue
            return None
        if c in GRAFANA_REGEX_ESCAPED:
            return None
        out.append(c)
        i += 1
    return "".join(out)


def _alternatives(text: str) -> list[str]:
    """``text`` split at each ``|`` that is not escaped."""
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "|":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def name_choices(text: str) -> list[str] | re.Pattern[str]:
    """The names one side of ``node::field`` stands for, as Grafana interpolates a
    template variable in regex format: a plain or escaped name (``a\\.b``) is that name;
    ``(a|b)`` (a multi-value or "All" variable) is those names; anything else with regex
    syntax (a custom "All" value such as ``.*``) is a pattern the whole name must match.
    Text that is not a valid pattern is taken as a name."""
    literal = unescape_literal(text)
    if literal is not None:
        return [literal]
    if len(text) > 2 and text[0] == "(" and text[-1] == ")":
        names = [unescape_literal(p) for p in _alternatives(text[1:-1])]
        if all(n is not None for n in names):
            return list(dict.fromkeys(n for n in names if n is not None))
    pattern = compile_pattern(text) if len(text) <= MAX_PATTERN else text
    return [text] if isinstance(pattern, str) else pattern


def text_matcher(text: str) -> Callable[[str], bool]:
    """Whether a name contains ``text``, case-insensitive. The text comes interpolated in
    Grafana's regex format: an escaped name (``a\\.b``) is that name; text with regex
    syntax (``(a|b)::``, ``.*``) is searched as a regular expression."""
    text = text.strip()
    literal = unescape_literal(text)
    if literal is None and len(text) <= MAX_PATTERN:
        pattern = compile_pattern(text, re.IGNORECASE)
        if not isinstance(pattern, str):
            return pattern.search  # type: ignore[return-value]
    needle = (text if literal is None else literal).lower()
    return lambda name: needle in name.lower()
