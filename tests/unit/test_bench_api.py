"""bench.api_bench's statistics, verdicts and tables on synthetic numbers (no server, no Docker)."""

from __future__ import annotations

import asyncio

import pytest

from bench import api_bench
from bench._api_report import (
    Measured,
    PeerRow,
    cpu_ms_per_request,
    main_rows,
    peer_rows,
    rate,
    render,
    stat,
    verdict,
)
from bench._stats import percentiles
from bench.server_bench import CpuMeter, Sample


def sample(*ms: float, errors: int = 0, elapsed_s: float = 1.0, cpu_s: float | None = None) -> Sample:
    return Sample(latencies_ms=list(ms), errors=errors, elapsed_s=elapsed_s, server_cpu_s=cpu_s)


def autogen(python_p50: float) -> PeerRow:
    stats = {"p50": python_p50, "p90": python_p50 * 2, "p95": python_p50 * 3, "mean": python_p50, "n": 10}
    return PeerRow("autogen-ext 0.7.5", "python block `print(1+1)` round trip", stats)


def test_percentiles_interpolate_p50_and_p90_between_ranks() -> None:
    stats = percentiles([float(v) for v in range(1, 12)])  # 1..11
    assert (stats["p50"], stats["p90"], stats["n"]) == (6.0, 10.0, 11)
    assert percentiles([1.0, 2.0])["p90"] == pytest.approx(1.9)


def test_rate_and_cpu_per_request_come_from_the_sample() -> None:
    s = sample(*[10.0] * 50, elapsed_s=0.5, cpu_s=0.25)
    assert rate(s) == 100.0
    assert cpu_ms_per_request(s) == 5.0
    assert cpu_ms_per_request(sample(1.0)) is None  # no server meter: no CPU figure
    assert stat(None) is None and rate(Sample()) is None


@pytest.mark.parametrize(
    ("key", "p50", "expected"),
    [
        ("shell", 2.9, "met"),
        ("shell", 3.1, "NOT met"),
        ("get_session", 2.0, "met"),
        ("healthz", 12.0, "NOT met"),
        ("create", 19.0, "met"),
        ("create", 38.0, "NOT met"),
    ],
)
def test_latency_targets_are_judged_on_the_api_p50(key: str, p50: float, expected: str) -> None:
    assert verdict(Measured(key, sample(p50, p50, p50)), []) == expected


def test_errors_or_no_sample_fail_any_target() -> None:
    assert verdict(Measured("shell", sample(1.0, errors=2)), []) == "NOT met (2 errors)"
    assert verdict(Measured("shell", Sample()), []) == "NOT met (no sample)"


def test_python_needs_8_ms_and_a_share_of_autogen_when_it_ran() -> None:
    fast = Measured("python", sample(6.0))
    assert verdict(fast, []) == "met (8 ms part; autogen-ext not measured)"
    assert verdict(fast, [autogen(100.0)]) == "met (0.06x autogen-ext)"
    assert verdict(fast, [autogen(30.0)]) == "NOT met (0.20x autogen-ext)"
    assert verdict(Measured("python", sample(44.1)), [autogen(100.0)]) == "NOT met (0.44x autogen-ext)"


def test_the_tool_target_is_the_overhead_over_the_direct_call() -> None:
    assert verdict(Measured("tool", sample(10.0), sample(8.0)), []) == "met (overhead 2.00 ms)"
    assert verdict(Measured("tool", sample(33.0), sample(8.0)), []) == "NOT met (overhead 25.00 ms)"
    assert verdict(Measured("tool", sample(10.0)), []) == "not judged (no direct sample)"


def test_throughput_needs_the_rate_and_no_errors() -> None:
    assert verdict(Measured("throughput", sample(*[40.0] * 800, elapsed_s=2.0), concurrency=16), []) == "met"
    assert verdict(Measured("throughput", sample(*[40.0] * 100, elapsed_s=1.0)), []) == "NOT met"
    assert verdict(Measured("throughput", sample(*[1.0] * 800, errors=1, elapsed_s=1.0)), []).startswith(
        "NOT"
    )


def test_main_rows_show_ratio_cpu_target_and_rates_only_for_throughput() -> None:
    shell = Measured("shell", sample(30.0, 30.0, 40.0, cpu_s=0.06), sample(0.6, 0.6, 1.0))
    throughput = Measured(
        "throughput", sample(*[160.0] * 200, elapsed_s=2.0), sample(*[10.0] * 200, elapsed_s=0.5), 16
    )
    by_call = {row[0]: row for row in main_rows([shell, throughput], [])}
    row = by_call["shell `true`"]
    assert row[4:10] == ["30.00", "38.00", "manager.shell", "0.600", "0.920", "50.0x"]
    assert row[10:13] == ["", "", "20.00"]  # 0.06 s over 3 calls
    assert row[13:] == ["31.6 ms", "p50 <= 3 ms", "NOT met"]
    tput = by_call["shell `true` throughput"]
    assert (tput[1], tput[2], tput[10], tput[11], tput[15]) == ("16", "200", "100", "400", "NOT met")


def test_peer_rows_compare_our_api_and_manager_with_each_peer() -> None:
    python = Measured("python", sample(44.0), sample(4.4))
    rows = peer_rows(
        [python], [autogen(110.0), PeerRow("llm-sandbox 0.3.46", "SandboxSession", None, "did not run")]
    )
    assert rows[0][:7] == [
        "autogen-ext 0.7.5",
        "python block `print(1+1)` round trip",
        "10",
        "110",
        "220",
        "0.40x",
        "0.04x",
    ]
    assert rows[1][0] == "llm-sandbox 0.3.46" and rows[1][2:7] == [""] * 5 and rows[1][7] == "did not run"


def test_render_prints_both_tables_error_examples_and_notes() -> None:
    failing = sample(5.0, errors=1)
    failing.error_examples.append("WrongResult: shell `true` answered 1")
    text = render([Measured("shell", failing, sample(0.6))], [autogen(100.0)], ["peers skipped"])
    assert "Through the API vs on the sandbox manager directly" in text and "Peers (" in text
    assert "- shell `true` (API) errors: ['WrongResult: shell `true` answered 1']" in text
    assert text.endswith("- peers skipped")


def test_timed_creates_counts_failures_and_removes_what_it_made() -> None:
    made: list[str] = []
    removed: list[str] = []
    waits = 0

    async def wait_ready() -> None:
        nonlocal waits
        waits += 1

    async def create() -> str:
        if len(made) == 1 and "failed" not in made:
            made.append("failed")
            raise RuntimeError("HTTP 503: no sandbox")
        made.append(f"s{len(made)}")
        return made[-1]

    async def remove(session_id: str) -> None:
        removed.append(session_id)

    s = asyncio.run(api_bench.timed_creates(3, wait_ready, create, remove, CpuMeter(None)))
    assert (s.n, s.errors, waits) == (2, 1, 3)
    assert removed == ["s0", "s2"] and s.error_examples == ["RuntimeError: HTTP 503: no sandbox"]
    assert s.server_cpu_s is None


def test_a_wrong_answer_counts_as_an_error() -> None:
    async def wrong() -> int:
        api_bench._expect(False, "shell `true`", {"exit_code": 1})
        return 200

    args = api_bench._parse_args(["--quick"])
    s = asyncio.run(api_bench.measure(wrong, 5, 2, args, CpuMeter(None)))
    assert (s.n, s.errors) == (5, 5)
    assert s.error_examples[0].startswith("WrongResult: shell `true` answered")


def test_quick_and_default_settings() -> None:
    quick, full = api_bench._parse_args(["--quick"]), api_bench._parse_args([])
    assert (quick.requests, quick.creates, quick.throughput_requests, quick.concurrency) == (20, 3, 80, 16)
    assert (full.requests, full.creates, full.throughput_requests, full.peer_calls) == (200, 20, 800, 100)
    with pytest.raises(SystemExit):
        api_bench._parse_args(["--concurrency", "0"])


def test_missing_peers_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_bench.importlib.util, "find_spec", lambda name: None)
    assert api_bench.missing_peers() == ["autogen-ext", "llm-sandbox"]
