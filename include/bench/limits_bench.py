"""At the providers' limits (issue 16, item 4): the erasure DAG against a sandbox that enforces
Stripe's, Twilio's and Segment's limits, on the LocalExecutor stack and on the Celery stack with
two workers.

    .venv/bin/python include/bench/limits_bench.py [--limit-sizes 1000,200] [--limit-runs local:25,...]

(also ``make bench``, whose default parts include ``limits``: include/bench/throughput.py).

Each run drains ``requests`` fresh sandbox people in one DAG run with every call answered after
``--latency-ms``, the sandbox refusing calls over its limits with the provider's own 429 (Stripe
25/s in test mode or 100/s live, a Twilio concurrency limit, Segment's Profile API 100/s) and the
hooks' limiter given the same limits in the connections' extras (a ``--limit-fraction`` of them),
shared through Redis by every task process and worker (``GDPR_ERASURE_LIMITER_URL``).

While a run goes, the sandbox's request log is read as it grows (``?after=seq``; the log itself
keeps 10,000 calls) and its calls in flight are sampled. From those come, per run: calls per
request by provider, the fraction of calls answered 429, each limited provider's achieved rate (or
calls in flight) in the run's steady state (the middle 80 % of the time span of that provider's
calls) over its configured limit, and the bottleneck: the provider driven closest to its limit.
Results go to ``docs/benchmarks.json`` (the settings and one object per run), a table in
docs/benchmarks.md between ``<!-- limits:start -->`` and ``<!-- limits:end -->``, and a plot of
calls per second against the limits, docs/benchmarks-limits.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

APIS = ("stripe", "twilio", "segment")
STEADY_MIDDLE = 0.8  # the steady state: the middle 80 % of the time span of a provider's calls
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
# The targets (measured here, never by timed tests).
TARGET_UTILISATION = 0.90
TARGET_429_FRACTION = 0.005
TARGET_CPU_PER_REQUEST = 0.15

REPO = Path(__file__).resolve().parents[2]
ROOT = Path.cwd() / ".bench" / "limits"
JSON_OUT = REPO / "docs" / "benchmarks.json"
PLOT_OUT = REPO / "docs" / "benchmarks-limits.png"
SECTION = ("<!-- limits:start -->", "<!-- limits:end -->")


# --- metrics (pure: tests/test_bench_metrics.py) ----------------------------------------------------


def timestamp(entry: dict[str, Any]) -> float:
    """Seconds since the epoch of a request-log entry's ``at`` (when the sandbox answered)."""
    return datetime.fromisoformat(entry["at"]).timestamp()


def is_429(entry: dict[str, Any]) -> bool:
    return entry["status"] == 429


def steady_window(times: Sequence[float], middle: float = STEADY_MIDDLE) -> tuple[float, float] | None:
    """The middle ``middle`` of the span from the first to the last of ``times``; None for fewer
    than two distinct times (no span to speak of).

    :param times: the times of one provider's calls, in any order.
    :param middle: the share of the span kept, centred (0.8 drops the first and last 10 %).
    """
    if len(times) < 2:
        return None
    first, last = min(times), max(times)
    if last <= first:
        return None
    trim = (last - first) * (1 - middle) / 2
    return first + trim, last - trim


def achieved_rate(times: Iterable[float], window: tuple[float, float]) -> float:
    """Calls per second within ``window`` (both ends included)."""
    lo, hi = window
    return sum(1 for t in times if lo <= t <= hi) / (hi - lo)


def mean_in_flight(samples: Iterable[tuple[float, int]], window: tuple[float, float]) -> float | None:
    """The average of the in-flight samples ``(time, calls in flight)`` taken within ``window``."""
    lo, hi = window
    inside = [n for t, n in samples if lo <= t <= hi]
    return statistics.fmean(inside) if inside else None


def rate_429_fraction(entries: Sequence[dict[str, Any]]) -> float:
    """429 answers over all calls logged (every provider), 0 for no calls."""
    return sum(1 for e in entries if is_429(e)) / len(entries) if entries else 0.0


def count_calls_per_request(entries: Iterable[dict[str, Any]], requests: int) -> dict[str, float]:
    """Calls per request by provider (429s included: they are calls made) and in total. Uses
    include/bench/calls.py's ``calls_per_request`` when it is there (one definition for every
    benchmark), else counts the log's entries per API."""
    entries = list(entries)
    try:
        from calls import calls_per_request  # include/bench/calls.py, next to this script
    except ImportError:
        counts = Counter(e["api"] for e in entries)
        per = {api: counts.get(api, 0) / requests for api in APIS}
        per["total"] = len(entries) / requests
        return per
    return dict(calls_per_request(entries, requests))


def provider_metrics(
    entries: Sequence[dict[str, Any]],
    samples: Sequence[tuple[float, dict[str, int]]],
    limits: dict[str, dict[str, Any]],
    counts: dict[str, dict[str, int]],
) -> dict[str, dict[str, Any]]:
    """Per provider: calls, 429s, the steady-state window, the achieved rate and calls in flight,
    and utilisation of each configured limit (the larger one where both are set).

    :param entries: the run's request-log entries.
    :param samples: ``(time, {api: calls in flight})`` taken during the run.
    :param limits: the sandbox's limits of the run (``{api: {"rate", "burst", "concurrency"}}``).
    :param counts: the sandbox's limit counts after the run (``peak_concurrency`` is used).
    """
    by_api: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_api[entry["api"]].append(entry)
    out = {}
    for api in APIS:
        calls = by_api.get(api, [])
        admitted = [timestamp(e) for e in calls if not is_429(e)]
        window = steady_window([timestamp(e) for e in calls])
        limit = limits.get(api) or {}
        metrics: dict[str, Any] = {
            "calls": len(calls),
            "429s": sum(1 for e in calls if is_429(e)),
            "steady_window_s": None if window is None else round(window[1] - window[0], 1),
            "rate_limit": limit.get("rate"),
            "concurrency_limit": limit.get("concurrency"),
            "achieved_rate": None,
            "mean_in_flight": None,
            "peak_in_flight": (counts.get(api) or {}).get("peak_concurrency"),
            "utilisation": None,
        }
        utilisations = []
        if window is not None:
            metrics["achieved_rate"] = round(achieved_rate(admitted, window), 2)
            in_flight = mean_in_flight([(t, n.get(api, 0)) for t, n in samples], window)
            metrics["mean_in_flight"] = None if in_flight is None else round(in_flight, 2)
            if limit.get("rate"):
                utilisations.append(metrics["achieved_rate"] / limit["rate"])
            if limit.get("concurrency") and in_flight is not None:
                utilisations.append(in_flight / limit["concurrency"])
        if utilisations:
            metrics["utilisation"] = round(max(utilisations), 3)
        out[api] = metrics
    return out


def bottleneck(providers: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
    """The provider driven closest to its configured limit, and that utilisation."""
    used = [(m["utilisation"], api) for api, m in providers.items() if m["utilisation"] is not None]
    if not used:
        return None, None
    utilisation, api = max(used)
    return api, utilisation


def per_second(times: Iterable[float], start: float) -> list[int]:
    """Calls in each whole second from ``start`` (for the plot)."""
    bins: Counter[int] = Counter(int(t - start) for t in times if t >= start)
    return [bins.get(i, 0) for i in range(max(bins) + 1)] if bins else []


# --- the runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One configuration: the executor (``local`` or ``celery``), Stripe's limit, the run's size."""

    executor: str
    stripe_rate: int
    requests: int

    @property
    def stripe_mode(self) -> str:
        return "test" if self.stripe_rate <= 25 else "live"


def parse_runs(configurations: str, sizes: Sequence[int]) -> list[RunSpec]:
    """``local:25,celery:25`` at the first size, then the first configuration at each further size.

    :param configurations: ``executor:stripe_rate`` pairs, comma-separated.
    :param sizes: requests per run; the first for every configuration, the others for the first.
    """
    specs = []
    for item in configurations.split(","):
        executor, _, rate = item.strip().partition(":")
        if executor not in EXECUTORS or not rate.isdigit():
            raise ValueError(f"--limit-runs {item!r}: expected executor:stripe_rate, e.g. local:25")
        specs.append(RunSpec(executor, int(rate), sizes[0]))
    # The other sizes of the first configuration: on its stack if one runs last, else at the end.
    extra = [RunSpec(specs[0].executor, specs[0].stripe_rate, n) for n in sizes[1:]]
    return specs + extra


@dataclass
class RunResult:
    executor: str
    workers: int
    requests: int
    stripe_mode: str
    limits: dict[str, Any]
    limiter: dict[str, Any]
    wall_s: float
    airflow_cpu_s: float
    airflow_cpu_s_per_request: float
    sandbox_cpu_s: float
    calls_per_request: dict[str, float]
    rate_429_fraction: float
    bottleneck_provider: str | None
    bottleneck_utilisation: float | None
    providers: dict[str, dict[str, Any]]
    completed: int
    dag_run_state: str
    log_entries_missed: int
    started_at: str
    # The machine's 1-minute load average during the run (the 2 cores are shared): None if unrecorded.
    load_avg: float | None = None
    series: dict[str, Any] = field(default_factory=dict)  # for the plot; not in the JSON


class LogReader:
    """Reads the sandbox's request log while a run goes (``?after=seq``, so nothing is read twice
    and nothing falls out of the log's 10,000 entries) and samples the calls in flight.

    :param sandbox: the stack's :class:`sandbox.client.SandboxClient`.
    :param sample_every: seconds between two in-flight samples.
    :param read_every: seconds between two reads of the log.
    """

    def __init__(self, sandbox, sample_every: float = 0.25, read_every: float = 2.0) -> None:
        self.sandbox = sandbox
        self.sample_every = sample_every
        self.read_every = read_every
        self.entries: list[dict[str, Any]] = []
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.loads: list[float] = []
        self.missed = 0
        self._last_seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> LogReader:
        self._thread.start()
        return self

    def read(self) -> None:
        new = self.sandbox.requests_log(after=self._last_seq)
        if new:
            if self._last_seq and new[0]["seq"] != self._last_seq + 1:
                self.missed += new[0]["seq"] - self._last_seq - 1
            self._last_seq = new[-1]["seq"]
            self.entries += new
            # seq is numbered across resets: the first read starts at whatever the log holds.

    def _loop(self) -> None:
        import requests

        next_read = time.monotonic() + self.read_every
        while not self._stop.wait(self.sample_every):
            try:
                self.samples.append((time.time(), self.sandbox.limits()["in_flight"]))
                self.loads.append(os.getloadavg()[0])
                if time.monotonic() >= next_read:
                    self.read()
                    next_read = time.monotonic() + self.read_every
            except requests.RequestException:
                continue  # a slow answer under load: the next turn reads on from the same seq

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.read()


def sandbox_limits(spec: RunSpec, twilio_concurrency: int, segment_rate: int) -> dict[str, dict[str, Any]]:
    """What the sandbox enforces in a run (burst = rate: a second's worth at once)."""
    return {
        "stripe": {"rate": spec.stripe_rate, "burst": spec.stripe_rate},
        "twilio": {"concurrency": twilio_concurrency},
        "segment": {"rate": segment_rate, "burst": segment_rate},
    }


def configure_connections(stack, limits: dict[str, dict[str, Any]], fraction: float) -> dict[str, Any]:
    """Give the stack's provider connections the run's limits (``PATCH /connections``): tasks read
    their connection when they start, so no process restarts. The extras are rebuilt with
    sandbox_connections (what ``deploy init`` wrote, there without limits), since the API answers
    secrets masked.

    :return: the limiter's extras per connection (the provider's limit and ``fraction``).
    """
    from sandbox.connections import sandbox_connections

    connections = sandbox_connections(stack.sandbox_url, stack.sandbox.accounts(), limits, fraction)
    budgets = {}
    for conn_id, conn in connections.items():
        body = {"connection_id": conn_id, "conn_type": conn["conn_type"], "extra": json.dumps(conn["extra"])}
        stack.api("PATCH", f"/connections/{conn_id}", params={"update_mask": "extra"}, json=body, expect=200)
        budgets[conn_id] = {
            k: conn["extra"][k] for k in ("rate_per_second", "concurrency", "fraction") if k in conn["extra"]
        }
        stored = json.loads(stack.api("GET", f"/connections/{conn_id}", expect=200).json()["extra"])
        if {k: stored.get(k) for k in budgets[conn_id]} != budgets[conn_id]:
            raise RuntimeError(f"{conn_id}: the limits did not reach the connection ({stored})")
    return budgets


def clear_limiter_state(redis_url: str) -> None:
    """Forget the limiter's shared state (adaptive rates, windows, leases) between runs: a rate
    halved in one run would otherwise start the next one low for an hour."""
    import redis

    from gdpr_erasure.hooks.limiter import KEY_PREFIX

    client = redis.Redis.from_url(redis_url)
    # Ours (rates, leases) and the limits library's moving windows (its keys start with LIMITER);
    # the bench's own Redis database (--limiter-url), so nobody else's keys.
    keys = list(client.scan_iter(match=f"{KEY_PREFIX}*")) + list(client.scan_iter(match="LIMITER*"))
    if keys:
        client.delete(*keys)
    client.close()


def run_at_limits(
    stack, meter, sandbox_process, spec: RunSpec, args: argparse.Namespace, workers: int
) -> RunResult:
    """Drain ``spec.requests`` fresh people in one DAG run at the run's limits."""
    from throughput import _measure, _run_seconds, _seed

    people = _seed(stack, spec.requests, args.latency_ms)  # resets the sandbox, limits included
    limits = sandbox_limits(spec, args.twilio_concurrency, args.segment_rate)
    clear_limiter_state(args.limiter_url)
    extras = configure_connections(stack, limits, args.limit_fraction)
    stack.sandbox.set_limits(limits)  # and zero their counts
    ids = stack.submit(
        [p["key"] for p in people], prefix=f"limits-{spec.executor}-{spec.stripe_rate}-{spec.requests}"
    )
    conf = {"max_requests": spec.requests, "batch_size": args.batch_size, "per_request_up_to": 0}
    started_at = datetime.now().astimezone().isoformat(timespec="seconds")
    reader = LogReader(stack.sandbox).start()
    try:
        run, cpu, sandbox_cpu, _ = _measure(stack, meter, sandbox_process, "gdpr_erasure", conf)
    finally:
        reader.stop()
    state = stack.sandbox.limits()
    store = stack.store()
    try:
        statuses = Counter(store.get(rid).status.value for rid in ids)
    finally:
        store.dispose()
    entries = reader.entries
    providers = provider_metrics(entries, reader.samples, state["limits"], state["counts"])
    for api, metrics in providers.items():
        metrics["refused"] = {k: state["counts"][api][k] for k in ("refused_rate", "refused_concurrency")}
    name, utilisation = bottleneck(providers)
    airflow_cpu = sum(cpu.values())
    start = min((timestamp(e) for e in entries), default=time.time())
    series = {
        "start": start,
        "per_second": {
            api: per_second([timestamp(e) for e in entries if e["api"] == api and not is_429(e)], start)
            for api in APIS
        },
        "in_flight": [(t - start, n.get("twilio", 0)) for t, n in reader.samples],
    }
    return RunResult(
        executor=EXECUTORS[spec.executor],
        workers=workers,
        requests=spec.requests,
        stripe_mode=spec.stripe_mode,
        limits=limits,
        limiter={"fraction": args.limit_fraction, "storage": args.limiter_url, "extras": extras},
        wall_s=round(_run_seconds(run), 1),
        airflow_cpu_s=round(airflow_cpu, 1),
        airflow_cpu_s_per_request=round(airflow_cpu / spec.requests, 3),
        sandbox_cpu_s=round(sandbox_cpu, 1),
        calls_per_request={
            k: round(v, 2) for k, v in count_calls_per_request(entries, spec.requests).items()
        },
        rate_429_fraction=round(rate_429_fraction(entries), 5),
        bottleneck_provider=name,
        bottleneck_utilisation=utilisation,
        providers=providers,
        completed=statuses.get("completed", 0),
        dag_run_state=run["state"],
        log_entries_missed=reader.missed,
        started_at=started_at,
        load_avg=round(statistics.fmean(reader.loads), 1) if reader.loads else None,
        series=series,
    )


# --- reporting ----------------------------------------------------------------------------------


def _label(r: RunResult) -> str:
    executor = "LocalExecutor" if r.executor == "LocalExecutor" else f"Celery, {r.workers} workers"
    return f"{executor}, Stripe {r.limits['stripe']['rate']}/s ({r.stripe_mode})"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def table(results: Sequence[RunResult]) -> str:
    rows = [
        "| run | requests | wall (s) | requests/s | Airflow CPU s/request | calls/request: Stripe /"
        " Twilio / Segment / all | 429s / calls | bottleneck | its utilisation | Stripe rate / limit"
        " | Twilio in flight mean / peak / limit | Segment rate / limit | machine load |",
        "|---|---:|---:|---:|---:|---|---:|---|---:|---|---|---|---:|",
    ]
    for r in results:
        c, p = r.calls_per_request, r.providers
        stripe, twilio, segment = p["stripe"], p["twilio"], p["segment"]
        rows.append(
            f"| {_label(r)} | {r.requests} | {r.wall_s:.0f} | {r.requests / r.wall_s:.2f}"
            f" | {r.airflow_cpu_s_per_request:.3f}"
            f" | {c.get('stripe', 0):.1f} / {c.get('twilio', 0):.1f} / {c.get('segment', 0):.1f}"
            f" / {c.get('total', 0):.1f} | {r.rate_429_fraction * 100:.2f} %"
            f" | {r.bottleneck_provider or '-'} | {_pct(r.bottleneck_utilisation)}"
            f" | {stripe['achieved_rate'] or 0:.1f} / {stripe['rate_limit']:.0f}"
            f" | {twilio['mean_in_flight'] or 0:.1f} / {twilio['peak_in_flight'] or 0}"
            f" / {twilio['concurrency_limit']}"
            f" | {segment['achieved_rate'] or 0:.1f} / {segment['rate_limit']:.0f}"
            f" | {'-' if r.load_avg is None else f'{r.load_avg:.1f}'} |"
        )
    return "\n".join(rows) + "\n"


def targets(results: Sequence[RunResult]) -> list[str]:
    """One line per target of the issue: reached or not, with the measurements."""
    if not results:
        return []
    lines = []
    util = [(r.bottleneck_utilisation or 0, r) for r in results]
    low = [f"{_label(r)} at {r.requests}: {_pct(u)}" for u, r in util if u < TARGET_UTILISATION]
    lines.append(
        f"* bottleneck provider at >= {TARGET_UTILISATION:.0%} of its limit in the steady state: "
        + ("reached in every run" if not low else "not reached in " + "; ".join(low))
    )
    high = [
        f"{_label(r)} at {r.requests}: {r.rate_429_fraction:.2%}"
        for r in results
        if r.rate_429_fraction > TARGET_429_FRACTION
    ]
    lines.append(
        f"* 429s <= {TARGET_429_FRACTION:.1%} of calls: "
        + (
            "reached in every run (max " + f"{max(r.rate_429_fraction for r in results):.2%})"
            if not high
            else "not reached in " + "; ".join(high)
        )
    )
    cpu = [
        f"{_label(r)} at {r.requests}: {r.airflow_cpu_s_per_request:.3f} s"
        for r in results
        if r.airflow_cpu_s_per_request > TARGET_CPU_PER_REQUEST
    ]
    lines.append(
        f"* Airflow CPU <= {TARGET_CPU_PER_REQUEST} s per request: "
        + (
            "reached in every run (max " + f"{max(r.airflow_cpu_s_per_request for r in results):.3f} s)"
            if not cpu
            else "not reached in " + "; ".join(cpu)
        )
    )
    by_config: dict[tuple, list[RunResult]] = defaultdict(list)
    for r in results:
        by_config[(r.executor, r.workers, r.limits["stripe"]["rate"])].append(r)
    for runs in by_config.values():
        if len({r.requests for r in runs}) < 2:
            continue
        runs = sorted(runs, key=lambda r: r.requests)
        small, big = runs[0], runs[-1]
        lines.append(
            f"* cost per request from {small.requests} to {big.requests} ({_label(big)}): Airflow CPU"
            f" {small.airflow_cpu_s_per_request:.3f} -> {big.airflow_cpu_s_per_request:.3f} s"
            f" ({big.airflow_cpu_s_per_request / small.airflow_cpu_s_per_request - 1:+.0%}), wall"
            f" {small.wall_s / small.requests:.3f} -> {big.wall_s / big.requests:.3f} s"
            f" ({(big.wall_s / big.requests) / (small.wall_s / small.requests) - 1:+.0%}), calls"
            f" {small.calls_per_request.get('total', 0):.1f} -> {big.calls_per_request.get('total', 0):.1f}"
        )
    return lines


def settings_line(args: argparse.Namespace) -> str:
    return (
        f"Settings: sandbox latency {args.latency_ms} ms per call; sandbox limits Stripe as in each row"
        f" (burst = rate), Twilio concurrency {args.twilio_concurrency}, Segment {args.segment_rate}/s;"
        f" the hooks' limiter at {args.limit_fraction} of each limit (connection extras), shared"
        f" through Redis; batch_size {args.batch_size}, parallelism {args.parallelism},"
        f" {args.concurrency} requests at a time per task, Celery {args.celery_workers} workers;"
        f" {os.cpu_count()} cores shared. Steady state: the middle {STEADY_MIDDLE:.0%} of the time"
        " span of each provider's calls; Twilio's utilisation is its mean calls in flight (sampled"
        " every 0.25 s) over its concurrency limit. Machine load: the mean 1-minute load average"
        " during the run (other sessions share the cores; - where not recorded). JSON:"
        " docs/benchmarks.json.\n" + _ceiling_line(args) + _code_line(getattr(args, "checkout", None))
    )


def _ceiling_line(args: argparse.Namespace) -> str:
    """What the limiter lets through at most: its moving window counts whole calls per second
    and its concurrency whole slots (both floored), so a limit's utilisation tops out below 100 %."""
    rates = sorted({int(item.partition(":")[2]) for item in args.limit_runs.split(",")})
    parts = [
        f"Stripe {r}/s: {math.floor(r * args.limit_fraction)} calls/s,"
        f" {math.floor(r * args.limit_fraction) / r:.0%}"
        for r in rates
    ]
    slots = max(1, math.floor(args.twilio_concurrency * args.limit_fraction))
    parts.append(f"Twilio: {slots} calls in flight, {slots / args.twilio_concurrency:.0%}")
    parts.append(
        f"Segment: {math.floor(args.segment_rate * args.limit_fraction)} calls/s,"
        f" {math.floor(args.segment_rate * args.limit_fraction) / args.segment_rate:.0%}"
    )
    return "The most the limiter lets through, i.e. the utilisation's ceiling: " + "; ".join(parts) + ".\n"


def _code_line(code: dict[str, Any] | None) -> str:
    if not code:
        return ""
    changed = code["uncommitted_changes"]
    extra = f" with uncommitted changes to {len(changed)} files (listed in the JSON)" if changed else ""
    return f"Code measured: commit {code['commit']}{extra}.\n"


def checkout() -> dict[str, Any]:
    """The code measured: the commit and the files changed on top of it (the working tree runs)."""
    import subprocess

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False).stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    changed = [path for path in changed if not path.startswith("docs/")]  # this benchmark's own output
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted_changes": changed}


def settings_dict(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "code": getattr(args, "checkout", None) or checkout(),
        "latency_ms": args.latency_ms,
        "twilio_concurrency": args.twilio_concurrency,
        "segment_rate": args.segment_rate,
        "limit_fraction": args.limit_fraction,
        "limiter_url": args.limiter_url,
        "batch_size": args.batch_size,
        "parallelism": args.parallelism,
        "concurrency_per_task": args.concurrency,
        "celery_workers": args.celery_workers,
        "cores": os.cpu_count(),
        "steady_state": f"middle {STEADY_MIDDLE:.0%} of each provider's calls' time span",
        "targets": {
            "bottleneck_utilisation_min": TARGET_UTILISATION,
            "rate_429_fraction_max": TARGET_429_FRACTION,
            "airflow_cpu_s_per_request_max": TARGET_CPU_PER_REQUEST,
        },
    }


def write_outputs(results: Sequence[RunResult], args: argparse.Namespace, total_s: float) -> str:
    """The JSON, the doc section and the plot (after every run, so a long set leaves what it has)."""
    from throughput import DOC

    runs = [{k: v for k, v in asdict(r).items() if k != "series"} for r in results]
    ROOT.mkdir(parents=True, exist_ok=True)
    saved = {
        "total_s": total_s,
        "checkout": getattr(args, "checkout", None),
        "runs": [asdict(r) for r in results],
    }
    (ROOT / "results.json").write_text(json.dumps(saved))
    text = (
        "Each row: one DAG run draining that many fresh requests against a sandbox that enforces the"
        " limits, every call answered after the latency.\n\n"
        + table(results)
        + "\nTargets (issue 16):\n\n"
        + "\n".join(targets(results))
        + "\n\n"
        + settings_line(args)
        + f"Whole set: {total_s / 60:.0f} min.\n\n"
        + "![calls per second against the limits](benchmarks-limits.png)\n"
    )
    if not args.no_doc:
        JSON_OUT.write_text(json.dumps({"settings": settings_dict(args), "runs": runs}, indent=2) + "\n")
        write_section(DOC, text)
        plot(results, PLOT_OUT)
    return text


def write_section(doc: Path, text: str) -> None:
    """Replace the text between the ``limits`` markers (added at the end the first time)."""
    start, end = SECTION
    body = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start not in body:
        body += f"\n## At the providers' limits\n\n{start}\n{end}\n"
    before, _, rest = body.partition(start)
    _, _, after = rest.partition(end)
    doc.write_text(f"{before}{start}\n{text}{end}{after}")


def plot(results: Sequence[RunResult], path: Path) -> None:
    """Per run: admitted calls per second by provider against the rate limits, and Twilio's calls
    in flight against its concurrency limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        return
    fig, axes = plt.subplots(len(results), 2, figsize=(12, 2.6 * len(results)), squeeze=False)
    colours = {"stripe": "tab:purple", "twilio": "tab:red", "segment": "tab:green"}
    for (rates, flight), r in zip(axes, results, strict=True):
        for api in ("stripe", "segment"):
            series = r.series.get("per_second", {}).get(api, [])
            # Stripe runs at its limit for minutes: its line on top, the limits thin and behind.
            rates.plot(
                range(len(series)),
                series,
                lw=1.2 if api == "stripe" else 0.7,
                color=colours[api],
                label=f"{api} calls/s",
                zorder=3 if api == "stripe" else 2,
            )
            limit = r.limits[api].get("rate")
            if limit:
                rates.axhline(
                    limit, ls=":", lw=1, color="black", alpha=0.6, label=f"{api} limit {limit}/s", zorder=1
                )
        rates.set(title=f"{_label(r)}, {r.requests} requests", xlabel="s", ylabel="calls/s")
        samples = r.series.get("in_flight", [])
        if samples:
            flight.plot(
                [t for t, _ in samples],
                [n for _, n in samples],
                lw=0.6,
                color=colours["twilio"],
                label="twilio in flight",
            )
        flight.axhline(
            r.limits["twilio"]["concurrency"],
            ls="--",
            lw=1,
            color=colours["twilio"],
            label="concurrency limit",
        )
        flight.set(title="Twilio calls in flight", xlabel="s", ylabel="calls")
        # One time axis per run: from the first call to the last of any provider.
        end = max([len(v) for v in r.series.get("per_second", {}).values()] + [t for t, _ in samples] + [1])
        for ax in (rates, flight):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper right")
            ax.set_ylim(bottom=0)
            ax.set_xlim(0, end)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The limits runs' options (shared with include/bench/throughput.py)."""
    parser.add_argument(
        "--limit-sizes",
        default="1000,200",
        help="requests per run: the first for every configuration,"
        " the others (the flat-cost check) for the first configuration",
    )
    parser.add_argument(
        "--limit-runs",
        default="local:25,celery:25,celery:100,local:100",
        help="configurations, executor:stripe_rate (local or celery; 25 is test mode, 100 live)",
    )
    parser.add_argument(
        "--limit-fraction", type=float, default=0.95, help="share of each limit the limiter uses"
    )
    parser.add_argument(
        "--twilio-concurrency", type=int, default=10, help="sandbox's Twilio concurrency limit"
    )
    parser.add_argument("--segment-rate", type=int, default=100, help="sandbox's Segment rate limit (per s)")
    parser.add_argument("--celery-workers", type=int, default=2, help="Celery workers in the Celery runs")
    parser.add_argument(
        "--limiter-url", default="redis://127.0.0.1:6379/11", help="the limiter's shared storage (Redis DB)"
    )


def run_all(args: argparse.Namespace) -> list[RunResult]:
    """Every configuration of ``--limit-runs``/``--limit-sizes``; consecutive runs on one executor
    share a stack. Writes the outputs after each run."""
    import psutil
    from throughput import Meter

    from devstack import REPO_ROOT
    from devstack.composestack import compose_stack

    sizes = [int(s) for s in args.limit_sizes.split(",")]
    specs = parse_runs(args.limit_runs, sizes)
    args.checkout = checkout()  # at the start: what the runs measure
    groups: list[list[RunSpec]] = []
    for spec in specs:
        if groups and groups[-1][0].executor == spec.executor:
            groups[-1].append(spec)
        else:
            groups.append([spec])
    settings = {
        "AIRFLOW__CORE__PARALLELISM": str(args.parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(args.parallelism),
        "GDPR_ERASURE_CONCURRENCY": str(args.concurrency),
        "GDPR_ERASURE_POLL_SECONDS": "1",
        "GDPR_ERASURE_LIMITER_URL": args.limiter_url,
    }
    print(f"limits runs: {[asdict(s) for s in specs]}; settings {settings}", flush=True)
    started = time.monotonic()
    results: list[RunResult] = []
    for group in groups:
        executor = EXECUTORS[group[0].executor]
        workers = args.celery_workers if executor == "CeleryExecutor" else 1
        stack_root = ROOT / "stack"
        if stack_root.exists():
            import shutil

            shutil.rmtree(stack_root)
        stack_root.mkdir(parents=True)
        with compose_stack(
            stack_root,
            executor=executor,
            workers=workers,
            dags_folder=REPO_ROOT / "dags",
            regulation_seconds=2.0,
            sandbox_args=["--people", str(max(sizes))],
            extra_env=settings,
        ) as stack:
            print(
                f"{executor} stack up ({workers} worker(s)) at {time.monotonic() - started:.0f} s", flush=True
            )
            sandbox = next(p for p in psutil.Process().children() if "sandbox" in " ".join(p.cmdline()))
            meter = Meter({name: proc.pid for name, proc in stack.processes.items()})
            try:
                for spec in group:
                    try:
                        result = run_at_limits(stack, meter, sandbox, spec, args, workers)
                    except Exception as exc:  # one failed run must not lose the others
                        print(f"run {spec} failed: {type(exc).__name__}: {str(exc)[:2000]}", flush=True)
                        continue
                    results.append(result)
                    print(
                        f"{_label(result)}, {result.requests} requests: {result.wall_s:.0f} s,"
                        f" CPU {result.airflow_cpu_s_per_request:.3f} s/request,"
                        f" 429s {result.rate_429_fraction:.2%},"
                        f" bottleneck {result.bottleneck_provider} {_pct(result.bottleneck_utilisation)},"
                        f" completed {result.completed}/{result.requests} ({result.dag_run_state})",
                        flush=True,
                    )
                    write_outputs(results, args, time.monotonic() - started)
            finally:
                meter.close()
    text = write_outputs(results, args, time.monotonic() - started)
    print("\n" + text, flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--latency-ms", type=int, default=100, help="sandbox latency per call")
    parser.add_argument("--batch-size", type=int, default=50, help="the DAG's batch_size param")
    parser.add_argument("--parallelism", type=int, default=8, help="[core] parallelism")
    parser.add_argument("--concurrency", type=int, default=8, help="requests at a time per task")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--replot", action="store_true", help="redraw the outputs from the last results")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads((ROOT / "results.json").read_text())
        # The code the runs measured, not today's checkout.
        args.checkout = saved.get("checkout") or json.loads(JSON_OUT.read_text())["settings"]["code"]
        args.checkout["uncommitted_changes"] = [
            path for path in args.checkout["uncommitted_changes"] if not path.startswith("docs/")
        ]
        print(write_outputs([RunResult(**r) for r in saved["runs"]], args, saved["total_s"]))
        return 0
    run_all(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
