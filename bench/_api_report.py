"""The API benchmark's tables: issue 11's targets, API/direct ratios, CPU per request and verdicts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from bench._stats import format_ms, format_table, percentiles
from bench.server_bench import Sample

__all__ = [
    "GOALS",
    "LATENCY_CALLS",
    "Goal",
    "Measured",
    "PeerRow",
    "cpu_ms_per_request",
    "main_rows",
    "peer_rows",
    "rate",
    "render",
    "settings_line",
    "stat",
    "verdict",
]

LATENCY_CALLS = ("shell", "python", "get_session", "healthz", "tool")  # measured at c = 1, in this order

SHELL_MS, PYTHON_MS, READ_MS, CREATE_MS, TOOL_OVERHEAD_MS = 3.0, 8.0, 2.0, 20.0, 3.0
PYTHON_VS_AUTOGEN, THROUGHPUT_PER_S = 0.15, 400.0


@dataclass(frozen=True)
class Goal:
    """One line of the issue's goal: the call, its direct counterpart, the issue's 'now' and the target."""

    call: str
    direct: str
    before: str
    target: str


GOALS = {
    "shell": Goal("shell `true`", "manager.shell", "31.6 ms", f"p50 <= {SHELL_MS:g} ms"),
    "python": Goal(
        "Python `1+1`",
        "manager.python",
        "44.1 ms",
        f"p50 <= {PYTHON_MS:g} ms, <= {PYTHON_VS_AUTOGEN:g}x autogen-ext",
    ),
    "get_session": Goal("GET /v1/sessions/{id}", "manager.get", "12.3 ms", f"p50 <= {READ_MS:g} ms"),
    "healthz": Goal("GET /healthz", "manager.stats", "13.6 ms", f"p50 <= {READ_MS:g} ms"),
    "tool": Goal(
        "python tool add(2, 3)",
        "manager.python(cell)",
        "~25 ms over",
        f"API - direct p50 <= {TOOL_OVERHEAD_MS:g} ms",
    ),
    "throughput": Goal(
        "shell `true` throughput", "manager.shell", "~100/s", f">= {THROUGHPUT_PER_S:g}/s, 0 errors"
    ),
    "create": Goal("warm session create", "manager.create", "38-65 ms", f"p50 <= {CREATE_MS:g} ms"),
}


@dataclass
class Measured:
    """One call of the goal: its sample through the API and on the sandbox manager directly."""

    key: str
    api: Sample
    direct: Sample | None = None
    concurrency: int = 1


@dataclass(frozen=True)
class PeerRow:
    """One round trip of a peer, as bench.sandbox_bench measured it (stats None: it did not run)."""

    system: str
    measurement: str
    stats: dict[str, float] | None
    note: str = ""

    @property
    def kind(self) -> str:
        """'python' for a `1+1` round trip, 'shell' for the others."""
        return "python" if "1+1" in self.measurement else "shell"


def stat(sample: Sample | None, key: str = "p50") -> float | None:
    """A percentile of the sample's latencies (ms), None without a sample."""
    if sample is None or not sample.latencies_ms:
        return None
    return percentiles(sample.latencies_ms)[key]


def rate(sample: Sample | None) -> float | None:
    """Completed calls per second over the measurement's wall time."""
    if sample is None or not sample.latencies_ms or sample.elapsed_s <= 0:
        return None
    return sample.n / sample.elapsed_s


def cpu_ms_per_request(sample: Sample | None) -> float | None:
    """CPU time of the server's processes during the measurement, per completed call (ms)."""
    if sample is None or sample.server_cpu_s is None or not sample.latencies_ms:
        return None
    return sample.server_cpu_s * 1000 / sample.n


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _peer_p50(peers: list[PeerRow], system: str, kind: str) -> float | None:
    for row in peers:
        if row.system.startswith(system) and row.kind == kind and row.stats:
            return row.stats["p50"]
    return None


def verdict(measured: Measured, peers: list[PeerRow]) -> str:
    """'met' or 'NOT met' against the issue's target, with the deciding number when it is not obvious."""
    api, key = measured.api, measured.key
    p50 = stat(api)
    if p50 is None:
        return "NOT met (no sample)"
    if api.errors:
        return f"NOT met ({api.errors} errors)"
    if key == "throughput":
        per_s = rate(api) or 0.0
        return "met" if per_s >= THROUGHPUT_PER_S else "NOT met"
    if key == "tool":
        direct = stat(measured.direct)
        if direct is None:
            return "not judged (no direct sample)"
        overhead = p50 - direct
        return (
            "met" if overhead <= TOOL_OVERHEAD_MS else "NOT met"
        ) + f" (overhead {format_ms(overhead)} ms)"
    if key == "python":
        autogen = _peer_p50(peers, "autogen-ext", "python")
        if autogen is None:
            return ("met" if p50 <= PYTHON_MS else "NOT met") + " (8 ms part; autogen-ext not measured)"
        share = p50 / autogen
        ok = p50 <= PYTHON_MS and share <= PYTHON_VS_AUTOGEN
        return ("met" if ok else "NOT met") + f" ({share:.2f}x autogen-ext)"
    limit = {"shell": SHELL_MS, "get_session": READ_MS, "healthz": READ_MS, "create": CREATE_MS}[key]
    return "met" if p50 <= limit else "NOT met"


MAIN_COLUMNS = [
    "call", "c", "n", "errors", "API p50", "API p90", "direct call", "direct p50", "direct p90", "API/direct",
    "req/s", "direct req/s", "server CPU ms/req", "issue: before", "target", "verdict",
]  # fmt: skip


def _cell(value: float | None, text: Any = format_ms) -> str:
    return "" if value is None else text(value)


def main_rows(measured: list[Measured], peers: list[PeerRow]) -> list[list[str]]:
    """One row per call of the goal (latencies in ms)."""
    rows = []
    for m in measured:
        goal, throughput = GOALS[m.key], m.key == "throughput"
        api_p50, direct_p50 = stat(m.api), stat(m.direct)
        ratio = _ratio(api_p50, direct_p50)
        rows.append(
            [
                goal.call,
                str(m.concurrency),
                str(m.api.n),
                str(m.api.errors + (m.direct.errors if m.direct else 0)),
                _cell(api_p50),
                _cell(stat(m.api, "p90")),
                goal.direct if m.direct is not None else "",
                _cell(direct_p50),
                _cell(stat(m.direct, "p90")),
                _cell(ratio, lambda r: f"{r:.1f}x" if r < 100 else f"{r:,.0f}x"),
                _cell(rate(m.api) if throughput else None, lambda r: f"{r:,.0f}"),
                _cell(rate(m.direct) if throughput else None, lambda r: f"{r:,.0f}"),
                _cell(cpu_ms_per_request(m.api), lambda c: f"{c:.2f}"),
                goal.before,
                goal.target,
                verdict(m, peers),
            ]
        )
    return rows


PEER_COLUMNS = [
    "peer",
    "round trip",
    "n",
    "p50",
    "p90",
    "our API p50 / this",
    "our manager p50 / this",
    "notes",
]


def peer_rows(measured: list[Measured], peers: list[PeerRow]) -> list[list[str]]:
    """The peers' round trips next to ours: below 1.0x means ours is faster."""
    ours = {m.key: m for m in measured}
    rows = []
    for peer in peers:
        s = peer.stats
        mine = ours.get(peer.kind)
        p50 = s["p50"] if s else None
        api = _ratio(stat(mine.api) if mine else None, p50)
        direct = _ratio(stat(mine.direct) if mine else None, p50)
        rows.append(
            [
                peer.system,
                peer.measurement,
                str(int(s["n"])) if s else "",
                _cell(p50),
                _cell(s.get("p90") if s else None),
                _cell(api, lambda r: f"{r:.2f}x"),
                _cell(direct, lambda r: f"{r:.2f}x"),
                peer.note,
            ]
        )
    return rows


def settings_line(args: argparse.Namespace) -> str:
    """What the run measured, in one line."""
    return (
        f"{args.requests} calls per latency row (c = 1) after {args.warmup} warm-up, throughput"
        f" {args.throughput_requests} calls at c = {args.concurrency}, {args.creates} warm creates,"
        f" peers {args.peer_calls} calls each"
    )


def render(measured: list[Measured], peers: list[PeerRow], notes: list[str]) -> str:
    """The main table, the peers' table when there is one, and the notes."""
    out = [
        format_table(
            "Through the API vs on the sandbox manager directly (latencies in ms, caller's wall clock, closed loop)",
            MAIN_COLUMNS,
            main_rows(measured, peers),
        )
    ]
    if peers:
        out += [
            "",
            format_table(
                "Peers (bench.sandbox_bench's code, same image)", PEER_COLUMNS, peer_rows(measured, peers)
            ),
        ]
    out += ["", "Notes:"]
    for m in measured:
        for side, sample in (("API", m.api), ("direct", m.direct)):
            if sample is not None and sample.error_examples:
                out.append(f"- {GOALS[m.key].call} ({side}) errors: {sample.error_examples}")
    out += [f"- {note}" for note in notes]
    return "\n".join(out)
