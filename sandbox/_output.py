"""Output caps on the host: the guest daemon's own capper (`sandbox/_guest/sbxd_output.py`), so all cut alike."""

from __future__ import annotations

from sandbox._guest.sbxd_output import DEFAULT_OUTPUT_LIMIT, CappedOutput, cap_text, truncation_marker

__all__ = ["DEFAULT_OUTPUT_LIMIT", "CappedOutput", "cap_text", "truncation_marker"]
