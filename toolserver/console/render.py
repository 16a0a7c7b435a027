"""What the pages show, as escaped HTML: run steps, a cell's displays (images, tables), human requests.

Everything that came from an agent, a model or a sandbox is escaped; images are embedded only as base64
data of an image type, and an HTML table a cell displayed is rebuilt from its cell texts, so no markup from
a sandbox reaches the page.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from html import escape
from html.parser import HTMLParser
from typing import Any

from toolserver import api

__all__ = ["display_html", "python_result_html", "request_html", "steps_html", "table_rows"]

_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_TEXT_LIMIT = 4000
_ICONS = {
    "model": "model",
    "tool": "tool",
    "human": "human",
    "final": "answer",
    "error": "error",
    "plan": "plan",
    "critique": "critique",
}

STYLE = """
.ts-steps { display: flex; flex-direction: column; gap: 6px; }
.ts-step { border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 10px; background: #fafbfc; }
.ts-step.ts-error { border-color: #cf222e; background: #fff5f5; }
.ts-step.ts-final { border-color: #1a7f37; background: #f3fff5; }
.ts-step.ts-human { border-color: #9a6700; background: #fff8e5; }
.ts-head { font-weight: 600; font-size: 0.9em; color: #57606a; }
.ts-pre { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.88em; margin: 4px 0; }
.ts-table { border-collapse: collapse; margin: 4px 0; font-size: 0.88em; }
.ts-table td, .ts-table th { border: 1px solid #d0d7de; padding: 2px 8px; }
.ts-img { max-width: 100%; max-height: 420px; display: block; margin: 4px 0; }
.ts-muted { color: #57606a; font-style: italic; }
"""


def _text(value: Any, limit: int = _TEXT_LIMIT) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n... ({len(text) - limit} more characters)"
    return f'<div class="ts-pre">{escape(text)}</div>'


class _TableParser(HTMLParser):
    """Collects the rows of the first table in an HTML fragment, as plain cell texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._tables += 1
        elif self._tables == 1 and tag == "tr":
            self._row = []
        elif self._row is not None and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "table":
            self._tables = 2  # only the first table is read

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html_fragment: str, max_rows: int = 200) -> list[list[str]]:
    """The cell texts of the first table of an HTML fragment (a DataFrame's display), at most `max_rows`."""
    parser = _TableParser()
    parser.feed(html_fragment[:500_000])
    return parser.rows[:max_rows]


def _table_html(rows: Sequence[Sequence[str]]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="ts-table">{body}</table>'


def _image_html(mime: str, data: str) -> str:
    if mime == "image/svg+xml":  # an <img> never runs an SVG's scripts
        data = base64.b64encode(data.encode()).decode()
    elif not _BASE64.match(data):
        return '<div class="ts-muted">(an image that is not valid base64)</div>'
    try:
        base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4))
    except (binascii.Error, ValueError):
        return '<div class="ts-muted">(an image that is not valid base64)</div>'
    compact = "".join(data.split())
    return f'<img class="ts-img" alt="{escape(mime)} output" src="data:{escape(mime)};base64,{compact}">'


def display_html(display: Iterable[api.Display | dict[str, Any]]) -> str:
    """A cell's rich outputs: images as images, HTML tables as tables, anything else as text."""
    parts = []
    for item in display:
        entry = item if isinstance(item, api.Display) else api.Display.model_validate(item)
        if entry.mime in (*_IMAGE_TYPES, "image/svg+xml"):
            parts.append(_image_html(entry.mime, entry.data))
        elif entry.mime == "text/html" and (rows := table_rows(entry.data)):
            parts.append(_table_html(rows))
        else:
            parts.append(_text(entry.data))
    return "".join(parts)


def python_result_html(result: api.PythonResult | dict[str, Any]) -> str:
    """A notebook cell's answer: stdout, stderr, its value, displays and the error."""
    cell = result if isinstance(result, api.PythonResult) else api.PythonResult.model_validate(result)
    parts = [f'<div class="ts-head">status: {escape(cell.status)}</div>']
    for text in (cell.stdout, cell.stderr, cell.result):
        if text:
            parts.append(_text(text))
    parts.append(display_html(cell.display))
    if cell.error is not None:
        parts.append(_text(f"{cell.error.ename}: {cell.error.evalue}"))
    return "".join(parts)


def _tool_result_html(content: Any) -> str:
    """A tool step's result: a python cell's answer rendered as one, anything else as text."""
    value = content
    if isinstance(content, str):
        try:
            value = json.loads(content)
        except ValueError:
            return _text(content)
    if isinstance(value, dict) and "status" in value and ("display" in value or "stdout" in value):
        try:
            return python_result_html(value)
        except ValueError:
            pass
    return _text(value)


def _arguments(value: Any) -> str:
    """A call's arguments for reading: code and commands as they are written, anything else as JSON."""
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
    if isinstance(parsed, dict) and len(parsed) == 1:
        ((name, text),) = parsed.items()
        if name in ("code", "command") and isinstance(text, str):
            return f"{name}:\n{text}\n"
    return json.dumps(parsed, default=str)


def _step_body(step: api.Step) -> str:
    content = step.content if isinstance(step.content, dict) else {"content": step.content}
    if step.kind == "model":
        parts = [_text(content.get("content"))] if content.get("content") else []
        for call in content.get("tool_calls") or []:
            function = call.get("function") or call  # OpenAI's shape, or a plain {name, arguments}
            parts.append(_text(f"calls {function.get('name')}({_arguments(function.get('arguments'))})"))
        return "".join(parts)
    if step.kind == "tool":
        args = _arguments(content.get("arguments"))
        verdict = "ok" if content.get("ok") else "failed"
        head = (
            f'<div class="ts-pre">{escape(str(content.get("name")))}({escape(args[:2000])}) {verdict}</div>'
        )
        return head + _tool_result_html(content.get("content"))
    if step.kind == "human":
        if "answer" in content:
            return _text(f"answered: {content.get('answer')}")
        return _text(content.get("question"))
    if step.kind == "final":
        return _text(content.get("answer"))
    if step.kind == "error":
        error = content.get("error")
        return _text(error.get("message", error) if isinstance(error, dict) else error)
    return _text(content)


def steps_html(steps: Sequence[api.Step], status: str | None = None) -> str:
    """A run's steps, oldest first, each a box with its kind; the run's status under them."""
    boxes = [
        f'<div class="ts-step ts-{escape(step.kind)}" data-kind="{escape(step.kind)}">'
        f'<div class="ts-head">#{step.index} {escape(_ICONS.get(step.kind, step.kind))}</div>'
        f"{_step_body(step)}</div>"
        for step in steps
    ]
    if not boxes:
        boxes.append('<div class="ts-muted">no steps yet</div>')
    if status:
        boxes.append(f'<div class="ts-head" data-status="{escape(status)}">status: {escape(status)}</div>')
    return f'<div class="ts-steps">{"".join(boxes)}</div>'


def _asks(step: api.Step, request_id: str) -> bool:
    return isinstance(step.content, dict) and step.content.get("request_id") == request_id


def request_html(request: api.HumanRequest, agent: str | None, steps: Sequence[api.Step]) -> str:
    """A pending question: who asks, what, and the run's recent steps as context."""
    who = escape(agent or "an agent")
    run = f" (run {escape(request.run_id)})" if request.run_id else ""
    given = request.context.get("context") if isinstance(request.context, dict) else request.context
    context = "" if given in (None, "", {}) else _text(given, 1000)
    earlier = [s for s in steps if not (s.kind == "human" and _asks(s, request.id))]
    return (
        f'<div class="ts-step ts-human" data-request="{escape(request.id)}">'
        f'<div class="ts-head">{who} asks{run}</div>'
        f'<div class="ts-pre ts-question">{escape(request.question)}</div>{context}'
        f'<div class="ts-head">recent steps</div>{steps_html(earlier[-4:])}</div>'
    )
