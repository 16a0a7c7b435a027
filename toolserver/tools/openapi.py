"""Turn an OpenAPI 3.0/3.1 document (already parsed) into one `http` tool per operation.

Parameters are the operation's path, query and header parameters plus the properties of a JSON (or form)
request body object; a body that is not an object becomes a single `body` argument. Local `$ref`s are inlined
(`openapi_schemas`; a recursive reference becomes an unconstrained schema) under one `ExpansionBudget` for the
whole document: past its bytes or time the import is a 413. Cookie parameters, and operations whose body is only
multipart or binary, are left out. Security schemes are not mapped: set `secret_headers` on the tool.
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
from toolserver.tools.http_config import HttpToolConfig
from toolserver.tools.openapi_document import load_document
from toolserver.tools.openapi_schemas import MAX_INT_DIGITS, DocumentSchemas

__all__ = ["MAX_INT_DIGITS", "import_document", "tools_from_openapi"]  # MAX_INT_DIGITS: from openapi_schemas

log = logging.getLogger(__name__)

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
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
    refs = DocumentSchemas(document, legacy=version.startswith("3.0"), budget=budget or ExpansionBudget())
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
    refs: DocumentSchemas,
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


def _merged_parameters(
    refs: DocumentSchemas, item: dict[str, Any], operation: dict[str, Any]
) -> list[dict[str, Any]]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*_list(item.get("parameters")), *_list(operation.get("parameters"))]:
        param = refs.deref(raw)
        if isinstance(param, dict):
            merged[(str(param.get("in")), str(param.get("name")))] = param  # the operation's own one wins
    return list(merged.values())


def _parameter_schema(refs: DocumentSchemas, param: dict[str, Any]) -> dict[str, Any]:
    schema = param.get("schema")
    if schema is None and isinstance(param.get("content"), dict):
        media: Any = next(iter(param["content"].values()), {})
        schema = media.get("schema") if isinstance(media, dict) else None
    result = refs.schema(schema if isinstance(schema, dict) else {})
    if param.get("description") and "description" not in result:
        result["description"] = str(param["description"])
    return result


def _request_body(refs: DocumentSchemas, raw: Any) -> tuple[str, dict[str, Any] | None, bool] | None:
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


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _bad(message: str) -> ValidationFailed:
    return ValidationFailed(message, field="document")
