"""Allow-list entries of a session's egress: `host`, `*.domain`, either with `:port` (default 80 and 443)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from foundation.errors import ValidationFailed

__all__ = ["DEFAULT_PORTS", "EgressRule", "allowed", "parse_rules", "within"]

DEFAULT_PORTS = (80, 443)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class EgressRule:
    """One entry: a name (or, with `wildcard`, every name below it) on some ports."""

    host: str  # lower case, no trailing dot; an address in its compressed form
    wildcard: bool = False  # "*.example.com": any name ending in ".example.com", not example.com itself
    ports: tuple[int, ...] = DEFAULT_PORTS

    def matches(self, host: str, port: int) -> bool:
        """Whether a connection to `host` on `port` is within this entry."""
        if port not in self.ports:
            return False
        name = normalize_host(host)
        return name.endswith("." + self.host) if self.wildcard else name == self.host

    def covers(self, other: EgressRule) -> bool:
        """Whether everything `other` allows, this entry allows too (for the operator's maximum)."""
        if not set(other.ports) <= set(self.ports):
            return False
        if not self.wildcard:
            return not other.wildcard and other.host == self.host
        return other.host.endswith("." + self.host)

    def __str__(self) -> str:
        host = ("*." if self.wildcard else "") + (f"[{self.host}]" if ":" in self.host else self.host)
        return host if self.ports == DEFAULT_PORTS else f"{host}:{self.ports[0]}"


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, brackets off an IPv6 literal."""
    return host.strip().strip("[]").lower().rstrip(".")


def parse_rule(raw: str) -> EgressRule:
    """One entry; ValueError naming what is wrong."""
    text = raw.strip().lower()
    if "/" in text or "@" in text:
        raise ValueError(f"{raw!r} is a URL; list the host name alone (e.g. pypi.org, or pypi.org:8443)")
    port: int | None = None
    if text.startswith("["):
        inside, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"{raw!r} is not [address] or [address]:port")
        text, port = inside, _port(raw, rest[1:]) if rest else None
    elif text.count(":") == 1:
        text, _, digits = text.partition(":")
        port = _port(raw, digits)
    elif ":" in text:  # a bare IPv6 address
        pass
    wildcard = text.startswith("*.")
    host = text[2:] if wildcard else text
    host = host.rstrip(".")
    try:
        host = str(ipaddress.ip_address(host))
        if wildcard:
            raise ValueError(f"{raw!r}: a wildcard needs a domain, not an address")
    except ValueError as exc:
        if "wildcard" in str(exc):
            raise
        labels = host.split(".")
        if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
            raise ValueError(
                f"{raw!r} is not a host name, *.domain or address (with an optional :port)"
            ) from None
        if wildcard and len(labels) < 2:
            raise ValueError(f"{raw!r}: a wildcard must stand below a domain of two labels or more") from None
    return EgressRule(host, wildcard, DEFAULT_PORTS if port is None else (port,))


def parse_rules(entries: Iterable[str], *, field: str = "network.egress") -> tuple[EgressRule, ...]:
    """Every entry, or ValidationFailed (422) naming the first bad one (`field[i]`)."""
    rules = []
    for index, raw in enumerate(entries):
        try:
            rules.append(parse_rule(raw))
        except ValueError as exc:
            raise ValidationFailed(f"egress entry {index}: {exc}", field=f"{field}[{index}]") from None
    return tuple(dict.fromkeys(rules))


def allowed(rules: Iterable[EgressRule], host: str, port: int) -> bool:
    """Whether any rule lets a connection to `host` on `port` through."""
    return any(rule.matches(host, port) for rule in rules)


def within(rules: Iterable[EgressRule], maximum: Iterable[str]) -> EgressRule | None:
    """The first rule that the operator's maximum (`*` or entries) does not cover; None when all fit."""
    limits = list(maximum)
    if "*" in limits:
        return None
    caps = parse_rules(limits, field="TOOLSERVER_SANDBOX_EGRESS_MAX")
    for rule in rules:
        if not any(cap.covers(rule) for cap in caps):
            return rule
    return None


def _port(raw: str, digits: str) -> int:
    if not digits.isdigit() or not 0 < int(digits) < 65536:
        raise ValueError(f"{raw!r} has no valid port after ':'")
    return int(digits)
