"""Throughput benchmark: the erasure DAG on the real scheduler, against the Airflow floor and a
sequential script.

    .venv/bin/python include/bench/throughput.py [--sizes 200,500,1000] [--latency-ms 100]

Starts the docker-compose stack as local processes (devstack.composestack) with the
LocalExecutor: PostgreSQL for Airflow and the compliance store, the API server, scheduler,
DAG processor and triggerer, and the sandbox answering every call after ``--latency-ms``.
Then, for each size: the real DAG drains that many requests (fresh sandbox people, one run),
and the floor DAG (include/bench/dags: the same shape with no-op tasks) runs the same number
of batches. At ``--compare-latency-ms`` (300 ms) the DAG drains ``--compare-requests`` and the
sequential script (include/bench/sequential.py: same calls, one request after another) erases
a sample, extrapolated linearly. Then the two shapes of ``batch_size: auto``: for each of
``--shape-sizes``, the DAG drains that many requests with one mapped group per request and again
in batches of 50 (the numbers behind the default ``per_request_up_to``). Prints the tables,
writes them into docs/benchmarks.md and plots docs/benchmarks.png.

``--parts limits`` (in the default parts) runs include/bench/limits_bench.py: the DAG against the
providers' enforced limits on the LocalExecutor and the Celery stacks (docs/benchmarks.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import limits_bench  # include/bench/limits_bench.py, next to this script
import psutil

from devstack import REPO_ROOT
from devstack.composestack import ComposeStack, compose_stack
from devstack.localstack import connection_env, person_identifiers
from gdpr_erasure.operators.claim import BACKLOG_BATCH_SIZE, PER_REQUEST_UP_TO
from sandbox.connections import sandbox_connections

ROOT = Path.cwd() / ".bench" / "throughput"
FLOOR_DAG = Path(__file__).resolve().parent / "dags" / "gdpr_erasure_floor.py"
APIS = ("stripe", "twilio", "segment")
DOC = REPO_ROOT / "docs" / "benchmarks.md"
PLOT = REPO_ROOT / "docs" / "benchmarks.png"
MARKS = {
    "bench": ("<!-- bench:start -->", "<!-- bench:end -->"),
    "shapes": ("<!-- shapes:start -->", "<!-- shapes:end -->"),
}
RUN_TIMEOUT = 1800.0


# --- measuring ----------------------------------------------------------------------------------


def _tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class Meter:
    """CPU seconds (own + reaped children) and peak RSS of each stack process and its children."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.roots = {name: psutil.Process(pid) for name, pid in processes.items()}
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def cpu(self) -> dict[str, float]:
        totals = {}
        for name, root in self.roots.items():
            total = 0.0
            for process in _tree(root):
                try:
                    t = process.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
                except psutil.NoSuchProcess:
                    pass
            totals[name] = total
        return totals

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            for name, root in self.roots.items():
                rss = 0
                for process in _tree(root):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        rss += process.memory_info().rss
                self.peaks[name] = max(self.peaks.get(name, 0), rss)

    def reset_peaks(self) -> None:
        self.peaks = {}

    def close(self) -> None:
        self._stop.set()


@dataclass
class Result:
    kind: str  # pipeline | floor | sequential | per-request | batched
    requests: int
    latency_ms: int
    wall: float
    cpu: dict[str, float] = field(default_factory=dict)  # Airflow processes
    sandbox_cpu: float = 0.0
    peak_rss: dict[str, int] = field(default_factory=dict)
    sample: int | None = None  # sequential: requests actually run

    @property
    def airflow_cpu(self) -> float:
        return sum(self.cpu.values())

    @property
    def per_minute(self) -> float:
        return self.requests / self.wall * 60


# --- the runs -----------------------------------------------------------------------------------


def _seed(stack: ComposeStack, people: int, latency_ms: int) -> list[dict[str, Any]]:
    """A fresh sandbox population, every API answering after ``latency_ms``."""
    stack.sandbox.reset(people=people)
    stack.sandbox.set_faults({api: {"latency_ms": latency_ms} for api in APIS})
    catalog = stack.sandbox.catalog()
    stack.people = {p["key"]: p for p in catalog["people"]}
    return [p for p in catalog["people"] if p["key"].startswith("person-")][:people]


def _run_seconds(run: dict[str, Any]) -> float:
    start = datetime.fromisoformat(run["queued_at"] or run["start_date"])
    return (datetime.fromisoformat(run["end_date"]) - start).total_seconds()


def _measure(stack: ComposeStack, meter: Meter, sandbox: psutil.Process, dag_id: str, conf: dict) -> tuple:
    before, sandbox_before = meter.cpu(), _cpu(sandbox)
    meter.reset_peaks()
    run_id = stack.trigger_dag(conf, dag_id=dag_id)
    run = stack.wait_for_dag_run(run_id, RUN_TIMEOUT, dag_id=dag_id)
    time.sleep(1.0)  # let the last task processes be reaped into their parents' counters
    after = meter.cpu()
    cpu = {name: after[name] - before[name] for name in after}
    return run, cpu, _cpu(sandbox) - sandbox_before, dict(meter.peaks)


def _cpu(process: psutil.Process) -> float:
    t = process.cpu_times()
    return t.user + t.system


def run_pipeline(
    stack, meter, sandbox, requests: int, latency_ms: int, batch_size: int, kind: str = "pipeline"
) -> Result:
    people = _seed(stack, requests, latency_ms)
    ids = stack.submit([p["key"] for p in people], prefix=f"bench-{kind}-{latency_ms}ms-{requests}")
    # per_request_up_to 0: the batch size asked for is the one used, whatever the count.
    conf = {"max_requests": requests, "batch_size": batch_size, "per_request_up_to": 0}
    run, cpu, sandbox_cpu, peaks = _measure(stack, meter, sandbox, "gdpr_erasure", conf)
    store = stack.store()
    try:
        statuses = {store.get(rid).status.value for rid in ids}
    finally:
        store.dispose()
    if run["state"] != "success" or statuses != {"completed"}:
        raise RuntimeError(f"pipeline run {run['dag_run_id']} {run['state']}: statuses {statuses}")
    return Result(kind, requests, latency_ms, _run_seconds(run), cpu, sandbox_cpu, peaks)


def run_floor(stack, meter, sandbox, requests: int, batch_size: int) -> Result:
    conf = {"requests": requests, "batch_size": batch_size}
    run, cpu, sandbox_cpu, peaks = _measure(stack, meter, sandbox, "gdpr_erasure_floor", conf)
    if run["state"] != "success":
        raise RuntimeError(f"floor run {run['dag_run_id']} {run['state']}")
    return Result("floor", requests, 0, _run_seconds(run), cpu, sandbox_cpu, peaks)


def run_sequential(stack, requests: int, sample: int, latency_ms: int) -> Result:
    """The sequential script on ``sample`` requests, extrapolated to ``requests``."""
    import sequential  # include/bench/sequential.py, next to this script

    people = _seed(stack, max(sample, 20), latency_ms)[:sample]
    accounts = stack.sandbox.accounts()
    os.environ.update(connection_env(sandbox_connections(stack.sandbox_url, accounts)))
    work = [(f"seq-{p['key']}", person_identifiers(p)) for p in people]
    seconds = sequential.erase_sequentially(work)
    return Result("sequential", requests, latency_ms, seconds / sample * requests, sample=sample)


# --- reporting ----------------------------------------------------------------------------------

SERVICES = ("airflow-scheduler", "airflow-triggerer", "airflow-apiserver", "airflow-dag-processor")


def table(results: list[Result]) -> str:
    head = (
        "| run | requests | latency | wall (s) | requests/min | Airflow CPU s/request | sandbox CPU s"
        " | peak RSS MB: scheduler+tasks / triggerer / API server / DAG processor |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    for r in results:
        if r.kind == "sequential":
            rows.append(
                f"| sequential script (sample of {r.sample}, extrapolated) | {r.requests} | {r.latency_ms} ms"
                f" | {r.wall:.0f} | {r.per_minute:.0f} | - | - | - |"
            )
            continue
        rss = " / ".join(f"{r.peak_rss.get(s, 0) / 2**20:.0f}" for s in SERVICES)
        latency = f"{r.latency_ms} ms" if r.kind == "pipeline" else "-"
        rows.append(
            f"| {'erasure DAG' if r.kind == 'pipeline' else 'floor (no-op DAG)'} | {r.requests} | {latency}"
            f" | {r.wall:.1f} | {r.per_minute:.0f} | {r.airflow_cpu / r.requests:.3f}"
            f" | {r.sandbox_cpu:.0f} | {rss} |"
        )
    return head + "\n".join(rows) + "\n"


def ratios(results: list[Result], latency: int, compare_latency: int) -> list[str]:
    lines = []
    pipe = {r.requests: r for r in results if r.kind == "pipeline" and r.latency_ms == latency}
    floor = {r.requests: r for r in results if r.kind == "floor"}
    for n in sorted(pipe):
        if n in floor:
            lines.append(
                f"* {n} requests: erasure DAG / floor = {pipe[n].wall / floor[n].wall:.2f}x wall time"
                f" ({pipe[n].wall:.1f} s vs {floor[n].wall:.1f} s)"
            )
    if len(pipe) > 1:
        sizes = sorted(pipe)
        first, last = pipe[sizes[0]], pipe[sizes[-1]]
        lines.append(
            f"* cost per request from {sizes[0]} to {sizes[-1]}: wall {first.wall / first.requests:.3f}"
            f" -> {last.wall / last.requests:.3f} s, Airflow CPU {first.airflow_cpu / first.requests:.3f}"
            f" -> {last.airflow_cpu / last.requests:.3f} s"
        )
    slow = [r for r in results if r.kind == "pipeline" and r.latency_ms == compare_latency]
    seq = [r for r in results if r.kind == "sequential" and r.latency_ms == compare_latency]
    if slow and seq:
        lines.append(
            f"* at {compare_latency} ms per call, {slow[0].requests} requests: sequential script"
            f" {seq[0].wall:.0f} s (extrapolated) vs erasure DAG {slow[0].wall:.1f} s:"
            f" {seq[0].wall / slow[0].wall:.1f}x faster"
        )
    return lines


def shapes_table(results: list[Result]) -> str:
    """Per-request groups against batches of 50, size by size."""
    per = {r.requests: r for r in results if r.kind == "per-request"}
    batched = {r.requests: r for r in results if r.kind == "batched"}
    rows = [
        "| requests | one group per request: wall (s) | batches of 50: wall (s) | extra wall (s) | ratio"
        " | Airflow CPU s/request: per request / batched |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for n in sorted(set(per) & set(batched)):
        a, b = per[n], batched[n]
        rows.append(
            f"| {n} | {a.wall:.1f} | {b.wall:.1f} | {a.wall - b.wall:+.1f} | {a.wall / b.wall:.2f}x"
            f" | {a.airflow_cpu / n:.3f} / {b.airflow_cpu / n:.3f} |"
        )
    return "\n".join(rows) + "\n"


def write_doc(text: str, section: str = "bench") -> None:
    start, end = MARKS[section]
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if start not in doc:
        doc += f"\n{start}\n{end}\n"
    before, _, rest = doc.partition(start)
    _, _, after = rest.partition(end)
    DOC.write_text(f"{before}{start}\n{text}{end}{after}")


def plot(results: list[Result], latency: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (walls, costs) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, label, style in (
        ("pipeline", f"erasure DAG ({latency} ms per call)", "o-"),
        ("floor", "floor: same DAG shape, no-op tasks", "s--"),
    ):
        rows = sorted(
            (r for r in results if r.kind == kind and r.latency_ms in (latency, 0)), key=lambda r: r.requests
        )
        if not rows:
            continue
        xs = [r.requests for r in rows]
        walls.plot(xs, [r.wall for r in rows], style, label=label)
        costs.plot(xs, [r.airflow_cpu / r.requests for r in rows], style, label=label)
    seq = [r for r in results if r.kind == "sequential" and r.latency_ms == latency]
    if seq:
        per_request = seq[0].wall / seq[0].requests
        xs = sorted({r.requests for r in results if r.kind == "pipeline" and r.latency_ms == latency})
        walls.plot(xs, [per_request * x for x in xs], ":", label="sequential script (extrapolated)")
    walls.set(xlabel="requests drained in one run", ylabel="wall time (s, log scale)", title="Time to drain")
    walls.set_yscale("log")
    costs.set(
        xlabel="requests drained in one run", ylabel="CPU s per request", title="Airflow CPU per request"
    )
    costs.set_ylim(bottom=0)
    for ax in (walls, costs):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,500,1000", help="requests per run, comma-separated")
    parser.add_argument("--latency-ms", type=int, default=100, help="sandbox latency per call")
    parser.add_argument("--compare-latency-ms", type=int, default=300, help="latency of the comparison")
    parser.add_argument("--compare-requests", type=int, default=200, help="requests in the comparison run")
    parser.add_argument("--sample", type=int, default=8, help="requests the sequential script runs")
    parser.add_argument("--batch-size", type=int, default=50, help="the DAG's batch_size param")
    parser.add_argument(
        "--shape-sizes", default="8,16,32,64,128", help="requests per run for the two shapes of auto"
    )
    parser.add_argument(
        "--parts",
        default="throughput,shapes,limits",
        help="what to run, comma-separated: throughput, shapes, limits (the providers' limits)",
    )
    parser.add_argument("--parallelism", type=int, default=8, help="[core] parallelism (LocalExecutor)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests at a time per task")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--replot", action="store_true", help="redraw the plot from the last results")
    limits_bench.add_arguments(parser)
    args = parser.parse_args()
    if args.replot:
        saved = json.loads((ROOT / "results.json").read_text())
        plot([Result(**r) for r in saved], args.latency_ms, PLOT)
        return 0
    parts = set(args.parts.split(","))
    if parts & {"throughput", "shapes"}:
        run_throughput(args, parts)
    if "limits" in parts:
        limits_bench.run_all(args)
    return 0


def run_throughput(args: argparse.Namespace, parts: set[str]) -> None:
    """The throughput and shapes parts, on one LocalExecutor stack."""
    sizes = [int(s) for s in args.sizes.split(",")]
    shape_sizes = [int(s) for s in args.shape_sizes.split(",")]
    dags = ROOT / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    for link, target in (
        ("gdpr_erasure_dag.py", REPO_ROOT / "dags" / "gdpr_erasure_dag.py"),
        (FLOOR_DAG.name, FLOOR_DAG),
    ):
        (dags / link).unlink(missing_ok=True)
        (dags / link).symlink_to(target)
    stack_root = ROOT / "stack"
    if stack_root.exists():
        import shutil

        shutil.rmtree(stack_root)
    stack_root.mkdir(parents=True)
    settings = {
        "AIRFLOW__CORE__PARALLELISM": str(args.parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(args.parallelism),
        "GDPR_ERASURE_CONCURRENCY": str(args.concurrency),
        "GDPR_ERASURE_POLL_SECONDS": "1",
    }
    print(f"settings: {settings}, batch_size {args.batch_size}, sizes {sizes}", flush=True)
    started = time.monotonic()
    results: list[Result] = []
    with compose_stack(
        stack_root,
        executor="LocalExecutor",
        dags_folder=dags,
        regulation_seconds=2.0,
        sandbox_args=["--people", str(max([*sizes, *shape_sizes, args.compare_requests]))],
        extra_env=settings,
    ) as stack:
        print(f"stack up in {time.monotonic() - started:.0f} s", flush=True)
        stack.wait_for(
            "the floor DAG", lambda: stack.api("GET", "/dags/gdpr_erasure_floor").status_code == 200, 120
        )
        sandbox = next(p for p in psutil.Process().children() if "sandbox" in " ".join(p.cmdline()))
        meter = Meter({name: proc.pid for name, proc in stack.processes.items()})
        try:
            for n in sizes if "throughput" in parts else ():
                for result in (
                    run_pipeline(stack, meter, sandbox, n, args.latency_ms, args.batch_size),
                    run_floor(stack, meter, sandbox, n, args.batch_size),
                ):
                    results.append(result)
                    print(
                        f"{result.kind} {n}: {result.wall:.1f} s, Airflow CPU {result.airflow_cpu:.0f} s",
                        flush=True,
                    )
            if args.compare_requests and "throughput" in parts:
                slow = run_pipeline(
                    stack, meter, sandbox, args.compare_requests, args.compare_latency_ms, args.batch_size
                )
                results.append(slow)
                print(f"pipeline {args.compare_requests} at {args.compare_latency_ms} ms: {slow.wall:.1f} s")
            for latency in (
                (args.latency_ms, args.compare_latency_ms) if args.sample and "throughput" in parts else ()
            ):
                seq = run_sequential(stack, args.compare_requests, args.sample, latency)
                results.append(seq)
                print(f"sequential at {latency} ms: {seq.wall / seq.requests:.2f} s per request", flush=True)
            for n in shape_sizes if "shapes" in parts else ():
                for kind, size in (("per-request", 1), ("batched", BACKLOG_BATCH_SIZE)):
                    result = run_pipeline(stack, meter, sandbox, n, args.latency_ms, size, kind)
                    results.append(result)
                    print(f"{kind} {n}: {result.wall:.1f} s", flush=True)
        finally:
            meter.close()
    total = time.monotonic() - started
    if "shapes" in parts:
        shapes = shapes_table(results) + (
            f"\nSettings: LocalExecutor, parallelism {args.parallelism}, {args.concurrency} requests at a"
            f" time per task, sandbox latency {args.latency_ms} ms per call; {os.cpu_count()} cores."
            f" The DAG's default `per_request_up_to` is {PER_REQUEST_UP_TO}.\n"
        )
        print("\n" + shapes)
        if not args.no_doc:
            write_doc(shapes, "shapes")
    if "throughput" not in parts:
        (ROOT / "shapes.json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
        return

    text = (
        table([r for r in results if r.kind in ("pipeline", "floor", "sequential")])
        + "\n"
        + "\n".join(ratios(results, args.latency_ms, args.compare_latency_ms))
        + "\n"
    )
    text += (
        f"\nSettings: LocalExecutor, parallelism {args.parallelism}, batch_size {args.batch_size},"
        f" {args.concurrency} requests at a time per task, sandbox latency {args.latency_ms} ms per call;"
        f" {os.cpu_count()} cores. Whole benchmark: {total / 60:.1f} min.\n"
    )
    print("\n" + text)
    (ROOT / "results.json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
    if not args.no_doc:
        write_doc(text)
        plot(results, args.latency_ms, PLOT)
        print(f"wrote {DOC.relative_to(REPO_ROOT)} and {PLOT.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
