"""JSON Schema evaluation whose cost is bounded whatever schema and instance a tenant writes.

jsonschema's own keywords match `pattern` and `patternProperties` with Python's backtracking `re`, compare
`uniqueItems` pairwise (quadratic, hours for 100k objects) and look keys up in lists for the `unevaluated*`
keywords. A bounded validator class replaces those keywords: patterns go to RE2 (`linear_regex`),
`uniqueItems` hashes each item once (and is checked on arrays of up to `MAX_UNIQUE_ITEMS`), `unevaluated*`
are refused. Every keyword evaluation is counted against a `ValidationBudget` (steps, regex work, a deadline).

`check_schema_cost` is the registration side: it compiles every pattern a schema can evaluate, so a pattern RE2
cannot run is a 422 naming its field when the tool is registered, not when it is called. It also refuses every
reference that is not local (`$ref`, `$dynamicRef`, `$recursiveRef` not starting with "#"), found by walking the
keywords whose values are schemas (a property *named* "default" is a schema; the value of `default` is not): a
validator that follows a remote reference fetches it from wherever it names. Validators built here are given a
registry that refuses retrieval too (`NO_RETRIEVAL`), so a reference that slips past the check is a 422, never
a request.
"""

from __future__ import annotations

import contextlib
import functools
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import jsonschema.validators
import referencing
from jsonschema.exceptions import ValidationError

from foundation.errors import ValidationFailed
from foundation.schema.limits import (
    MAX_REGEX_WORK,
    MAX_UNIQUE_ITEMS,
    MAX_VALIDATION_STEPS,
    VALIDATION_DEADLINE_S,
)
from foundation.schema.regex import LinearPattern, RegexBudget, RegexBudgetExceeded, compile_linear

__all__ = [
    "NO_RETRIEVAL",
    "ValidationBudget",
    "bounded_validator",
    "check_schema_cost",
    "matches",
    "validation_budget",
]

# An empty registry whose retrieval fails: without one, jsonschema fetches any `$ref` it cannot resolve locally
# (urlopen: no egress policy, no timeout, the whole body read).
NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")

_UNSUPPORTED = ("unevaluatedProperties", "unevaluatedItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_VALUES = (
    "items",
    "additionalItems",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "dependencies",
    "contentSchema",
    *_UNSUPPORTED,
)

_BUDGET: ContextVar[ValidationBudget | None] = ContextVar("schema_validation_budget", default=None)


class ValidationBudget:
    """The work one validation may do; past it, ValidationFailed(field="arguments")."""

    def __init__(
        self,
        *,
        max_steps: int = MAX_VALIDATION_STEPS,
        deadline_s: float = VALIDATION_DEADLINE_S,
        max_regex_work: int = MAX_REGEX_WORK,
    ) -> None:
        self.max_steps = max_steps
        self.deadline_s = deadline_s
        self.steps = 0
        self.regex = RegexBudget(max_regex_work)
        self._ends_at = time.monotonic() + deadline_s

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise _too_costly(f"it needs over {self.max_steps} schema keyword evaluations")
        if time.monotonic() > self._ends_at:
            raise _too_costly(f"it takes over {self.deadline_s:g} s")

    def search(self, pattern: LinearPattern, text: str) -> bool:
        try:
            return self.regex.search(pattern, text)
        except RegexBudgetExceeded as exc:
            raise _too_costly(str(exc)) from None


@contextlib.contextmanager
def validation_budget(budget: ValidationBudget | None = None) -> Iterator[ValidationBudget]:
    """Count the bounded validators' work in this block against `budget` (a fresh default one if None)."""
    budget = budget or ValidationBudget()
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def matches(pattern: str, text: str) -> bool:
    """`re.search(pattern, text)` by RE2, charged to the current budget; False for an unusable pattern."""
    try:
        compiled = compile_linear(pattern, field="parameters")
    except ValidationFailed:
        return False
    return _search(compiled, text)


@functools.cache
def bounded_validator(cls: type[Any]) -> type[Any]:
    """`cls` (any jsonschema validator class) with bounded keywords and every keyword counted."""
    replacements: dict[str, Callable[..., Any]] = {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        "uniqueItems": _unique_items,
        **{name: _unsupported for name in _UNSUPPORTED},
    }
    keywords = {name: _counted(replacements.get(name, keyword)) for name, keyword in cls.VALIDATORS.items()}
    return jsonschema.validators.extend(cls, keywords)


def check_schema_cost(schema: dict[str, Any], field: str = "parameters") -> None:
    """Refuse what a bounded validator cannot evaluate: non-RE2 patterns, `unevaluated*`, nested `$schema` or
    `$id`, references that are not local or do not resolve."""
    for node, path in _schema_nodes(schema, field):
        if path != field and "$schema" in node:
            # jsonschema switches to the stock validator class of a subschema's own $schema.
            raise ValidationFailed("only the top-level schema may declare $schema", field=f"{path}.$schema")
        if path != field and "$id" in node:
            # A nested $id moves the base its "#..." references resolve against: "local" would mean elsewhere.
            raise ValidationFailed("only the top-level schema may declare $id", field=f"{path}.$id")
        _check_refs(schema, node, path, field)
        for keyword in _UNSUPPORTED:
            if keyword in node:
                raise ValidationFailed(
                    f"{keyword} is not supported in tool parameters (its evaluation cost is unbounded)",
                    field=f"{path}.{keyword}",
                )
        if isinstance(node.get("pattern"), str):
            compile_linear(node["pattern"], field=f"{path}.pattern")
        if isinstance(node.get("patternProperties"), dict):
            for pattern in node["patternProperties"]:
                compile_linear(pattern, field=f"{path}.patternProperties")


def _check_refs(root: dict[str, Any], node: dict[str, Any], path: str, field: str) -> None:
    for keyword in _REF_KEYWORDS:
        ref = node.get(keyword)
        if not isinstance(ref, str):
            continue
        if not ref.startswith("#"):
            raise ValidationFailed(
                f"{field} may only use local $refs ('#...'), not {_excerpt(ref)} (at {path}.{keyword})",
                field=field,
            )
        if ref.startswith("#/") and _pointer(root, ref) is None:
            raise ValidationFailed(
                f"{keyword} {_excerpt(ref)} does not resolve inside the schema (at {path}.{keyword})",
                field=field,
            )


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:197] + "...")


# -- keywords ------------------------------------------------------------------------------------------


def _counted(keyword: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(keyword)
    def counted(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        budget = _BUDGET.get()
        if budget is not None:
            budget.step()
        return keyword(validator, value, instance, schema)

    return counted


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(_runtime(pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        compiled = _runtime(pattern)
        for key, value in instance.items():
            if _search(compiled, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = [_runtime(p) for p in schema.get("patternProperties", {})]
    extras = [key for key in instance if key not in known and not any(_search(p, key) for p in patterns)]
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif additional is False and extras:
        names = ", ".join(repr(key) for key in sorted(extras, key=str))
        if patterns:
            regexes = ", ".join(repr(p.pattern) for p in sorted(patterns, key=lambda p: p.pattern))
            verb = "does" if len(extras) == 1 else "do"
            yield ValidationError(f"{names} {verb} not match any of the regexes: {regexes}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(f"Additional properties are not allowed ({names} {verb} unexpected)")


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not unique or not validator.is_type(instance, "array"):
        return
    if len(instance) > MAX_UNIQUE_ITEMS:
        yield ValidationError(
            f"has {len(instance)} items; uniqueItems is checked on arrays of at most {MAX_UNIQUE_ITEMS}"
        )
        return
    seen: set[Any] = set()
    for item in instance:
        key = _identity(item)
        if key in seen:
            yield ValidationError(f"{instance!r} has non-unique elements")
            return
        seen.add(key)


def _unsupported(validator: Any, value: Any, instance: Any, schema: Any) -> None:
    raise ValidationFailed(
        "the tool's schema uses unevaluatedProperties or unevaluatedItems, which are not supported",
        field="parameters",
    )


def _identity(value: Any) -> Any:
    """A hashable key equal for exactly the values JSON Schema calls equal (1 == 1.0, True != 1)."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, (list, tuple)):
        return ("array", tuple(_identity(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((key, _identity(item)) for key, item in value.items()))
    return ("other", repr(value))


def _runtime(pattern: str) -> LinearPattern:
    # Registration compiles every reachable pattern; one that slips past it still never reaches `re`.
    return compile_linear(pattern, field="parameters")


def _search(pattern: LinearPattern, text: str) -> bool:
    budget = _BUDGET.get()
    return budget.search(pattern, text) if budget is not None else pattern.search(text)


def _too_costly(reason: str) -> ValidationFailed:
    return ValidationFailed(
        f"the arguments cannot be checked against the tool's schema: {reason}", field="arguments"
    )


# -- walking a schema ------------------------------------------------------------------------------------


def _schema_nodes(root: dict[str, Any], field: str) -> Iterable[tuple[dict[str, Any], str]]:
    """Every subschema (object form) a validator may evaluate, local `$ref` targets included, once each."""
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(root, field)]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        yield node, path
        for keyword in _SUBSCHEMA_MAPS:
            members = node.get(keyword)
            if isinstance(members, dict):
                stack.extend((sub, f"{path}.{keyword}.{name}") for name, sub in members.items())
        for keyword in _SUBSCHEMA_LISTS:
            members = node.get(keyword)
            if isinstance(members, list):
                stack.extend((sub, f"{path}.{keyword}.{i}") for i, sub in enumerate(members))
        for keyword in _SUBSCHEMA_VALUES:
            value = node.get(keyword)
            if isinstance(value, list):  # draft 4-7 tuple `items`
                stack.extend((sub, f"{path}.{keyword}.{i}") for i, sub in enumerate(value))
            elif keyword == "dependencies" and isinstance(value, dict):
                stack.extend((sub, f"{path}.{keyword}.{name}") for name, sub in value.items())
            else:
                stack.append((value, f"{path}.{keyword}"))
        for keyword in _REF_KEYWORDS:
            ref = node.get(keyword)
            if isinstance(ref, str) and ref.startswith("#/"):
                stack.append((_pointer(root, ref), f"{field}.{ref[2:].replace('/', '.')}"))


def _pointer(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for raw in urllib.parse.unquote(ref[2:]).split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
