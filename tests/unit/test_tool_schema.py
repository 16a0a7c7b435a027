"""derive_schema: signatures and docstrings to JSON Schema, by parsing only."""

from __future__ import annotations

import pickle
import textwrap
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from foundation.errors import PayloadTooLarge, ValidationFailed
from toolserver.tools import DerivedFunction, check_schema, derive_schema, parse_docstring
from toolserver.tools.schema import MAX_SOURCE_BYTES


def derive(source: str, function: str | None = None) -> DerivedFunction:
    return derive_schema(textwrap.dedent(source), function)


def prop(annotation: str, default: str | None = None, imports: str = "") -> dict[str, Any]:
    """The schema of parameter `x` declared with `annotation` (and `default`)."""
    tail = f" = {default}" if default is not None else ""
    derived = derive_schema(f"{imports}\ndef f(x: {annotation}{tail}):\n    pass\n")
    return derived.parameters["properties"]["x"]


# --- picking the function ---------------------------------------------------------------------------------


def test_picks_the_only_public_function_and_ignores_private_helpers() -> None:
    derived = derive(
        """
        def _helper(y):
            return y

        def add(a: int, b: int) -> int:
            return _helper(a) + b
        """
    )
    assert derived.name == "add"
    assert derived.parameters == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }


def test_async_functions_are_tools_too() -> None:
    assert derive("async def fetch(url: str):\n    pass\n").name == "fetch"


def test_named_function_is_picked_among_several() -> None:
    source = "def one(a: int):\n    pass\n\ndef two(b: str):\n    pass\n"
    assert derive(source, "two").parameters["properties"] == {"b": {"type": "string"}}
    assert derive(source, "one").name == "one"


def test_a_named_private_function_may_be_picked() -> None:
    assert derive("def _hidden(a):\n    pass\n", "_hidden").name == "_hidden"


def test_redefinition_wins_like_at_run_time() -> None:
    derived = derive("def f(a: int):\n    pass\n\ndef f(b: str):\n    pass\n")
    assert list(derived.parameters["properties"]) == ["b"]


def test_nested_functions_and_methods_are_not_candidates() -> None:
    source = """
    class Helper:
        def method(self, x):
            pass

    def outer(q: str):
        def inner(z):
            pass
        return q
    """
    assert derive(source).name == "outer"


@pytest.mark.parametrize(
    ("source", "function", "field", "fragment"),
    [
        ("x = 1\n", None, "source", "no public top-level function"),
        ("def _private():\n    pass\n", None, "source", "no public top-level function"),
        (
            "def a():\n    pass\ndef b():\n    pass\n",
            None,
            "source",
            "several public top-level functions (a, b)",
        ),
        ("def a():\n    pass\n", "missing", "function", "no top-level function 'missing'"),
        ("class C:\n    def m(self):\n        pass\n", None, "source", "no public top-level function"),
    ],
)
def test_picking_errors_say_what_is_wrong(
    source: str, function: str | None, field: str, fragment: str
) -> None:
    with pytest.raises(ValidationFailed) as info:
        derive_schema(source, function)
    assert info.value.field == field
    assert fragment in info.value.message


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ValidationFailed) as info:
        derive_schema("def ok():\n    pass\n\ndef broken(:\n    pass\n")
    assert info.value.field == "source"
    assert "line 4" in info.value.message
    assert info.value.details["line"] == 4


def test_null_bytes_and_non_strings_are_refused() -> None:
    with pytest.raises(ValidationFailed):
        derive_schema("def f():\n    pass\x00\n")
    with pytest.raises(ValidationFailed):
        derive_schema(b"def f(): pass")  # type: ignore[arg-type]


def test_oversized_source_is_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        derive_schema("#" * (MAX_SOURCE_BYTES + 1))


def test_source_is_parsed_never_run(tmp_path: Any) -> None:
    flag = tmp_path / "ran"
    source = f"""
import os
open({str(flag)!r}, "w").write("ran")
raise SystemExit("top-level code ran")

def tool(a: int = __import__("os").getpid()):
    '''Do it.'''
    open({str(flag)!r}, "w").write("ran")
"""
    derived = derive_schema(source)
    assert derived.description == "Do it."
    # A non-literal default makes the parameter optional without showing a default.
    assert derived.parameters["properties"]["a"] == {"type": "integer"}
    assert derived.parameters["required"] == []
    assert not flag.exists()


# --- annotations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("str", {"type": "string"}),
        ("int", {"type": "integer"}),
        ("float", {"type": "number"}),
        ("bool", {"type": "boolean"}),
        ("None", {"type": "null"}),
        ("list", {"type": "array"}),
        ("dict", {"type": "object"}),
        ("tuple", {"type": "array"}),
        ("set[int]", {"type": "array", "uniqueItems": True, "items": {"type": "integer"}}),
        ("list[str]", {"type": "array", "items": {"type": "string"}}),
        ("List[int]", {"type": "array", "items": {"type": "integer"}}),
        ("typing.List[int]", {"type": "array", "items": {"type": "integer"}}),
        ("Sequence[float]", {"type": "array", "items": {"type": "number"}}),
        ("list[list[int]]", {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}),
        ("list[Any]", {"type": "array"}),
        ("dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}),
        (
            "Dict[str, list[str]]",
            {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        ),
        ("dict[str, Any]", {"type": "object"}),
        ("tuple[int, ...]", {"type": "array", "items": {"type": "integer"}}),
        (
            "tuple[int, str]",
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 2,
                "maxItems": 2,
            },
        ),
        ("Optional[int]", {"type": ["integer", "null"]}),
        ("typing.Optional[str]", {"type": ["string", "null"]}),
        ("int | None", {"type": ["integer", "null"]}),
        ("None | str", {"type": ["string", "null"]}),
        ("Union[int, str]", {"type": ["integer", "string"]}),
        ("int | str | None", {"type": ["integer", "string", "null"]}),
        ("Union[int, Optional[str]]", {"type": ["integer", "string", "null"]}),
        ("Optional[list[int]]", {"type": ["array", "null"], "items": {"type": "integer"}}),
        (
            "list[int] | dict[str, int]",
            {
                "anyOf": [
                    {"type": "array", "items": {"type": "integer"}},
                    {"type": "object", "additionalProperties": {"type": "integer"}},
                ]
            },
        ),
        ("Literal['a', 'b']", {"type": "string", "enum": ["a", "b"]}),
        ("Literal[1, 2, 3]", {"type": "integer", "enum": [1, 2, 3]}),
        ("Literal['a', 1]", {"enum": ["a", 1]}),
        ("typing.Literal[True]", {"type": "boolean", "enum": [True]}),
        ("Optional[Literal['x', 'y']]", {"type": ["string", "null"], "enum": ["x", "y", None]}),
        ("Any", {}),
        ("typing.Any", {}),
        ("object", {}),
        ("Optional[Any]", {}),
        ("int | Any", {}),
        ("pandas.DataFrame", {}),
        ("SomeClass", {}),
        ("Callable[[int], int]", {}),
        ("'int'", {"type": "integer"}),
        ("'list[str]'", {"type": "array", "items": {"type": "string"}}),
        ("'not valid ('", {}),
        ("Annotated[int, 'how many']", {"type": "integer", "description": "how many"}),
        ("Annotated[str, Field(description='the name')]", {"type": "string", "description": "the name"}),
        ("Annotated[float, 42]", {"type": "number"}),
    ],
)
def test_annotation_mapping(annotation: str, expected: dict[str, Any]) -> None:
    schema = prop(annotation)
    assert schema == expected
    Draft202012Validator.check_schema(schema)


def test_missing_annotation_puts_no_constraint() -> None:
    assert derive("def f(x):\n    pass\n").parameters["properties"]["x"] == {}


def test_postponed_annotations_are_read_the_same() -> None:
    source = "from __future__ import annotations\n\ndef f(x: list[int] | None):\n    pass\n"
    assert derive(source).parameters["properties"]["x"] == {
        "type": ["array", "null"],
        "items": {"type": "integer"},
    }


# --- defaults and required --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "default", "expected"),
    [
        ("int", "3", {"type": "integer", "default": 3}),
        ("int", "-3", {"type": "integer", "default": -3}),
        ("float", "1.5", {"type": "number", "default": 1.5}),
        ("str", "'hi'", {"type": "string", "default": "hi"}),
        ("bool", "False", {"type": "boolean", "default": False}),
        ("list[int]", "[1, 2]", {"type": "array", "items": {"type": "integer"}, "default": [1, 2]}),
        ("tuple", "(1, 'a')", {"type": "array", "default": [1, "a"]}),
        ("dict", "{'k': [1]}", {"type": "object", "default": {"k": [1]}}),
        ("Optional[int]", "None", {"type": ["integer", "null"], "default": None}),
        # A None default makes the parameter nullable even without Optional.
        ("int", "None", {"type": ["integer", "null"], "default": None}),
        ("Any", "None", {"default": None}),
        (
            "Literal['a', 'b']",
            "None",
            {"type": ["string", "null"], "enum": ["a", "b", None], "default": None},
        ),
        ("SomeClass", "None", {"default": None}),
        (
            "list[int] | dict",
            "None",
            {
                "anyOf": [
                    {"type": "array", "items": {"type": "integer"}},
                    {"type": "object"},
                    {"type": "null"},
                ],
                "default": None,
            },
        ),
        # Defaults without a JSON form still make the parameter optional, without a shown default.
        ("bytes", "b'x'", {}),
        ("set", "{1, 2}", {"type": "array", "uniqueItems": True}),
        ("float", "float('inf')", {"type": "number"}),
        ("float", "1e999", {"type": "number"}),
        ("int", "compute()", {"type": "integer"}),
        ("dict", "{1: 'a'}", {"type": "object"}),
    ],
)
def test_defaults(annotation: str, default: str, expected: dict[str, Any]) -> None:
    derived = derive_schema(f"def f(x: {annotation} = {default}):\n    pass\n")
    assert derived.parameters["properties"]["x"] == expected
    assert derived.parameters["required"] == []


def test_optional_without_default_is_nullable_but_required() -> None:
    derived = derive("def f(x: Optional[int], y: int | None = None):\n    pass\n")
    assert derived.parameters["required"] == ["x"]
    assert derived.parameters["properties"]["x"] == {"type": ["integer", "null"]}


def test_keyword_only_and_positional_only_parameters_are_included() -> None:
    derived = derive("def f(a: int, /, b: str = 'x', *, c: bool, d: float = 1.0):\n    pass\n")
    assert list(derived.parameters["properties"]) == ["a", "b", "c", "d"]
    assert derived.parameters["required"] == ["a", "c"]


def test_star_args_and_star_kwargs_are_left_out() -> None:
    derived = derive("def f(a: int, *args: int, b: str, **kwargs: Any):\n    pass\n")
    assert list(derived.parameters["properties"]) == ["a", "b"]
    assert derived.parameters["required"] == ["a", "b"]
    assert derived.parameters["additionalProperties"] is False


def test_no_parameters_gives_an_empty_object_schema() -> None:
    derived = derive("def now():\n    '''The time.'''\n")
    assert derived.parameters == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_every_derived_schema_is_a_valid_tool_schema() -> None:
    derived = derive(
        """
        from typing import Annotated, Literal, Optional

        def everything(a: int, b: Optional[list[dict[str, float]]] = None, c: Literal['x'] = 'x',
                       d: tuple[int, str] = (1, 'a'), e: Annotated[str, 'note'] = '', *, f: 'bool' = True):
            pass
        """
    )
    check_schema(derived.parameters)


# --- docstrings -------------------------------------------------------------------------------------------


def test_google_style() -> None:
    derived = derive(
        '''
        def search(query: str, limit: int = 10, *, exact: bool = False):
            """Search the catalogue
            for matching items.

            Results are ranked.

            Args:
                query (str): What to look for.
                limit: At most this many
                    results, newest first.
                exact (bool, optional): Match the whole phrase.

            Returns:
                list: the items.

            Raises:
                ValueError: never.
            """
        '''
    )
    assert derived.description == "Search the catalogue for matching items."
    properties = derived.parameters["properties"]
    assert properties["query"]["description"] == "What to look for."
    assert properties["limit"]["description"] == "At most this many results, newest first."
    assert properties["exact"]["description"] == "Match the whole phrase."


def test_google_style_with_blank_lines_between_entries_and_starred_names() -> None:
    derived = derive(
        '''
        def f(a, *args, **kwargs):
            """Summary.

            Arguments:
                a: The a.

                *args: extra.
                **kwargs: more.
            """
        '''
    )
    assert derived.parameters["properties"]["a"]["description"] == "The a."


def test_numpy_style() -> None:
    derived = derive(
        '''
        def resample(data, rate, method="linear"):
            """Resample a series.

            Parameters
            ----------
            data : list of float
                The samples,
                oldest first.
            rate : int
                Samples per second.
            method : str, optional
                How to interpolate.

            Returns
            -------
            list
                The new samples.
            """
        '''
    )
    assert derived.description == "Resample a series."
    properties = derived.parameters["properties"]
    assert properties["data"] == {"description": "The samples, oldest first."}
    # Without an annotation, a simple docstring type is used.
    assert properties["rate"] == {"type": "integer", "description": "Samples per second."}
    assert properties["method"] == {
        "type": "string",
        "description": "How to interpolate.",
        "default": "linear",
    }


def test_numpy_style_shared_entry() -> None:
    derived = derive(
        '''
        def point(x: float, y: float):
            """A point.

            Parameters
            ----------
            x, y : float
                Coordinates.
            """
        '''
    )
    assert derived.parameters["properties"]["y"]["description"] == "Coordinates."
    assert derived.parameters["properties"]["x"]["description"] == "Coordinates."


def test_rest_style() -> None:
    derived = derive(
        '''
        def send(to: str, body: str, retries=2):
            """Send a message.

            :param to: The recipient's
                address.
            :param str body: The text.
            :param retries: How often to retry.
            :type retries: int
            :returns: an id
            """
        '''
    )
    assert derived.description == "Send a message."
    properties = derived.parameters["properties"]
    assert properties["to"]["description"] == "The recipient's address."
    assert properties["body"] == {"type": "string", "description": "The text."}
    assert properties["retries"] == {"type": "integer", "description": "How often to retry.", "default": 2}


def test_annotation_beats_docstring_type() -> None:
    derived = derive('def f(x: str):\n    """Do.\n\n    Args:\n        x (int): An x.\n    """\n')
    assert derived.parameters["properties"]["x"] == {"type": "string", "description": "An x."}


def test_docstring_description_beats_annotated_note() -> None:
    derived = derive(
        'def f(x: Annotated[int, "note"]):\n    """Do.\n\n    Args:\n        x: From the doc.\n    """\n'
    )
    assert derived.parameters["properties"]["x"]["description"] == "From the doc."


def test_docstring_only_a_section_has_no_description() -> None:
    derived = derive('def f(x):\n    """Args:\n        x: An x.\n    """\n')
    assert derived.description == ""
    assert derived.parameters["properties"]["x"]["description"] == "An x."


def test_summary_ending_in_a_colon_is_still_the_description() -> None:
    assert derive('def f():\n    """Compute the following:\n\n    more\n    """\n').description == (
        "Compute the following:"
    )


def test_no_docstring() -> None:
    assert derive("def f(x: int):\n    return x\n").description == ""


def test_docstring_for_unknown_parameters_is_ignored() -> None:
    derived = derive('def f(x):\n    """Do.\n\n    Args:\n        y: Not a parameter.\n    """\n')
    assert derived.parameters["properties"] == {"x": {}}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("", ("", {})),
        ("One line.", ("One line.", {})),
        ("First\nparagraph.\n\nSecond.", ("First paragraph.", {})),
        ("\n\nAfter blank lines.", ("After blank lines.", {})),
        (":param a: The a.", ("", {"a": ("The a.", None)})),
        ("Do.\n\nParameters\n----------\na\n    No type.", ("Do.", {"a": ("No type.", None)})),
    ],
)
def test_parse_docstring(doc: str, expected: tuple[str, dict[str, Any]]) -> None:
    assert parse_docstring(doc) == expected


def test_derived_function_pickles() -> None:
    derived = derive("def f(a: int):\n    pass\n")
    assert pickle.loads(pickle.dumps(derived)) == derived


def test_validation_failed_pickles_with_its_field() -> None:
    with pytest.raises(ValidationFailed) as info:
        derive_schema("def broken(:\n")
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.field == "source"
    assert copy.message == info.value.message
