"""The strict cattrs converters that turn TOML values (and environment strings) into
the attrs classes of the site file and of plugins' options.

Nothing is coerced: ``"8080"`` is not an integer, ``1`` is not a boolean. Wrong values
raise :class:`~sisock_core.config.problems.WrongValue` with a message worded for
operators; cattrs groups them per key (``detailed_validation``).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping as AbcMapping
from pathlib import Path
from typing import Any, Callable, Literal

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn

from sisock_core.config.problems import WrongValue, describe_value, expected


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
        raise expected("a string", value)
    return value


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise expected("an integer", value)
    return value


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise expected("a number", value)
    return float(value)


def _structure_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise expected("a boolean", value)
    return value


def _structure_path(value: Any, _: Any) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise expected("a string", value)
    return Path(value).expanduser()


def _structure_literal(value: Any, tp: Any) -> Any:
    allowed = typing.get_args(tp)
    for choice in allowed:
        if value == choice and type(value) is type(choice):
            return choice
    choices = ", ".join(repr(a) for a in allowed)
    raise WrongValue(f"must be one of {choices}, got {describe_value(value)}")


def _noted(exc: Exception, note: IterableValidationNote) -> Exception:
    """``exc`` with ``note`` (which item or key it is about), as cattrs' own hooks do."""
    exc.__notes__ = [*getattr(exc, "__notes__", []), note]
    return exc


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
            raise expected("a list", value)
        if hetero and len(value) != len(elem_types):
            raise WrongValue(f"expected a list of {len(elem_types)} items, got {len(value)}")
        out, errors = [], []
        for i, item in enumerate(value):
            et = elem_types[i] if hetero else elem_types[0]
            try:
                out.append(item if et is Any else conv.structure(item, et))
            except Exception as exc:
                errors.append(_noted(exc, IterableValidationNote(f"item {i}", i, et)))
        if errors:
            raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return container(out)

    return hook


def _mapping_hook_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = typing.get_args(tp)
    key_type, value_type = (args[0], args[1]) if len(args) == 2 else (Any, Any)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise expected("a table", value)
        out, errors = {}, []
        for k, v in value.items():
            try:
                key = k if key_type in (Any, str) else conv.structure(k, key_type)
                out[key] = v if value_type is Any else conv.structure(v, value_type)
            except Exception as exc:
                errors.append(_noted(exc, IterableValidationNote(f"key {k}", k, value_type)))
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
            raise expected("a table", value)
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


def _env_number(parse: Callable[[str], Any], what: str,
                strict: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A hook parsing a string with ``parse`` (e.g. ``int``), else checking like ``strict``."""

    def hook(value: Any, tp: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse(value.strip())
            except ValueError:
                raise WrongValue(f"expected {what}, got {value!r}") from None
        return strict(value, tp)

    return hook


#: an integer, from an environment string (``" 8080 "``) or a TOML value
env_int = _env_number(int, "an integer", _structure_int)
_env_float = _env_number(float, "a number", _structure_float)


def _env_bool(value: Any, _: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise WrongValue(f"expected a boolean (true or false), got {value!r}")
    return _structure_bool(value, bool)


def make_env_converter() -> cattrs.Converter:
    """Like :func:`make_converter`, but parses strings from environment variables:
    ``"8080"`` -> 8080, ``"false"`` -> False, ``"a,b"`` -> ``["a", "b"]`` for lists."""
    conv = make_converter()
    conv.register_structure_hook(int, env_int)
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

