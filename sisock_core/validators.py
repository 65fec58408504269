"""attrs validators for option classes, shared by the core's tables and by plugins.

Each raises ``ValueError`` with a message the site-file checker shows as is, after the
key's path (``site.toml: nodes.x.interval: must be a positive number, got 0``)::

    from sisock_core.validators import positive

    @attrs.frozen
    class Options:
        interval: float = attrs.field(default=1.0, validator=positive)
"""

from __future__ import annotations

from typing import Any, Callable


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive(instance: Any, attribute: Any, value: Any) -> None:
    """A number > 0."""
    if not _is_number(value) or not value > 0:
        raise ValueError(f"must be a positive number, got {value!r}")


def positive_int(instance: Any, attribute: Any, value: Any) -> None:
    """An integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")


def non_negative(instance: Any, attribute: Any, value: Any) -> None:
    """A number >= 0 (booleans refused)."""
    if not _is_number(value) or not value >= 0:
        raise ValueError(f"must be >= 0, got {value!r}")


def at_least(low: int) -> Callable[[Any, Any, Any], None]:
    """A number >= ``low``."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if not _is_number(value) or not value >= low:
            raise ValueError(f"must be >= {low}, got {value!r}")

    return check


def above(low: float) -> Callable[[Any, Any, Any], None]:
    """A number > ``low``."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if not _is_number(value) or not value > low:
            raise ValueError(f"must be > {low}, got {value!r}")

    return check
