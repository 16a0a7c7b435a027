"""Turn an OpenAPI 3.0/3.1 document (already parsed) into one `http` tool per operation.

Parameters are the operation's path, query and header parameters plus the properties of a JSON (or form)
request body object; a body that is not an object becomes a single `body` argument. Local `$ref`s are inlined
(a recursive reference becomes an unconstrained schema). Cookie parameters, and operations whose body is only
multipart or binary, are left out. Security schemes are not mapped: set `secret_headers` on the tool.

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
import logging
import re
import urllib.parse
from typing import Any

from foundation.errors import PayloadTooLarge, ValidationFailed
from foundation.schema.limits import MAX_IMPORT_OPERATIONS, MAX_SCHEMA_BYTES, ExpansionBudget
from foundation.schema.validation import check_schema
from toolserver.tools.base import ToolSpec
from toolserver.tools.http import HttpToolConfig
from toolserver.tools.openapi_document import load_document

__all__ = ["MAX_INT_DIGITS", "import_document", "tools_from_openapi"]

log = logging.getLogger(__name__)

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
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
_ARG_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def import_document(
    document: dict[str, Any] | str, *, base_url: str | None = None, prefix: str = "", namespace: str = ""
) -> list[ToolSpec]:
    """Parse (JSON object or JSON/YAML text) and convert a tenant's document within one budget; slow: off-loop."""
    budget = ExpansionBudget()
    try:
        return tools_from_openapi(
            load_document(document, budget),
            base_url=base_url,
            prefix=prefix,
            namespace=namespace,
            budget=budget,
        )
    except RecursionError:
        raise _bad("the document is nested too deeply") from None


def tools_from_openapi(
    document: dict[str, Any],
    *,
    base_url: str | None = None,
    prefix: str = "",
    namespace: str = "",
    budget: ExpansionBudget | None = None,
) -> list[ToolSpec]:
    """One `http` ToolSpec per operation; raise ValidationFailed(field="document") naming what is wrong."""
    if not isinstance(document, dict):
        raise _bad("an OpenAPI document must be a JSON object")
    version = str(document.get("openapi", ""))
    if not re.match(r"^3\.[01](\.|$)", version):
        found = (
            f"swagger {document['swagger']}" if "swagger" in document else f"openapi {version or '(missing)'}"
        )
        raise _bad(f"only OpenAPI 3.0 and 3.1 documents are supported, not {found}")
    paths = document.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise _bad("the document has no paths, so there are no operations to import")
    refs = _Refs(document, legacy=version.startswith("3.0"), budget=budget or ExpansionBudget())
    server = _server_url(document, base_url)
    tools: list[ToolSpec] = []
    taken: set[str] = set()
    operations = 0
    for path, raw_item in paths.items():
        item = refs.deref(raw_item)
        if not isinstance(item, dict):
            continue
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                operations += 1
                if operations > MAX_IMPORT_OPERATIONS:
                    raise PayloadTooLarge(
                        f"the document has over {MAX_IMPORT_OPERATIONS} operations; import it in parts",
                        field="document",
                        limit=MAX_IMPORT_OPERATIONS,
                    )
                refs.budget.check_time()
                tool = _operation_tool(refs, server, path, method, item, operation, prefix, taken, namespace)
                if tool is not None:
                    tools.append(tool)
    return tools


def _operation_tool(
    refs: _Refs,
    server: str,
    path: str,
    method: str,
    item: dict[str, Any],
    operation: dict[str, Any],
    prefix: str,
    taken: set[str],
    namespace: str,
) -> ToolSpec | None:
    name = _unique_tool_name(
        prefix + str(operation.get("operationId") or _fallback_name(method, path)), taken
    )
    expanded_before = refs.budget.used
    properties: dict[str, Any] = {}
    required: list[str] = []
    aliases: dict[str, str] = {}
    placed: dict[str, list[str]] = {"path": [], "query": [], "header": []}
    url_path = path

    def add(wire: str, schema: dict[str, Any], is_required: bool) -> str:
        arg = _unique_arg(wire, properties)
        if arg != wire:
            aliases[arg] = wire
        properties[arg] = schema
        if is_required:
            required.append(arg)
        return arg

    for param in _merged_parameters(refs, item, operation):
        location, wire = param.get("in"), param.get("name")
        if location not in placed or not isinstance(wire, str):
            continue  # cookie parameters are not supported
        schema = _parameter_schema(refs, param)
        arg = add(wire, schema, location == "path" or bool(param.get("required")))
        placed[location].append(arg)
        if location == "path":
            aliases.pop(arg, None)  # a path argument is named in the url template itself
            url_path = url_path.replace("{" + wire + "}", "{" + arg + "}")

    config: dict[str, Any] = {"url": server + url_path, "method": method.upper(), "query": placed["query"]}
    if placed["header"]:
        config["header_args"] = placed["header"]
    body = _request_body(refs, operation.get("requestBody"))
    if body is None:
        log.warning(
            "OpenAPI import: skipping %s %s: its request body is neither JSON nor a form", method, path
        )
        return None
    encoding, body_schema, body_required = body
    if body_schema is not None:
        config["body_encoding"] = encoding
        members = _object_members(body_schema)
        if members is None:
            config["body_arg"] = add("body", body_schema, body_required)
        else:
            body_properties, body_required_names = members
            config["body"] = [
                add(prop, schema, body_required and prop in body_required_names)
                for prop, schema in body_properties.items()
            ]
    if aliases:
        config["aliases"] = aliases
    if refs.budget.used - expanded_before > MAX_SCHEMA_BYTES:  # before dumping it: see the module docstring
        raise PayloadTooLarge(
            f"operation {method.upper()} {path}: its parameters expand to over {MAX_SCHEMA_BYTES} bytes",
            field="document",
            limit=MAX_SCHEMA_BYTES,
        )
    # A tree of its own: expansions are shared between operations while inlining, never once stored.
    parameters = json.loads(
        json.dumps(
            {"type": "object", "properties": properties, "required": required, "additionalProperties": False},
            ensure_ascii=False,
            default=str,  # YAML dates and times, as the strings they were written as
        )
    )
    try:
        check_schema(parameters)
        HttpToolConfig.from_dict(config)
    except ValidationFailed as exc:
        raise _bad(f"operation {method.upper()} {path}: {exc.message}") from None
    except PayloadTooLarge as exc:
        raise PayloadTooLarge(f"operation {method.upper()} {path}: {exc.message}", field="document") from None
    return ToolSpec(
        name=name,
        description=_description(operation, method, path),
        kind="http",
        parameters=parameters,
        config=config,
        namespace=namespace,
    )


def _merged_parameters(refs: _Refs, item: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*_list(item.get("parameters")), *_list(operation.get("parameters"))]:
        param = refs.deref(raw)
        if isinstance(param, dict):
            merged[(str(param.get("in")), str(param.get("name")))] = param  # the operation's own one wins
    return list(merged.values())


def _parameter_schema(refs: _Refs, param: dict[str, Any]) -> dict[str, Any]:
    schema = param.get("schema")
    if schema is None and isinstance(param.get("content"), dict):
        media: Any = next(iter(param["content"].values()), {})
        schema = media.get("schema") if isinstance(media, dict) else None
    result = refs.schema(schema if isinstance(schema, dict) else {})
    if param.get("description") and "description" not in result:
        result["description"] = str(param["description"])
    return result


def _request_body(refs: _Refs, raw: Any) -> tuple[str, dict[str, Any] | None, bool] | None:
    """(encoding, schema or None when there is no body, required); None when the body is unsupported."""
    body = refs.deref(raw) if raw is not None else None
    if not isinstance(body, dict) or not isinstance(body.get("content"), dict):
        return "json", None, False
    required = bool(body.get("required"))
    for media, content in body["content"].items():
        kind = media.split(";", 1)[0].strip().lower()
        encoding = (
            "json"
            if kind == "application/json" or kind.endswith("+json")
            else ("form" if kind == "application/x-www-form-urlencoded" else None)
        )
        if encoding is not None:
            schema = content.get("schema") if isinstance(content, dict) else None
            return encoding, refs.schema(schema if isinstance(schema, dict) else {}), required
    return None if required else ("json", None, False)


def _object_members(schema: dict[str, Any]) -> tuple[dict[str, Any], set[str]] | None:
    """An object schema's properties and required names (merging allOf); None when it is not one."""
    properties: dict[str, Any] = dict(schema.get("properties") or {})
    required = set(schema.get("required") or [])
    for part in schema.get("allOf") or []:
        members = _object_members(part) if isinstance(part, dict) else None
        if members:
            properties.update(members[0])
            required |= members[1]
    if not properties or schema.get("type", "object") != "object":
        return None
    return properties, required


class _Refs:
    """Local `$ref` resolution and OpenAPI-to-JSON-Schema clean-up for one document."""

    def __init__(self, document: dict[str, Any], *, legacy: bool, budget: ExpansionBudget) -> None:
        self.document = document
        self.legacy = legacy  # OpenAPI 3.0: `nullable`, boolean exclusiveMinimum/Maximum
        self.budget = budget
        self._inlined: dict[str, tuple[Any, int]] = {}  # $ref -> (expansion, its size), when context-free

    def resolve(self, ref: str) -> Any:
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


def _server_url(document: dict[str, Any], base_url: str | None) -> str:
    servers = document.get("servers")
    server = servers[0] if isinstance(servers, list) and servers and isinstance(servers[0], dict) else None
    url = str(server.get("url", "")) if server else ""
    for variable, spec in ((server or {}).get("variables") or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            url = url.replace("{" + variable + "}", str(spec["default"]))
    absolute = bool(urllib.parse.urlsplit(url).scheme)
    if base_url:
        # An absolute server url is replaced by base_url; a relative one ("/api/v3") is joined onto it.
        url = base_url.rstrip("/") if absolute or not url else base_url.rstrip("/") + "/" + url.lstrip("/")
    elif not url:
        raise _bad("the document lists no servers; pass base_url")
    elif not absolute:
        raise _bad(f"the server url {url!r} is relative; pass base_url")
    if "{" in url:
        raise _bad(f"the server url {url!r} has a variable without a default")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise _bad(f"the server url {url!r} is not http or https")
    return url.rstrip("/")


def _description(operation: dict[str, Any], method: str, path: str) -> str:
    summary = str(operation.get("summary") or "").strip()
    details = str(operation.get("description") or "").strip()
    text = (
        summary if not details or details == summary else (f"{summary}\n\n{details}" if summary else details)
    )
    text = text or f"{method.upper()} {path}"
    return f"(deprecated) {text}" if operation.get("deprecated") else text


def _fallback_name(method: str, path: str) -> str:
    return f"{method}_{path}"


def _unique_tool_name(raw: str, taken: set[str]) -> str:
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_-]", "_", raw)).strip("_") or "operation"
    if not name[0].isalpha():
        name = "op_" + name
    name = name[:64]
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"_{n}"
        candidate, n = name[: 64 - len(suffix)] + suffix, n + 1
    taken.add(candidate)
    return candidate


def _unique_arg(wire: str, taken: dict[str, Any]) -> str:
    # Some clients (Anthropic's among them) accept only [A-Za-z0-9_.-]{1,64} as property names.
    name = (_ARG_NAME.sub("_", wire).strip("_") or "arg")[:64]
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"_{n}"
        candidate, n = name[: 64 - len(suffix)] + suffix, n + 1
    return candidate


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


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _bad(message: str) -> ValidationFailed:
    return ValidationFailed(message, field="document")
