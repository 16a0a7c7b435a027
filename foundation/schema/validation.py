"""Check tool schemas at registration and call arguments against them (JSON Schema Draft 2020-12).

Both run tenants' schemas, so both are bounded (see `bounded_schema`): a schema over `MAX_SCHEMA_BYTES`, with
a pattern RE2 cannot run or with a reference that is not local is refused at registration; a call's validation
matches patterns (and `format: regex`) by RE2, never fetches a reference, and stops with a 422 once it has
spent its budget. Both are synchronous: servers call them on a worker thread.

Validators are cached by the hash of their schema, up to `MAX_CACHED_SCHEMA_BYTES` of schemas in all: a
validator holds about 13 times its schema's JSON size (3.3 MB for a 256 KB schema), so a count alone would let
1024 large schemas hold gigabytes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.exceptions import ValidationError as _SchemaViolation
from referencing.exceptions import Unresolvable

from foundation.errors import PayloadTooLarge, ValidationFailed
from foundation.schema.bounded import (
    NO_RETRIEVAL,
    bounded_validator,
    check_schema_cost,
    matches,
    validation_budget,
)
from foundation.schema.formats import FORMAT_CHECKER
from foundation.schema.limits import MAX_SCHEMA_BYTES

__all__ = [
    "MAX_ARGUMENT_BYTES",
    "MAX_CACHED_SCHEMA_BYTES",
    "ValidatorCache",
    "check_schema",
    "validate_arguments",
]

MAX_ARGUMENT_BYTES = 1024 * 1024
MAX_CACHED_SCHEMA_BYTES = 16 * 1024 * 1024  # of schema JSON; the validators take about 200 MB then
_MAX_MESSAGE_CHARS = 300
_Validator = bounded_validator(Draft202012Validator)
# Schemas that passed the meta-schema check (about 5 us per byte): imports repeat the same ones many times.
_CHECKED: dict[bytes, None] = {}
_MAX_CHECKED = 4096
_CHECKED_LOCK = threading.Lock()


def check_schema(schema: object) -> dict[str, Any]:
    """Return `schema` if it is a valid Draft 2020-12 object schema usable as tool parameters."""
    if not isinstance(schema, dict):
        raise ValidationFailed("parameters must be a JSON Schema object", field="parameters")
    if schema.get("type") != "object":
        raise ValidationFailed('parameters must be a schema of "type": "object"', field="parameters")
    try:
        text = json.dumps(schema, ensure_ascii=False, sort_keys=True)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationFailed(f"parameters is not JSON: {exc}", field="parameters") from None
    if size > MAX_SCHEMA_BYTES:
        raise PayloadTooLarge(
            f"parameters is {size} bytes as JSON, over the cap of {MAX_SCHEMA_BYTES}",
            field="parameters",
            limit=MAX_SCHEMA_BYTES,
        )
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    try:
        if digest not in _CHECKED:
            # The cost check first: it names the field of a pattern RE2 refuses (or of a reference that is not
            # local); the meta-schema's own `format: regex` on patterns is then an RE2 compile, never `re`.
            check_schema_cost(schema)
            Draft202012Validator.check_schema(schema, format_checker=FORMAT_CHECKER)
            _remember(digest)
    except RecursionError:
        raise ValidationFailed("parameters is nested too deeply", field="parameters") from None
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise ValidationFailed(
            f"parameters is not a valid JSON Schema{f' at {where}' if where else ''}: {_short(exc.message)}",
            field="parameters",
        ) from None
    return schema


def _remember(digest: bytes) -> None:
    with _CHECKED_LOCK:  # checks run on several worker threads
        if len(_CHECKED) >= _MAX_CHECKED:
            del _CHECKED[next(iter(_CHECKED))]  # the oldest
        _CHECKED[digest] = None


def validate_arguments(
    schema: dict[str, Any], arguments: object, *, max_bytes: int = MAX_ARGUMENT_BYTES
) -> dict[str, Any]:
    """Return `arguments` if they satisfy `schema`; raise ValidationFailed naming the first failing field."""
    if not isinstance(arguments, dict):
        raise ValidationFailed("arguments must be a JSON object", field="arguments")
    try:
        size = len(json.dumps(arguments, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationFailed(f"arguments are not JSON: {exc}", field="arguments") from None
    if size > max_bytes:
        raise PayloadTooLarge(f"arguments are {size} bytes, over the cap of {max_bytes}", field="arguments")
    validator = _validator(json.dumps(schema, sort_keys=True, ensure_ascii=False))
    with validation_budget():
        try:
            error = best_match(validator.iter_errors(arguments))
        except Unresolvable as exc:
            raise ValidationFailed(
                f"the tool's schema has an unresolvable $ref: {exc}", field="parameters"
            ) from None
        except RecursionError:
            raise ValidationFailed("arguments are nested too deeply to check", field="arguments") from None
        if error is not None:
            field = _field(error)
            raise ValidationFailed(f"{field}: {_short(error.message)}", field=field)
    return dict(arguments)


class _CacheInfo(NamedTuple):
    hits: int
    misses: int
    schemas: int
    schema_bytes: int


class ValidatorCache:
    """`build(schema)` by the SHA-256 of the schema's JSON; least recently used out past `max_bytes` of JSON."""

    def __init__(self, max_bytes: int, build: Callable[[dict[str, Any]], Any]) -> None:
        self.max_bytes = max_bytes
        self._build = build
        self._entries: OrderedDict[bytes, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = 0
        self._lock = threading.Lock()  # validations run on several worker threads

    def __call__(self, schema_json: str) -> Any:
        encoded = schema_json.encode("utf-8")
        digest = hashlib.sha256(encoded).digest()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
                self._hits += 1
                return entry[0]
            self._misses += 1
        validator = self._build(json.loads(schema_json))
        size = len(encoded)
        with self._lock:
            if digest not in self._entries and size <= self.max_bytes:
                self._entries[digest] = (validator, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    self._bytes -= dropped
        return validator

    def cache_info(self) -> _CacheInfo:
        with self._lock:
            return _CacheInfo(self._hits, self._misses, len(self._entries), self._bytes)

    def cache_clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = self._hits = self._misses = 0


def _bounded(schema: dict[str, Any]) -> Any:
    return _Validator(schema, format_checker=FORMAT_CHECKER, registry=NO_RETRIEVAL)


_validator = ValidatorCache(MAX_CACHED_SCHEMA_BYTES, _bounded)


def _field(error: _SchemaViolation) -> str:
    path = ["arguments", *(str(p) for p in error.absolute_path)]
    instance, rule = error.instance, error.validator
    if rule == "required" and isinstance(instance, dict) and isinstance(error.validator_value, list):
        missing = [name for name in error.validator_value if name not in instance]
        path.extend(missing[:1])
    elif rule == "additionalProperties" and isinstance(instance, dict) and isinstance(error.schema, dict):
        known = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        extra = [k for k in instance if k not in known and not any(matches(p, k) for p in patterns)]
        path.extend(extra[:1])
    return ".".join(path)


def _short(message: str) -> str:
    # jsonschema quotes the whole failing instance, which can be megabytes.
    if len(message) <= _MAX_MESSAGE_CHARS:
        return message
    return message[: _MAX_MESSAGE_CHARS - 3] + "..."
