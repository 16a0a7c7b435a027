"""The `format` checks that tool schemas assert, each linear in the string it checks.

jsonschema's own `regex` check compiles the string with Python's `re`: a tenant's argument of 1 MB took 1.25 s
to compile, and `re` keeps the last 512 compiled patterns (about 17.5 MB each). Here `regex` means "RE2 can
compile it" under RE2's caps (`linear_regex`), compiled once and not cached. The other Draft 2020-12 checks
(date, time, date-time, email, idn-email, idn-hostname, ipv4, ipv6, json-pointer, relative-json-pointer, uuid)
were measured linear: under 0.3 s for a 1 MB string, the cap on a call's arguments.
"""

from __future__ import annotations

from jsonschema import Draft202012Validator, FormatChecker

from foundation.schema.regex import is_linear_regex

__all__ = ["FORMAT_CHECKER"]

FORMAT_CHECKER = FormatChecker(())
FORMAT_CHECKER.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)


@FORMAT_CHECKER.checks("regex")
def _is_regex(instance: object) -> bool:
    return not isinstance(instance, str) or is_linear_regex(instance)
