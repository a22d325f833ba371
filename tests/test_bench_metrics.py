"""The limits benchmark's metrics (include/bench/limits_bench.py) from a synthetic request log:
the steady-state window, achieved rate and utilisation, Twilio's calls in flight, the 429 share
and the bottleneck. Nothing here is timed; the benchmark itself runs with ``make bench``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest

from devstack import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "include" / "bench"))
import limits_bench  # a script's module, next to the benchmark scripts

T0 = 1_800_000_000.0


def entry(api: str, t: float, status: int = 200) -> dict:
    at = datetime.fromtimestamp(T0 + t, tz=UTC).isoformat(timespec="milliseconds")
    logged = {"api": api, "method": "GET", "route": "/x", "status": status, "at": at}
    if status == 429:
        logged["limited"] = "rate"
    return logged


def calls(api: str, rate: float, start: float, end: float, status: int = 200) -> list[dict]:
    n = round((end - start) * rate)
    return [entry(api, start + i / rate, status) for i in range(n)]


def test_the_steady_state_is_the_middle_80_percent_of_the_span():
    assert limits_bench.steady_window([5.0, 0.0, 10.0]) == pytest.approx((1.0, 9.0))
    assert limits_bench.steady_window([3.0, 3.0]) is None
    assert limits_bench.steady_window([1.0]) is None
    assert limits_bench.steady_window([0.0, 100.0], middle=0.5) == pytest.approx((25.0, 75.0))


def test_a_slow_start_and_tail_do_not_count_against_the_rate():
    # 2 s warm-up at 5/s, 20 s at 24/s, a 2 s tail at 5/s: the window sees the 24/s.
    log = calls("stripe", 5, 0, 2) + calls("stripe", 24, 2, 22) + calls("stripe", 5, 22, 24)
    times = [limits_bench.timestamp(e) for e in log]
    window = limits_bench.steady_window(times)
    assert limits_bench.achieved_rate(times, window) == pytest.approx(24, rel=0.03)


def test_utilisation_429s_and_the_bottleneck_from_a_log():
    log = (
        calls("stripe", 24, 0, 60)  # 96 % of 25/s
        + calls("stripe", 0.5, 0, 60, status=429)  # 30 refused: not admitted, still calls
        + calls("segment", 10, 0, 60)  # 10 % of 100/s
        + calls("twilio", 20, 0, 60)
    )
    samples = [(T0 + t / 4, {"twilio": 4 if t % 2 else 2}) for t in range(240)]  # mean 3 in flight
    limits = {
        "stripe": {"rate": 25, "burst": 25, "concurrency": None},
        "twilio": {"rate": None, "burst": None, "concurrency": 10},
        "segment": {"rate": 100, "burst": 100, "concurrency": None},
    }
    counts = {api: {"peak_concurrency": 7} for api in ("stripe", "twilio", "segment")}
    providers = limits_bench.provider_metrics(log, samples, limits, counts)
    assert providers["stripe"]["utilisation"] == pytest.approx(0.96, abs=0.01)
    assert providers["stripe"]["calls"] == 1440 + 30 and providers["stripe"]["429s"] == 30
    assert providers["segment"]["utilisation"] == pytest.approx(0.10, abs=0.005)
    assert providers["twilio"]["mean_in_flight"] == pytest.approx(3.0)
    assert providers["twilio"]["utilisation"] == pytest.approx(0.30)
    assert providers["twilio"]["peak_in_flight"] == 7
    assert limits_bench.bottleneck(providers) == ("stripe", providers["stripe"]["utilisation"])
    assert limits_bench.rate_429_fraction(log) == pytest.approx(30 / len(log))
    assert limits_bench.rate_429_fraction([]) == 0.0


def test_a_provider_without_calls_or_limits_has_no_utilisation():
    providers = limits_bench.provider_metrics(
        [entry("stripe", 0), entry("stripe", 1)], [], {"stripe": {"rate": None, "concurrency": None}}, {}
    )
    assert providers["stripe"]["utilisation"] is None and providers["twilio"]["calls"] == 0
    assert limits_bench.bottleneck(providers) == (None, None)


def test_runs_are_parsed_with_the_flat_cost_sizes_last():
    specs = limits_bench.parse_runs("local:25,celery:100", [1000, 200])
    assert [(s.executor, s.stripe_rate, s.requests, s.stripe_mode) for s in specs] == [
        ("local", 25, 1000, "test"),
        ("celery", 100, 1000, "live"),
        ("local", 25, 200, "test"),
    ]
    with pytest.raises(ValueError, match="executor:stripe_rate"):
        limits_bench.parse_runs("kubernetes:25", [10])
