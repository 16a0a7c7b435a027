"""Tool logic that needs no server: specs, schemas, validation, formats, search and the tool runners."""

from __future__ import annotations

from foundation.schema.validation import MAX_ARGUMENT_BYTES, check_schema, validate_arguments
from toolserver.tools.base import (
    TOOL_NAME_PATTERN,
    CallContext,
    MissingSecret,
    ToolCallFailed,
    ToolKind,
    ToolRunner,
    ToolSpec,
    ToolTimeout,
    check_tool_name,
    empty_parameters,
)
from toolserver.tools.formats import FORMATS, render, to_mcp, to_native, to_openai
from toolserver.tools.http import HttpToolConfig, HttpToolRunner
from toolserver.tools.openapi import tools_from_openapi
from toolserver.tools.python import PythonToolRunner, build_invocation, new_marker, parse_invocation_output
from toolserver.tools.schema import DerivedFunction, derive_schema, parse_docstring
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
    "ToolIndex",
    "ToolKind",
    "ToolRunner",
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
