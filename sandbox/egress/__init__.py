"""Sandbox egress by allow-list: the rules, and the node's proxy that enforces them outside the sandbox."""

from sandbox.egress.base import AddressCheck, EgressLimits
from sandbox.egress.rules import EgressRule, parse_rules

__all__ = ["AddressCheck", "EgressLimits", "EgressRule", "parse_rules"]
