"""The environment's message: who sent it, to whom, on which topic, and its place in the history."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from foundation.errors import PayloadTooLarge, ValidationFailed

__all__ = [
    "DEFAULT_TOPIC",
    "MAX_CONTENT_CHARS",
    "MAX_METADATA_CHARS",
    "MAX_RECIPIENTS",
    "Message",
    "check_name",
    "check_topic",
]

DEFAULT_TOPIC = "general"
MAX_CONTENT_CHARS = 200_000
MAX_METADATA_CHARS = 20_000
MAX_RECIPIENTS = 1_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
_TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}")


def check_name(value: Any, field: str, *, what: str = "name") -> str:
    """`value` if it is a valid agent, role or environment name, else ValidationFailed naming `field`."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationFailed(
            f"{field} must be a {what} of 1-64 letters, digits or '_.:@-' starting with a letter or digit, "
            f"got {value!r}",
            field=field,
        )
    return value


def check_topic(value: Any, field: str = "topic") -> str:
    """`value` if it is a valid topic, else ValidationFailed naming `field`."""
    if not isinstance(value, str) or not _TOPIC.fullmatch(value):
        raise ValidationFailed(
            f"{field} must be 1-128 letters, digits or '_.:/@-' starting with a letter or digit, got {value!r}",
            field=field,
        )
    return value


@dataclass(frozen=True)
class Message:
    """One message. `recipients` empty means "whoever subscribes to `topic`".

    `seq` (per sender, from 1), `position` (in the environment's history, from 1) and `delivered_to`
    are stamped by the hub when it accepts the message; a draft has them at 0 / empty.
    """

    sender: str
    content: str
    recipients: tuple[str, ...] = ()
    topic: str = DEFAULT_TOPIC
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex[:16]}")
    created_at: float = field(default_factory=time.time)
    seq: int = 0
    position: int = 0
    delivered_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.sender, "sender")
        if not isinstance(self.content, str):
            raise ValidationFailed(
                f"content must be a string, got {type(self.content).__name__}", field="content"
            )
        if len(self.content) > MAX_CONTENT_CHARS:
            raise PayloadTooLarge(
                f"content has {len(self.content)} characters; the limit is {MAX_CONTENT_CHARS}",
                field="content",
                limit=MAX_CONTENT_CHARS,
            )
        object.__setattr__(self, "recipients", _names(self.recipients, "recipients"))
        object.__setattr__(self, "delivered_to", _names(self.delivered_to, "delivered_to"))
        check_topic(self.topic)
        _check_metadata(self.metadata)
        if not isinstance(self.id, str) or not 1 <= len(self.id) <= 64:
            raise ValidationFailed("id must be a string of 1-64 characters", field="id")
        for name in ("seq", "position"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationFailed(f"{name} must be an integer >= 0, got {value!r}", field=name)
        if isinstance(self.created_at, bool) or not isinstance(self.created_at, (int, float)):
            raise ValidationFailed("created_at must be a number (epoch seconds)", field="created_at")

    @property
    def is_draft(self) -> bool:
        """True until the hub accepted it."""
        return self.position == 0

    def stamped(self, *, seq: int, position: int, delivered_to: Iterable[str]) -> Message:
        """The accepted copy of this draft."""
        return replace(self, seq=seq, position=position, delivered_to=tuple(delivered_to))

    def reply(self, sender: str, content: str, **fields: Any) -> Message:
        """A draft answering this message: same topic, `in_reply_to` in its metadata."""
        metadata = {"in_reply_to": self.id, **fields.pop("metadata", {})}
        return Message(sender, content, topic=fields.pop("topic", self.topic), metadata=metadata, **fields)

    def to_dict(self) -> dict[str, Any]:
        """The message as JSON (`from_dict` reads it back)."""
        return {
            "id": self.id,
            "sender": self.sender,
            "recipients": list(self.recipients),
            "topic": self.topic,
            "content": self.content,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "seq": self.seq,
            "position": self.position,
            "delivered_to": list(self.delivered_to),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """A message from its JSON form; unknown or missing required keys are ValidationFailed."""
        if not isinstance(data, Mapping):
            raise ValidationFailed("a message must be a JSON object", field=None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationFailed(f"unknown message field {unknown[0]!r}", field=unknown[0])
        for required in ("sender", "content"):
            if required not in data:
                raise ValidationFailed(f"a message needs {required!r}", field=required)
        values = dict(data)
        for name in ("recipients", "delivered_to"):
            if name in values:
                values[name] = _names(values[name], name)
        return cls(**values)


def _names(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValidationFailed(f"{field} must be a list of agent names", field=field)
    if len(value) > MAX_RECIPIENTS:
        raise ValidationFailed(
            f"{field} lists {len(value)} names; the limit is {MAX_RECIPIENTS}", field=field
        )
    names = tuple(check_name(v, f"{field}[{i}]", what="agent name") for i, v in enumerate(value))
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise ValidationFailed(f"{field} names {duplicate!r} twice", field=field)
    return names


def _check_metadata(metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise ValidationFailed("metadata must be a JSON object", field="metadata")
    try:
        size = len(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"metadata must be JSON-serialisable: {exc}", field="metadata") from None
    if size > MAX_METADATA_CHARS:
        raise PayloadTooLarge(
            f"metadata is {size} characters as JSON; the limit is {MAX_METADATA_CHARS}",
            field="metadata",
            limit=MAX_METADATA_CHARS,
        )
