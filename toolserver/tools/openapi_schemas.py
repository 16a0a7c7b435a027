"""The schemas of an OpenAPI document as JSON Schema: local `$ref`s inlined, OpenAPI's dialect cleaned up.

Inlining is what a hostile document exploits: two `$ref`s to the next level, eighteen levels deep, is a 2.6 KB
document whose schemas expand to 2^18 copies. Each reference is inlined once and reused (when its expansion
does not depend on where it is used), and an `ExpansionBudget` counts the bytes every tool's schema would take
and the time spent: past either the import is a 413, whatever the document's shape. The count is exact (each
scalar by its dumped UTF-8 length) and comes before anything is dumped: `json.dumps` holds the GIL for its whole
call, so an underestimated expansion froze the event loop as well as the import's thread (4096 copies of ten
4299-digit integers: 4 s in one stretch, each integer converted to decimal again in every copy). Integers in
schemas have at most `MAX_INT_DIGITS` digits, which also keeps every conversion short.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from foundation.errors import ValidationFailed
from foundation.schema.limits import ExpansionBudget

__all__ = ["MAX_INT_DIGITS", "DocumentSchemas"]

_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_VALUES = frozenset(
    {"items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else"}
    | {"unevaluatedItems", "unevaluatedProperties", "additionalItems"}
)
# unevaluated*: tool schemas may not use them (see bounded_schema); the API behind the tool still checks them.
_DROPPED_KEYWORDS = frozenset(
    {"discriminator", "xml", "externalDocs", "nullable", "unevaluatedProperties", "unevaluatedItems"}
)
_MAX_REF_DEPTH = 32
MAX_INT_DIGITS = 20  # 2**64 has 20 digits: any bound, count or enum value a real API states


class DocumentSchemas:
    """Local `$ref` resolution and OpenAPI-to-JSON-Schema clean-up for one document."""

    def __init__(self, document: dict[str, Any], *, legacy: bool, budget: ExpansionBudget) -> None:
        self.document = document
        self.legacy = legacy  # OpenAPI 3.0: `nullable`, boolean exclusiveMinimum/Maximum
        self.budget = budget
        self._inlined: dict[str, tuple[Any, int]] = {}  # $ref -> (expansion, its size), when context-free

    def resolve(self, ref: str) -> Any:
        """The node a local `$ref` ('#/...') points at; ValidationFailed(field="document") otherwise."""
        if not ref.startswith("#/"):
            raise _bad(
                f"$ref {ref!r} points outside the document; only local '#/...' references are supported"
            )
        node: Any = self.document
        for raw in ref[2:].split("/"):
            part = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise _bad(f"$ref {ref!r} does not resolve inside the document")
        return node

    def deref(self, node: Any, seen: tuple[str, ...] = ()) -> Any:
        """Follow `$ref`s of a parameter, body or path item (not of schemas)."""
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                raise _bad(f"$ref {ref!r} refers to itself")
            seen = (*seen, ref)
            node = self.resolve(ref)
        return node

    def schema(self, node: dict[str, Any]) -> dict[str, Any]:
        """`node` as JSON Schema, its `$ref`s inlined within the budget (a copy of its own)."""
        result, _ = self._inline(node, ())
        return dict(result) if isinstance(result, dict) else {}  # a copy: expansions are shared

    def _inline(self, node: Any, stack: tuple[str, ...]) -> tuple[Any, bool]:
        """The schema with its `$ref`s inlined, and whether that expansion is the same wherever it is used."""
        if not isinstance(node, dict):
            self.budget.charge(_json_size(node))
            return node, True  # a boolean schema
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in stack or len(stack) >= _MAX_REF_DEPTH:
                self.budget.charge(2)
                return {}, False  # a recursive schema: no constraint below this point
            known = self._inlined.get(ref)
            if known is not None:
                target, size = known
                self.budget.charge(size)  # reused, but stored once per use
                free = True
            else:
                before = self.budget.used
                target, free = self._inline(self.resolve(ref), (*stack, ref))
                if free:
                    self._inlined[ref] = (target, self.budget.used - before)
            siblings, siblings_free = self._inline({k: v for k, v in node.items() if k != "$ref"}, stack)
            merged = {**target, **siblings} if isinstance(target, dict) else target
            return merged, free and siblings_free
        out: dict[str, Any] = {}
        free = True
        self.budget.charge(2)
        for key, value in node.items():
            self.budget.charge(_json_size(str(key)) + 2)
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                members: dict[str, Any] = {}
                for name, sub in value.items():
                    self.budget.charge(_json_size(str(name)) + 2)
                    members[name], sub_free = self._inline(sub, stack)
                    free = free and sub_free
                out[key] = members
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                items = [self._inline(sub, stack) for sub in value]
                out[key] = [schema for schema, _ in items]
                free = free and all(sub_free for _, sub_free in items)
            elif key in _SCHEMA_VALUES:
                out[key], sub_free = self._inline(value, stack)
                free = free and sub_free
            elif key not in _DROPPED_KEYWORDS:
                self.budget.charge(_json_size(value))
                out[key] = value
        return self._clean(node, out), free

    def _clean(self, original: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
        if "example" in out:
            out.setdefault("examples", [out.pop("example")])
        if self.legacy:
            for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
                if isinstance(out.get(bound), bool) and out.pop(bound) and limit in out:
                    out[bound] = out.pop(limit)
            if original.get("nullable") is True:
                kind = out.get("type")
                if isinstance(kind, str):
                    out["type"] = [kind, "null"]
                if isinstance(out.get("enum"), list) and None not in out["enum"]:
                    out["enum"] = [*out["enum"], None]
        properties = out.get("properties")
        if isinstance(properties, dict):  # read-only properties are answers, never inputs
            hidden = {k for k, v in properties.items() if isinstance(v, dict) and v.get("readOnly") is True}
            if hidden:
                out["properties"] = {k: v for k, v in properties.items() if k not in hidden}
                if isinstance(out.get("required"), list):
                    out["required"] = [r for r in out["required"] if r not in hidden]
        return out


def _json_size(value: Any) -> int:
    """The bytes `value` takes as compact UTF-8 JSON, give or take the separators' spaces (at least that much)."""
    if isinstance(value, dict):
        return 2 + sum(_json_size(str(k)) + 2 + _json_size(v) for k, v in value.items())
    if isinstance(value, list):
        return 2 + sum(_json_size(v) + 1 for v in value)
    if isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))  # escapes and multi-byte characters
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        if value.bit_length() > 64:  # refused before any decimal conversion, which is quadratic in the digits
            raise _bad(f"the document has an integer of over {MAX_INT_DIGITS} digits; schemas may not")
        return len(str(value))
    if isinstance(value, float):
        return len(repr(value))
    return len(json.dumps(value, ensure_ascii=False, default=str))


def _bad(message: str) -> ValidationFailed:
    return ValidationFailed(message, field="document")
