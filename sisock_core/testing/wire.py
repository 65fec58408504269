"""What a WAMP peer receives: values passed through the real serializer.
"""

from __future__ import annotations

from typing import Any


class WireFormatError(TypeError):
    """An answer (or argument) that the WAMP serializer cannot send, e.g. a numpy.float32."""


def _serializer(name: str) -> Any:
    from autobahn.wamp.serializer import JsonObjectSerializer, MsgPackObjectSerializer

    try:
        return {"msgpack": MsgPackObjectSerializer, "json": JsonObjectSerializer}[name]()
    except KeyError:
        raise ValueError(f"serializer must be 'msgpack' or 'json', got {name!r}") from None


def over_the_wire(value: Any, serializer: str = "msgpack", what: str = "value") -> Any:
    """``value`` as a peer receives it: serialized and read back (tuples become lists...)."""
    ser = _serializer(serializer)
    try:
        return ser.unserialize(ser.serialize([value]))[0][0]
    except Exception as exc:
        raise WireFormatError(f"{what} cannot be sent over WAMP ({serializer}): {exc}") from exc
