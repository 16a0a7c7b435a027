"""Keyword retrieval over tools: a small BM25 index where a tool's name weighs more than its description."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from foundation.errors import ValidationFailed
from toolserver.tools.base import ToolSpec

__all__ = ["MAX_K", "ToolIndex", "tokenize"]

MAX_K = 100
_K1 = 1.2
_B = 0.75
_NAME_WEIGHT = 3.0
_DESCRIPTION_WEIGHT = 1.0
_PARAMETER_WEIGHT = 0.5
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "of", "on"}
    | {"or", "that", "the", "this", "to", "was", "with"}
)


def tokenize(text: str) -> list[str]:
    """Lower-case word stems; snake_case, kebab-case and camelCase split into their words."""
    tokens = []
    for word in re.findall(r"[A-Za-z0-9]+", text):
        for part in _CAMEL.findall(word):
            token = _stem(part.lower())
            if token not in _STOPWORDS:
                tokens.append(token)
    return tokens


def _stem(token: str) -> str:
    # Plurals only: enough for "files" to meet "file" without mangling names.
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def _weighted_terms(spec: ToolSpec) -> dict[str, float]:
    terms: defaultdict[str, float] = defaultdict(float)
    for token in tokenize(spec.name):
        terms[token] += _NAME_WEIGHT
    for token in tokenize(spec.description):
        terms[token] += _DESCRIPTION_WEIGHT
    properties = spec.parameters.get("properties") if isinstance(spec.parameters, dict) else None
    for name, schema in (properties or {}).items():
        description = schema.get("description", "") if isinstance(schema, dict) else ""
        for token in tokenize(f"{name} {description}"):
            terms[token] += _PARAMETER_WEIGHT
    return dict(terms)


@dataclass(frozen=True)
class ToolIndex:
    """An immutable BM25 index; rebuild it when the tool set changes (it is cheap)."""

    specs: tuple[ToolSpec, ...]
    terms: tuple[dict[str, float], ...]
    lengths: tuple[float, ...]
    document_frequency: dict[str, int]
    average_length: float

    @classmethod
    def build(cls, specs: Iterable[ToolSpec]) -> ToolIndex:
        """The index of `specs`: names, descriptions and parameter names, weighted in that order."""
        specs = tuple(specs)
        terms = tuple(_weighted_terms(spec) for spec in specs)
        lengths = tuple(float(sum(t.values())) for t in terms)
        frequency: Counter[str] = Counter()
        for document in terms:
            frequency.update(document.keys())
        average = sum(lengths) / len(lengths) if lengths else 0.0
        return cls(specs, terms, lengths, dict(frequency), average)

    def search(self, query: str, k: int = 10) -> list[tuple[ToolSpec, float]]:
        """Up to `k` (capped at 100) tools matching `query`, best first; equal scores keep index order."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValidationFailed("k must be a positive integer", field="k")
        k = min(k, MAX_K)
        query_terms = set(tokenize(query))
        scored: list[tuple[float, int]] = []
        for position, document in enumerate(self.terms):
            score = sum(self._term_score(term, document, self.lengths[position]) for term in query_terms)
            if score > 0:
                scored.append((score, position))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [(self.specs[position], round(score, 6)) for score, position in scored[:k]]

    def _term_score(self, term: str, document: dict[str, float], length: float) -> float:
        tf = document.get(term, 0.0)
        if not tf:
            return 0.0
        n, df = len(self.terms), self.document_frequency[term]
        idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        norm = 1.0 - _B + _B * length / (self.average_length or 1.0)
        return idf * tf * (_K1 + 1.0) / (tf + _K1 * norm)

    def __len__(self) -> int:
        return len(self.specs)
