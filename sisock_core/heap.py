"""Giving freed memory back to the system after a large request (glibc only).

A heavy ``get_data`` allocates and frees hundreds of MB of arrays; glibc keeps much of
it in its heap for reuse, so a node's RSS would stay at its peak after the load.
:func:`trim` (``malloc_trim(0)``) returns the free pages; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

_libc: Any = None


def _load() -> Any:
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = lib if hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc


def trim() -> bool:
    """Return the C heap's free memory to the system; False where there is no ``malloc_trim``."""
    lib = _load()
    if not lib:
        return False
    return bool(lib.malloc_trim(0))
