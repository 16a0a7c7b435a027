"""ToolIndex: BM25 over names, descriptions and parameters."""

from __future__ import annotations

from typing import Any

import pytest

from foundation.errors import ValidationFailed
from toolserver.tools import ToolIndex, ToolSpec, tokenize


def spec(name: str, description: str = "", **params: str) -> ToolSpec:
    properties: dict[str, Any] = {p: {"type": "string", "description": d} for p, d in params.items()}
    return ToolSpec(
        name=name, description=description, parameters={"type": "object", "properties": properties}
    )


TOOLS = [
    spec("get_weather", "Current weather and forecast for a city.", city="The city name"),
    spec("sendEmail", "Send an email message to a recipient.", to="Recipient address", body="Message text"),
    spec("read-file", "Read a file from the session workspace.", path="Workspace-relative path"),
    spec("list_files", "List the files of a workspace directory.", dir="Directory"),
    spec("web_search", "Search the web and return the top results.", query="What to look for"),
    spec("AskHumanForHelp", "Ask a human operator a question and wait for the answer."),
    spec(
        "convert_currency", "Convert an amount between currencies.", amount="How much", target="Currency code"
    ),
]
INDEX = ToolIndex.build(TOOLS)


def names(results: list[tuple[ToolSpec, float]]) -> list[str]:
    return [s.name for s, _ in results]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("get_weather", ["get", "weather"]),
        ("sendEmail", ["send", "email"]),
        ("read-file", ["read", "file"]),
        ("AskHumanForHelp", ["ask", "human", "help"]),
        ("HTTPServer2go", ["http", "server", "2", "go"]),
        ("parseJSONBody", ["parse", "json", "body"]),
        ("List the files of a directory", ["list", "file", "directory"]),
        ("queries and messages", ["query", "message"]),
        ("address class status", ["address", "class", "status"]),
        ("", []),
        ("¿qué?", ["qu"]),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


@pytest.mark.parametrize(
    ("query", "best"),
    [
        ("weather", "get_weather"),
        ("what's the forecast in Paris", "get_weather"),
        ("send an email", "sendEmail"),
        ("email", "sendEmail"),
        ("read file", "read-file"),
        ("list files in a directory", "list_files"),
        ("search the web", "web_search"),
        ("ask a human", "AskHumanForHelp"),
        ("currency", "convert_currency"),
        ("recipient", "sendEmail"),
    ],
)
def test_best_match(query: str, best: str) -> None:
    assert names(INDEX.search(query, 3))[0] == best


def test_scores_are_descending_and_positive() -> None:
    results = INDEX.search("file workspace", 10)
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)
    assert all(score > 0 for score in scores)
    assert set(names(results)) == {"read-file", "list_files"}


def test_name_counts_more_than_description() -> None:
    index = ToolIndex.build([spec("other", "Works with a file."), spec("file_tool", "Works with things.")])
    assert names(index.search("file")) == ["file_tool", "other"]


def test_parameters_count_less_than_description() -> None:
    index = ToolIndex.build(
        [spec("tool_a", "Knows nothing.", where="A city."), spec("tool_b", "Knows every city.")]
    )
    assert names(index.search("city")) == ["tool_b", "tool_a"]


def test_ties_keep_build_order() -> None:
    twins = [spec(f"tool{i}", "Same words exactly.") for i in range(5)]
    assert names(ToolIndex.build(twins).search("words", 5)) == [f"tool{i}" for i in range(5)]
    assert names(ToolIndex.build(reversed(twins)).search("words", 5)) == [
        f"tool{i}" for i in reversed(range(5))
    ]


def test_no_match_and_stopword_only_queries_find_nothing() -> None:
    assert INDEX.search("zebra") == []
    assert INDEX.search("the and of") == []
    assert INDEX.search("") == []


def test_empty_index() -> None:
    index = ToolIndex.build([])
    assert len(index) == 0
    assert index.search("anything") == []


def test_k_limits_and_is_capped() -> None:
    many = [spec(f"t{i}", "common word") for i in range(150)]
    index = ToolIndex.build(many)
    assert len(index.search("common", 7)) == 7
    assert len(index.search("common", 1000)) == 100


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_bad_k_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(ValidationFailed) as info:
        INDEX.search("weather", bad)
    assert info.value.field == "k"


def test_rare_terms_weigh_more() -> None:
    index = ToolIndex.build(
        [spec("x1", "data export csv"), spec("x2", "data export json"), spec("x3", "data import")]
    )
    assert names(index.search("data csv"))[0] == "x1"
