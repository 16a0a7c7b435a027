"""Derive a tool's JSON Schema from a Python function's signature and docstring, by parsing only.

The source is never executed or imported here (invariant 1): annotations and defaults are read from the `ast`,
defaults through `ast.literal_eval`. Rules worth knowing:

- The tool is the only public (no leading `_`) top-level function, or the one named by `function`.
- `*args` and `**kwargs` are not part of the schema: a tool is called with named arguments only, and
  `additionalProperties` stays false.
- A parameter is required exactly when it has no default. `Optional[X]` / `X | None` (or a `None` default)
  makes it nullable, not optional.
- A default that is not a literal (e.g. `datetime.now()`) still makes the parameter optional; it is not shown.
- Unknown annotations (`pandas.DataFrame`, ...) and `Any` put no constraint on the value.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

from foundation.errors import PayloadTooLarge, ValidationFailed
from toolserver.tools.docstrings import parse_docstring

__all__ = ["MAX_SOURCE_BYTES", "DerivedFunction", "derive_schema"]

MAX_SOURCE_BYTES = 1024 * 1024

_SIMPLE: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "None": {"type": "null"},
    "NoneType": {"type": "null"},
    "list": {"type": "array"},
    "List": {"type": "array"},
    "Sequence": {"type": "array"},
    "MutableSequence": {"type": "array"},
    "Iterable": {"type": "array"},
    "Collection": {"type": "array"},
    "tuple": {"type": "array"},
    "Tuple": {"type": "array"},
    "set": {"type": "array", "uniqueItems": True},
    "Set": {"type": "array", "uniqueItems": True},
    "frozenset": {"type": "array", "uniqueItems": True},
    "FrozenSet": {"type": "array", "uniqueItems": True},
    "AbstractSet": {"type": "array", "uniqueItems": True},
    "dict": {"type": "object"},
    "Dict": {"type": "object"},
    "Mapping": {"type": "object"},
    "MutableMapping": {"type": "object"},
}
_UNION = {"Union", "Optional"}
_NO_DEFAULT = object()


@dataclass(frozen=True)
class DerivedFunction:
    """What a function offers as a tool: its name, the docstring's first paragraph, a JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any]


def derive_schema(source: str, function: str | None = None) -> DerivedFunction:
    """Parse `source` and describe its tool function; raise ValidationFailed naming what is wrong."""
    if not isinstance(source, str):
        raise ValidationFailed("source must be a string of Python code", field="source")
    if len(source.encode("utf-8", "replace")) > MAX_SOURCE_BYTES:
        raise PayloadTooLarge(f"source is over {MAX_SOURCE_BYTES} bytes", field="source")
    node = _pick_function(_parse(source), function)
    # Uncleaned: cleaning would flatten "Args:" on the docstring's first line with its entries.
    description, doc_params = parse_docstring(ast.get_docstring(node, clean=False) or "")
    return DerivedFunction(name=node.name, description=description, parameters=_parameters(node, doc_params))


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise ValidationFailed(
            f"source has a syntax error at line {exc.lineno}: {exc.msg}", field="source", line=exc.lineno
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        raise ValidationFailed(f"source cannot be parsed: {exc}", field="source") from None


def _pick_function(module: ast.Module, function: str | None) -> ast.FunctionDef | ast.AsyncFunctionDef:
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for stmt in module.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[stmt.name] = stmt  # a redefinition wins, as it would at run time
    if function is not None:
        if function not in found:
            names = ", ".join(found) or "none"
            raise ValidationFailed(
                f"source defines no top-level function {function!r} (top-level functions: {names})",
                field="function",
            )
        return found[function]
    public = [name for name in found if not name.startswith("_")]
    if not public:
        raise ValidationFailed(
            "source defines no public top-level function (names starting with '_' are private)",
            field="source",
        )
    if len(public) > 1:
        raise ValidationFailed(
            f"source defines several public top-level functions ({', '.join(public)}); "
            "name the one to use as the tool's function",
            field="source",
        )
    return found[public[0]]


def _parameters(
    node: ast.FunctionDef | ast.AsyncFunctionDef, doc_params: dict[str, tuple[str, str | None]]
) -> dict[str, Any]:
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg, default_node in pairs:
        doc_description, doc_type = doc_params.get(arg.arg, ("", None))
        schema = _annotation_schema(arg.annotation) if arg.annotation else _doc_type_schema(doc_type)
        if doc_description:
            schema["description"] = doc_description
        if default_node is None:
            required.append(arg.arg)
        else:
            default = _literal_default(default_node)
            if default is None:
                schema = _nullable(schema)
            if default is not _NO_DEFAULT:
                schema["default"] = default
        properties[arg.arg] = schema
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _literal_default(node: ast.expr) -> Any:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO_DEFAULT
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NO_DEFAULT
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return _NO_DEFAULT if any(v is _NO_DEFAULT for v in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        converted = {k: _jsonable(v) for k, v in value.items()}
        return _NO_DEFAULT if any(v is _NO_DEFAULT for v in converted.values()) else converted
    return _NO_DEFAULT  # bytes, sets, complex: valid Python defaults without a JSON form


def _annotation_schema(node: ast.expr | None) -> dict[str, Any]:
    if node is None:
        return {}
    if isinstance(node, ast.Constant):
        if node.value is None:
            return {"type": "null"}
        if isinstance(node.value, str):  # a forward reference: "int", "list[str]"
            try:
                return _annotation_schema(ast.parse(node.value.strip(), mode="eval").body)
            except SyntaxError:
                return {}
        return {}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([node.left, node.right])
    if isinstance(node, (ast.Name, ast.Attribute)):
        return dict(_SIMPLE.get(_tail(node), {}))
    if isinstance(node, ast.Subscript):
        return _generic_schema(_tail(node.value), _subscript_args(node))
    return {}


def _generic_schema(base: str, params: list[ast.expr]) -> dict[str, Any]:
    if base in _UNION:
        return _union([*params, ast.Constant(None)] if base == "Optional" else params)
    if base == "Literal":
        return _literal_schema(params)
    if base == "Annotated" and params:
        schema = _annotation_schema(params[0])
        note = next((d for d in map(_metadata_description, params[1:]) if d), None)
        if note:
            schema["description"] = note
        return schema
    schema = dict(_SIMPLE.get(base, {}))
    kind = schema.get("type")
    if kind == "array" and base in ("tuple", "Tuple"):
        if len(params) == 2 and isinstance(params[1], ast.Constant) and params[1].value is Ellipsis:
            params = params[:1]
        elif params:
            items = [_annotation_schema(p) for p in params]
            return {**schema, "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if kind == "array" and params:
        item = _annotation_schema(params[0])
        if item:
            schema["items"] = item
    elif kind == "object" and len(params) == 2:
        value = _annotation_schema(params[1])
        if value:
            schema["additionalProperties"] = value
    return schema


def _literal_schema(params: list[ast.expr]) -> dict[str, Any]:
    values: list[Any] = []
    for param in params:
        try:
            value = ast.literal_eval(param)
        except (ValueError, TypeError, SyntaxError):
            return {}
        if _jsonable(value) is _NO_DEFAULT:
            return {}
        values.append(value)
    schema: dict[str, Any] = {"enum": values}
    kinds = {_json_type(v) for v in values}
    if len(kinds) == 1:
        schema = {"type": kinds.pop(), **schema}
    return schema


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, (list, tuple)) else "object"


def _union(members: list[ast.expr]) -> dict[str, Any]:
    flat: list[ast.expr] = []
    for member in members:
        flat.extend(_flatten_union(member))
    schemas = [_annotation_schema(m) for m in flat]
    nullable = {"type": "null"} in schemas
    others: list[dict[str, Any]] = []
    for schema in schemas:
        if not schema:
            return {}  # Any absorbs every other member
        if schema != {"type": "null"} and schema not in others:
            others.append(schema)
    if not others:
        return {"type": "null"}
    if len(others) == 1:
        merged = others[0]
    elif all(set(s) == {"type"} and isinstance(s["type"], str) for s in others):
        merged = {"type": [s["type"] for s in others]}
    else:
        merged = {"anyOf": others}
    return _nullable(merged) if nullable else merged


def _flatten_union(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return [*_flatten_union(node.left), *_flatten_union(node.right)]
    if isinstance(node, ast.Subscript) and _tail(node.value) in _UNION:
        params = _subscript_args(node)
        if _tail(node.value) == "Optional":
            params = [*params, ast.Constant(None)]
        return [m for p in params for m in _flatten_union(p)]
    return [node]


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` that also accepts null."""
    if not schema:
        return schema
    schema = dict(schema)
    kind = schema.get("type")
    if isinstance(kind, str) and kind != "null":
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        schema["type"] = [*kind, "null"]
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    if "anyOf" in schema and {"type": "null"} not in schema["anyOf"]:
        schema["anyOf"] = [*schema["anyOf"], {"type": "null"}]
    if kind is None and "enum" not in schema and "anyOf" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def _tail(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # typing.List, t.Optional
        return node.attr
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    return ""


def _subscript_args(node: ast.Subscript) -> list[ast.expr]:
    inner = node.slice
    return list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]


def _metadata_description(node: ast.expr) -> str | None:
    """A description in `Annotated[...]` metadata: a plain string, or `Field(description="...")`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.strip() or None
    if isinstance(node, ast.Call):
        for keyword in node.keywords:
            if keyword.arg == "description" and isinstance(keyword.value, ast.Constant):
                value = keyword.value.value
                return value.strip() if isinstance(value, str) else None
    return None


def _doc_type_schema(doc_type: str | None) -> dict[str, Any]:
    """Schema for a docstring's type text (`int`, `list of str, optional`) when the signature has none."""
    if not doc_type:
        return {}
    text = re.sub(r",?\s*optional\s*$", "", doc_type.strip(), flags=re.IGNORECASE).strip()
    try:
        return _annotation_schema(ast.parse(text, mode="eval").body)
    except SyntaxError:
        return {}
