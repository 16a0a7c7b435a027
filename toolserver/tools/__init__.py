"""Tools: specs, schemas, formats, search, and one runner per kind (`ToolRunner`).

The runners of every kind are here: `python`, `http` (and OpenAPI import), in this package's namespace;
`builtin`, `mcp` and `deployment` in their modules (`toolserver.tools.builtin`, `.mcp`, `.deployment`), which
are imported only by what uses them (the MCP SDK and Ray Serve are heavy). This package imports
`toolserver.outbound` and the layers below the server, never `toolserver.service` or `toolserver.http`.
"""

from __future__ import annotations

from foundation.schema.validation import MAX_ARGUMENT_BYTES, check_schema, validate_arguments
from toolserver.tools.base import (
    TOOL_NAME_PATTERN,
    CallContext,
    MissingSecret,
    ToolCallFailed,
    ToolDraft,
    ToolKind,
    ToolRunner,
    ToolRunners,
    ToolSpec,
    ToolTimeout,
    check_tool_name,
    empty_parameters,
)
from toolserver.tools.docstrings import parse_docstring
from toolserver.tools.formats import FORMATS, render, to_mcp, to_native, to_openai
from toolserver.tools.http import HttpToolRunner
from toolserver.tools.http_config import HttpToolConfig
from toolserver.tools.openapi import tools_from_openapi
from toolserver.tools.python import PythonToolRunner, build_invocation, new_marker, parse_invocation_output
from toolserver.tools.schema import DerivedFunction, derive_schema
from toolserver.tools.search import ToolIndex, tokenize

__all__ = [
    "FORMATS",
    "MAX_ARGUMENT_BYTES",
    "TOOL_NAME_PATTERN",
    "CallContext",
    "DerivedFunction",
    "HttpToolConfig",
    "HttpToolRunner",
    "MissingSecret",
    "PythonToolRunner",
    "ToolCallFailed",
    "ToolDraft",
    "ToolIndex",
    "ToolKind",
    "ToolRunner",
    "ToolRunners",
    "ToolSpec",
    "ToolTimeout",
    "build_invocation",
    "check_schema",
    "check_tool_name",
    "derive_schema",
    "empty_parameters",
    "new_marker",
    "parse_docstring",
    "parse_invocation_output",
    "render",
    "to_mcp",
    "to_native",
    "to_openai",
    "tokenize",
    "tools_from_openapi",
    "validate_arguments",
]
