"""Tenant-supplied regular expressions, matched in linear time by RE2.

Python's `re` backtracks: `^(a+)+$` against `"a" * 40 + "!"` runs for hours on one core. RE2 never backtracks;
its cost is at most (program size x text length), so a pattern is refused when it is over
`MAX_PATTERN_PROGRAM_SIZE` instructions, and callers that match many texts charge a `RegexBudget` with that
product before each search. What RE2 cannot express (backreferences, lookaround, possessive or atomic groups)
is refused when the pattern is registered, with the field that holds it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import re2

from foundation.errors import ValidationFailed

__all__ = [
    "MAX_PATTERN_CHARS",
    "MAX_PATTERN_PROGRAM_SIZE",
    "LinearPattern",
    "RegexBudget",
    "RegexBudgetExceeded",
    "compile_linear",
    "is_linear_regex",
]

MAX_PATTERN_CHARS = 4096
MAX_PATTERN_PROGRAM_SIZE = 4000  # RE2 instructions; `^[a-z]{1,255}$` is 511, `.{0,400}` about 3600

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused tenant pattern on the server's stderr
# Program and match caches of one pattern (RE2's default is 8 MiB); past it RE2 matches more slowly, still
# in linear time. With the cache below, compiled patterns hold at most 512 MiB in all.
_OPTIONS.max_mem = 1 << 20


@dataclass(frozen=True)
class LinearPattern:
    """A compiled RE2 pattern; `search` is `re.search` without backtracking."""

    pattern: str
    program_size: int
    _compiled: re2._Regexp[str]

    def cost(self, text: str) -> int:
        """An upper bound of the work one search of `text` does (RE2 instructions x characters)."""
        return self.program_size * (len(text) + 1)

    def search(self, text: str) -> bool:
        return self._compiled.search(text) is not None


class RegexBudgetExceeded(Exception):
    """The regex work a budget allows is spent."""


class RegexBudget:
    """Caps the summed cost of the searches one request makes (RE2 releases the GIL, not the core)."""

    def __init__(self, max_work: int) -> None:
        self.max_work = max_work
        self.spent = 0

    def search(self, pattern: LinearPattern, text: str) -> bool:
        self.spent += pattern.cost(text)
        if self.spent > self.max_work:
            raise RegexBudgetExceeded(
                f"matching these values against pattern {_excerpt(pattern.pattern)} is over the "
                f"regex work cap of {self.max_work} (pattern size x text length)"
            )
        return pattern.search(text)


def compile_linear(pattern: str, *, field: str) -> LinearPattern:
    """Compile `pattern` for RE2, or raise ValidationFailed(field) saying why it cannot be used."""
    compiled = _compile(pattern) if isinstance(pattern, str) else "a pattern must be a string"
    if isinstance(compiled, str):
        raise ValidationFailed(f"pattern {_excerpt(str(pattern))} cannot be used: {compiled}", field=field)
    return compiled


def is_linear_regex(pattern: str) -> bool:
    """Whether RE2 compiles `pattern` under the caps; not cached (for values that are data, not schemas)."""
    return isinstance(_compile.__wrapped__(pattern), LinearPattern)


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> LinearPattern | str:
    """The compiled pattern, or the reason it is refused (cached either way: tools are called often)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"it is {len(pattern)} characters long, over the cap of {MAX_PATTERN_CHARS}"
    try:
        compiled = re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = (
            exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        )
        return (
            f"{reason} (patterns are matched by RE2, in linear time: backreferences, lookahead, "
            "lookbehind and possessive or atomic groups are not supported)"
        )
    if compiled.programsize > MAX_PATTERN_PROGRAM_SIZE:
        return (
            f"it compiles to {compiled.programsize} RE2 instructions, over the cap of "
            f"{MAX_PATTERN_PROGRAM_SIZE}; use smaller repetition counts"
        )
    return LinearPattern(pattern, compiled.programsize, compiled)


def _excerpt(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 80 else pattern[:77] + "...")
