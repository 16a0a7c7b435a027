"""Parameter descriptions and types from a docstring: Google (`Args:`), NumPy (`Parameters` + dashes), reST.

`parse_docstring` gives the first paragraph (a tool's description) and `{parameter: (description, type text)}`
merged from all three styles; `derive_schema` (toolserver.tools.schema) turns the type texts into schemas when a
signature has no annotations.
"""

from __future__ import annotations

import re

__all__ = ["parse_docstring"]

_GOOGLE_HEADER = re.compile(
    r"^(args|arguments|parameters|params|keyword args|keyword arguments|other parameters)\s*:\s*$", re.I
)
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(?:\((?P<type>[^)]*)\))?\s*:\s*(?P<desc>.*)$")
_NUMPY_HEADERS = {"parameters", "other parameters", "keyword arguments", "arguments"}
_NUMPY_RULE = re.compile(r"^\s*-{3,}\s*$")
_NUMPY_ENTRY = re.compile(r"^(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::\s*(?P<type>.*))?$")
_REST_FIELD = re.compile(
    r"^:(?P<field>param|parameter|arg|argument|key|keyword|type)\s+(?P<body>[^:]+):\s*(?P<desc>.*)$"
)
_SECTION_START = re.compile(
    r"^((args|arguments|parameters|params|keyword args|keyword arguments|other parameters|returns?|yields?"
    r"|raises|examples?|notes?|see also|attributes|warnings?|todo)\s*:\s*$|:\w+[^:]*:)",
    re.I,
)


def parse_docstring(doc: str) -> tuple[str, dict[str, tuple[str, str | None]]]:
    """The first paragraph, and `{parameter: (description, type text or None)}` from any of the 3 styles."""
    lines = doc.expandtabs().splitlines()
    params: dict[str, tuple[str, str | None]] = {}
    for style in (_google_params, _numpy_params, _rest_params):
        for name, (description, kind) in style(lines).items():
            old_description, old_kind = params.get(name, ("", None))
            params[name] = (old_description or description, old_kind or kind)
    return _first_paragraph(lines), params


def _first_paragraph(lines: list[str]) -> str:
    paragraph: list[str] = []
    for i, line in enumerate(lines):
        text = line.strip()
        numpy_header = i + 1 < len(lines) and bool(text) and _NUMPY_RULE.match(lines[i + 1]) is not None
        if numpy_header or _SECTION_START.match(text):
            break
        if not text:
            if paragraph:
                break
            continue
        paragraph.append(text)
    return " ".join(paragraph)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _join(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def _google_params(lines: list[str]) -> dict[str, tuple[str, str | None]]:
    params: dict[str, tuple[str, str | None]] = {}
    i = 0
    while i < len(lines):
        if not _GOOGLE_HEADER.match(lines[i].strip()):
            i += 1
            continue
        header_indent, entry_indent = _indent(lines[i]), None
        current: tuple[str, str | None, list[str]] | None = None
        i += 1
        while i < len(lines):
            line = lines[i]
            if line.strip():
                if _indent(line) <= header_indent:
                    break
                if entry_indent is None:
                    entry_indent = _indent(line)
                match = _GOOGLE_ENTRY.match(line.strip()) if _indent(line) <= entry_indent else None
                if match:
                    if current:
                        params[current[0]] = (_join(current[2]), current[1])
                    current = (match["name"], (match["type"] or "").strip() or None, [match["desc"]])
                elif current:
                    current[2].append(line)
            i += 1
        if current:
            params[current[0]] = (_join(current[2]), current[1])
    return params


def _numpy_params(lines: list[str]) -> dict[str, tuple[str, str | None]]:
    params: dict[str, tuple[str, str | None]] = {}
    i = 0
    while i + 1 < len(lines):
        if not (lines[i].strip().lower() in _NUMPY_HEADERS and _NUMPY_RULE.match(lines[i + 1])):
            i += 1
            continue
        section_indent = _indent(lines[i])
        names: list[str] = []
        kind: str | None = None
        body: list[str] = []
        i += 2
        while i < len(lines):
            line = lines[i]
            if i + 1 < len(lines) and line.strip() and _NUMPY_RULE.match(lines[i + 1]):
                break  # the next section's header
            match = _NUMPY_ENTRY.match(line.strip()) if _indent(line) == section_indent else None
            if line.strip() and _indent(line) <= section_indent and not match:
                break
            if match:
                for name in names:
                    params[name] = (_join(body), kind)
                names = [n.strip().lstrip("*") for n in match["names"].split(",")]
                kind, body = (match["type"] or "").strip() or None, []
            elif names:
                body.append(line)
            i += 1
        for name in names:
            params[name] = (_join(body), kind)
    return params


def _rest_params(lines: list[str]) -> dict[str, tuple[str, str | None]]:
    descriptions: dict[str, str] = {}
    types: dict[str, str] = {}
    current: tuple[str, str, list[str]] | None = None  # (field, name, text)
    field_indent = 0

    def flush() -> None:
        if current:
            field, name, text = current
            (types if field == "type" else descriptions)[name] = _join(text)

    for line in lines:
        text = line.strip()
        match = _REST_FIELD.match(text)
        if match:
            flush()
            words = match["body"].split()
            name = words[-1].lstrip("*")
            if match["field"] != "type" and len(words) > 1:
                types.setdefault(name, " ".join(words[:-1]))
            current = (match["field"], name, [match["desc"]])
            field_indent = _indent(line)
        elif current and text and _indent(line) > field_indent and not text.startswith(":"):
            current[2].append(text)
        else:
            flush()
            current = None
    flush()
    return {name: (descriptions.get(name, ""), types.get(name)) for name in {*descriptions, *types}}
