"""Provider calls per erasure request: what one request costs at Stripe, Twilio and Segment.

    .venv/bin/python include/bench/calls.py [--requests 20] [--compare REF]

Runs the real DAG (``airflow dags test``) on a fresh local SQLite stack under ``.bench/calls/``
for ``--requests`` generated sandbox people, with the sandbox's request log cleared after the
setup, and prints the calls per request per provider and per endpoint (method and route
template: the sandbox logs templates, never a raw path, so no email or phone is printed), plus
the total. Preflight checks run once per DAG run and are counted too, spread over its requests.

``--compare REF`` first measures the code of git revision ``REF`` (a temporary worktree, its
runtime package, sandbox and DAGs) and then this checkout, and prints the two side by side with
the endpoints whose count changed. Call counts are deterministic for a seed, so one run of each
is enough; the machine's noise changes only the wall time.

:func:`calls_per_request` is imported by the other benchmarks.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PROVIDERS = ("stripe", "twilio", "segment")
ROOT = Path.cwd() / ".bench" / "calls"
REPO = Path(__file__).resolve().parents[2]


def _count(entry: Mapping[str, Any]) -> int:
    # A request-log entry is one call; a row of /_sandbox/requests/counts carries its total.
    return int(entry.get("count", 1))


def calls_per_request(log_entries: Iterable[Mapping[str, Any]], requests: int) -> dict[str, float]:
    """Provider calls per erasure request, per provider and in ``total``.

    :param log_entries: the sandbox's request log (``SandboxClient.requests_log()``: one entry per
        call) or its exact totals (``request_counts()``: rows with a ``count``); each has ``api``.
    :param requests: how many erasure requests made those calls.
    :raises ValueError: when ``requests`` is not positive.
    """
    if requests <= 0:
        raise ValueError("requests must be positive")
    totals = dict.fromkeys(PROVIDERS, 0)
    for entry in log_entries:
        api = entry.get("api")
        totals[api] = totals.get(api, 0) + _count(entry)
    per = {api: n / requests for api, n in totals.items()}
    per["total"] = sum(totals.values()) / requests
    return per


#: POSTs that read: Twilio Memory's profile lookup takes its identifier in a JSON body.
READ_POSTS = frozenset({"/v1/Stores/{storeId}/Profiles/Lookup"})


def is_write(entry: Mapping[str, Any]) -> bool:
    """Whether a logged call changes something at the provider (a delete, a tag, a regulation)."""
    return entry.get("method") in ("POST", "DELETE") and entry.get("route") not in READ_POSTS


def reads_and_writes(log_entries: Iterable[Mapping[str, Any]], requests: int) -> dict[str, float]:
    """Calls per request that only read (``reads``) and that write (``writes``): the writes are
    fixed by the person's data (one delete per message), so savings are in the reads.

    :param log_entries: as for :func:`calls_per_request` (each also has ``method`` and ``route``).
    :param requests: how many erasure requests made those calls.
    """
    entries = list(log_entries)
    writes = sum(_count(e) for e in entries if is_write(e))
    return {"reads": (sum(_count(e) for e in entries) - writes) / requests, "writes": writes / requests}


def calls_per_endpoint(log_entries: Iterable[Mapping[str, Any]], requests: int) -> dict[str, float]:
    """Calls per request per endpoint, keyed ``"<api> <METHOD> <route template>"``.

    :param log_entries: as for :func:`calls_per_request` (each also has ``method`` and ``route``).
    :param requests: how many erasure requests made those calls.
    """
    counts: collections.Counter[str] = collections.Counter()
    for entry in log_entries:
        counts[f"{entry.get('api')} {entry.get('method')} {entry.get('route')}"] += _count(entry)
    return {endpoint: n / requests for endpoint, n in sorted(counts.items())}


def measure(requests: int, root: Path, *, checkout: Path | None = None) -> dict[str, Any]:
    """Run the DAG once for ``requests`` sandbox people and count the provider calls it made.

    :param requests: how many generated people (``person-001`` ...) to erase.
    :param root: the stack's directory (emptied first).
    :param checkout: another source tree whose runtime package, sandbox and DAGs run instead of
        this one's (a worktree of an older revision); None: this checkout.
    :returns: ``per_provider``, ``per_endpoint``, ``statuses``, ``exit_code`` and ``wall_s``.
    """
    from devstack.localstack import local_stack

    extra_env: dict[str, str] = {}
    if checkout is not None:
        # Ahead of the editable installs on sys.path, in every process the stack starts.
        extra_env["PYTHONPATH"] = str(checkout / "include")
        extra_env["AIRFLOW__CORE__DAGS_FOLDER"] = str(checkout / "dags")
        extra_env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(checkout / "plugins")
    sandbox_args = ["--people", str(requests), "--regulation-seconds", "2"]
    with local_stack(root, sandbox_args=sandbox_args, extra_env=extra_env) as stack:
        keys = [f"person-{n:03d}" for n in range(1, requests + 1)]
        ids = stack.submit(keys, prefix="calls")
        stack.sandbox.clear_requests_log()
        started = time.monotonic()
        code = stack.run_dag("dag-run.log", {"max_requests": requests})
        wall = time.monotonic() - started
        counts = stack.sandbox.request_counts()
        store = stack.store()
        try:
            statuses = dict(collections.Counter(store.get(rid).status.value for rid in ids))
        finally:
            store.dispose()
    return {
        "requests": requests,
        "per_provider": calls_per_request(counts, requests),
        "per_endpoint": calls_per_endpoint(counts, requests),
        "per_kind": reads_and_writes(counts, requests),
        "statuses": statuses,
        "exit_code": code,
        "wall_s": round(wall, 1),
    }


def _worktree(ref: str, where: Path) -> Path:
    if where.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), ref],
        check=True,
        capture_output=True,
    )
    return where


def provider_table(runs: dict[str, dict[str, Any]]) -> str:
    """Markdown: calls per request per provider and in total, one column per run."""
    names = list(runs)
    lines = [f"| calls per request | {' | '.join(names)} |", f"|---|{'---:|' * len(names)}"]
    rows = [(api, "per_provider") for api in (*PROVIDERS, "total")] + [
        (kind, "per_kind") for kind in ("reads", "writes")
    ]
    for name, table in rows:
        cells = " | ".join(f"{runs[n][table].get(name, 0.0):.2f}" for n in names)
        label = "**total**" if name == "total" else name if table == "per_provider" else f"of which {name}"
        change = ""
        if len(names) == 2 and runs[names[0]][table].get(name):
            before, after = (runs[n][table].get(name, 0.0) for n in names)
            change = f" | {100 * (after - before) / before:+.1f}%"
        lines.append(f"| {label} | {cells}{change} |")
    if len(names) == 2:
        lines[0] += " change |"
        lines[1] += "---:|"
    return "\n".join(lines)


def endpoint_table(runs: dict[str, dict[str, Any]], *, changed_only: bool) -> str:
    """Markdown: calls per request per endpoint, one column per run (only those that differ)."""
    names = list(runs)
    endpoints = sorted({e for run in runs.values() for e in run["per_endpoint"]})
    lines = [f"| endpoint | {' | '.join(names)} |", f"|---|{'---:|' * len(names)}"]
    for endpoint in endpoints:
        values = [runs[n]["per_endpoint"].get(endpoint, 0.0) for n in names]
        if changed_only and len(set(values)) == 1:
            continue
        lines.append(f"| `{endpoint}` | {' | '.join(f'{v:.2f}' for v in values)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="sandbox people to erase (default 20)")
    parser.add_argument("--compare", metavar="REF", help="also measure git revision REF, first")
    args = parser.parse_args(argv)
    if args.requests <= 0:
        parser.error("--requests must be positive")

    runs: dict[str, dict[str, Any]] = {}
    if args.compare:
        with tempfile.TemporaryDirectory(prefix="calls-") as tmp:
            checkout = _worktree(args.compare, Path(tmp) / "tree")
            try:
                print(f"measuring {args.compare} ({args.requests} requests)...", flush=True)
                runs[args.compare] = measure(args.requests, ROOT / "before", checkout=checkout)
            finally:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(checkout)], check=False
                )
    print(f"measuring this checkout ({args.requests} requests)...", flush=True)
    runs["this checkout"] = measure(args.requests, ROOT / "after")

    for name, run in runs.items():
        print(
            f"{name}: exit {run['exit_code']}, statuses {run['statuses']}, DAG run {run['wall_s']} s",
            flush=True,
        )
    print()
    print(provider_table(runs))
    print()
    print(endpoint_table(runs, changed_only=len(runs) > 1))
    ok = all(run["exit_code"] == 0 for run in runs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
