"""Structuring a TOML value into an attrs class, collecting every problem with its
key path (cattrs' error groups turned into ``(path, reason)`` pairs).

This walks the groups as ``cattrs.transform_error`` does, but that function is not used:
it gives each problem's path as one string (``$.nodes.x.data_dir``, keys with dots or
quotes ambiguous), so problems could not be put back into file order nor written as TOML
keys, and it drops the class an attrs validator refused, which is needed to report every
failing validator and not only the first, and to suggest a valid key for each unknown
one (``did you mean``)."""

from __future__ import annotations

from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from sisock_core.config.problems import Found, KeyPath, message, unknown_key


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
class Structurer:
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
                found.append((base + rel, message(sub)))
        else:
            found.append((base + rel, message(exc)))
        return found

    def _extra_keys(self, exc: ForbiddenExtraKeysError, raw: Any, path: KeyPath) -> Found:
        valid = _init_fields(exc.cl) + self.also_valid.get(path, [])
        if isinstance(raw, dict):  # in file order
            keys = [k for k in raw if k in exc.extra_fields]
        else:
            keys = sorted(exc.extra_fields)
        out = []
        for key in keys:
            out.append((path + (key,), unknown_key(key, valid)))
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
                found.append((path + (a.name,), message(sub)))
        return found

    def _validators(self, cl: type, raw: Any, path: KeyPath, exc: BaseException) -> Found:
        """Find which fields' validators fail, by building the instance without them
        and running each validator alone (attrs would stop at the first)."""
        try:
            with attrs.validators.disabled():
                instance = self.conv.structure(raw, cl)
        except Exception:
            return [(path, message(exc))]
        found = []
        for a in attrs.fields(cl):
            if a.validator is None:
                continue
            try:
                a.validator(instance, a, getattr(instance, a.name))
            except Exception as sub:
                found.append((path + (a.name,), message(sub)))
        return found or [(path, message(exc))]

