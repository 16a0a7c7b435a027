"""What one cell of a sandbox's kernel produced: its output capped, its displays bounded, its outcome."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any, Literal

from sandbox._output import CappedOutput, cap_text
from sandbox.base import Display, PythonError, PythonResult

__all__ = ["DISPLAY_LIMIT", "KERNEL_DIED", "Cell", "OutputSink", "broke_the_caps", "died"]

OutputSink = Callable[[str, Any], None]
"""Sees a cell's output as it comes: ("stdout" or "stderr", text) and ("display", Display)."""

DISPLAY_LIMIT = 8 * 1024 * 1024  # total bytes of rich display data kept per cell
DISPLAY_ITEM_COST = 256  # charged per display item besides its data
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
KERNEL_DIED = PythonError(
    ename="KernelDied",
    evalue="the kernel died while running this cell (it will be replaced on the next call)",
    traceback=[],
)


class Cell:
    """What one execute_request has produced so far."""

    def __init__(self, output_limit: int, on_output: OutputSink | None = None) -> None:
        self.limit = output_limit
        self.on_output = on_output
        self.stdout = CappedOutput(max(1, output_limit))
        self.stderr = CappedOutput(max(1, output_limit))
        self.result: str | None = None
        self.display: list[Display] = []
        self.display_bytes = 0
        self.error: PythonError | None = None
        self.truncated = False
        self.idle = False
        self.reply_status: str | None = None

    def on_iopub(self, msg_type: str, content: dict[str, Any]) -> None:
        """Take one iopub message of this cell: output, a result, a display, an error or the idle status."""
        if msg_type == "stream":
            name = "stderr" if content.get("name") == "stderr" else "stdout"
            text = str(content.get("text", ""))
            (self.stderr if name == "stderr" else self.stdout).add_text(text)
            if self.on_output is not None:
                self.on_output(name, text)
        elif msg_type == "execute_result":
            data = dict(content.get("data", {}))
            text = data.pop("text/plain", None)
            if text is not None:
                self.result = self._cap(str(text))
            self._add_display(data)
        elif msg_type in ("display_data", "update_display_data"):
            self._add_display(content.get("data", {}))
        elif msg_type == "error":
            self.error = PythonError(
                ename=str(content.get("ename", "")),
                evalue=self._cap(str(content.get("evalue", ""))),
                traceback=[self._cap(_ANSI.sub("", line)) for line in content.get("traceback", [])],
            )
        elif msg_type == "status" and content.get("execution_state") == "idle":
            self.idle = True

    def _cap(self, text: str) -> str:
        capped, cut = cap_text(text, self.limit)
        self.truncated |= cut
        return capped

    def _add_display(self, data: dict[str, Any]) -> None:
        if any(mime.startswith("image/") for mime in data):
            data = {mime: value for mime, value in data.items() if mime != "text/plain"}
        for mime, value in data.items():
            text = value if isinstance(value, str) else json.dumps(value)
            if mime.startswith("text/") or mime.endswith("json"):
                text = self._cap(text)
            cost = len(text) + DISPLAY_ITEM_COST  # an empty item is not free: its count is bounded too
            if self.display_bytes + cost > DISPLAY_LIMIT:
                self.truncated = True
                continue
            self.display_bytes += cost
            self.display.append(Display(mime=mime, data=text))
            if self.on_output is not None:
                self.on_output("display", self.display[-1])

    def finish(self, status: Literal["ok", "error", "timeout"]) -> PythonResult:
        """The cell's result; an error or aborted reply turns an "ok" into "error"."""
        stdout, out_cut = self.stdout.text()
        stderr, err_cut = self.stderr.text()
        error = self.error
        if status == "ok" and self.reply_status == "aborted":
            status = "error"
            error = PythonError("Aborted", "the kernel aborted this cell after an earlier error", [])
        elif status == "ok" and (self.reply_status == "error" or error is not None):
            status = "error"
        return PythonResult(
            status=status,
            stdout=stdout,
            stderr=stderr,
            result=self.result,
            display=self.display,
            error=error,
            truncated=self.truncated or out_cut or err_cut,
        )


def broke_the_caps(cell: Cell, reason: str) -> PythonResult:
    """The result of a cell whose kernel sent `reason` (over the caps) and was cut off."""
    error = PythonError(
        ename="KernelProtocolError",
        evalue=(
            f"the kernel sent {reason}; it was cut off, and the next call gets a fresh kernel"
            " (its variables are lost)"
        ),
        traceback=[],
    )
    return dataclasses.replace(cell.finish("error"), status="error", error=error)


def died(cell: Cell, timed_out: bool) -> PythonResult:
    """The result of a cell whose kernel died while it ran."""
    return dataclasses.replace(cell.finish("timeout" if timed_out else "error"), error=KERNEL_DIED)
