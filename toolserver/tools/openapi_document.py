"""An OpenAPI document as a request carries it: a parsed JSON object, or JSON/YAML text.

YAML is read without aliases: an anchor used nine times in each of nine levels turns 700 bytes into gigabytes
once stored as JSON ("billion laughs"), and merge keys (`<<: *base`) are aliases too. The text is scanned for
events first (libyaml when installed, fast and alias-aware), so the size, event count and deadline are checked
before anything is built.
"""

from __future__ import annotations

from typing import Any

import yaml

from foundation.errors import PayloadTooLarge, ValidationFailed
from foundation.schema.limits import MAX_YAML_CHARS, MAX_YAML_EVENTS, ExpansionBudget

__all__ = ["load_document"]

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_document(document: dict[str, Any] | str, budget: ExpansionBudget) -> dict[str, Any]:
    """The document as a JSON object; ValidationFailed / PayloadTooLarge (field "document") otherwise."""
    if isinstance(document, dict):
        return document
    if len(document) > MAX_YAML_CHARS:
        raise PayloadTooLarge(
            f"the document is {len(document)} characters, over the cap of {MAX_YAML_CHARS}",
            field="document",
            limit=MAX_YAML_CHARS,
        )
    try:
        _scan(document, budget)
        loaded = yaml.load(document, Loader=_LOADER)  # a safe loader; aliases were refused by _scan
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"document is neither JSON nor YAML: {exc}", field="document") from None
    except RecursionError:
        raise ValidationFailed("the document is nested too deeply", field="document") from None
    if not isinstance(loaded, dict):
        raise ValidationFailed("document must be an OpenAPI object", field="document")
    return loaded


def _scan(text: str, budget: ExpansionBudget) -> None:
    for count, event in enumerate(yaml.parse(text, Loader=_LOADER), 1):
        if isinstance(event, yaml.AliasEvent):
            raise ValidationFailed(
                f"the document uses the YAML alias *{event.anchor}; aliases (and merge keys) are not "
                "supported, write the value out or use a $ref",
                field="document",
            )
        if count > MAX_YAML_EVENTS:
            raise PayloadTooLarge(
                f"the document has over {MAX_YAML_EVENTS} YAML nodes", field="document", limit=MAX_YAML_EVENTS
            )
        if count % 1024 == 0:
            budget.check_time()
