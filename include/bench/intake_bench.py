"""Benchmark of the intake: accepted signed requests per second and latency, per store backend.

For each backend the script creates an empty store (a SQLite file, or a throwaway PostgreSQL
schema that it drops afterwards), starts ``gdpr-erasure intake serve`` on 127.0.0.1 as a
subprocess, and drives it from this process: a closed loop of ``--concurrency`` keep-alive
HTTP/1.1 connections over raw asyncio sockets (uvloop when installed), each sending the next
pre-signed POST as soon as the previous answer is read. Requests are signed before the clock
starts, so the load generator spends its CPU on the socket work only; it still shares the
machine's cores with the server and the database, which the table says.

Every request carries a new request id, so each one is a real insert. After the run the rows are
counted: a request only counts as accepted if it was answered 202 and stored.

    python include/bench/intake_bench.py  # both stores; 1 worker SQLite, 2 PostgreSQL; 4 and 16 conns
    python include/bench/intake_bench.py --backend postgresql --workers 1 --workers 2 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gdpr_erasure.intake.server import READY_PREFIX
from gdpr_erasure.intake.signature import SIGNATURE_HEADER, signature_header
from gdpr_erasure.store import ComplianceStore

DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@dataclass
class Result:
    backend: str
    workers: int
    requests: int
    concurrency: int
    accepted: int
    stored: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the store -----------------------------------------------------------------------------------


class Database:
    """An empty compliance store for one run; removed afterwards."""

    def __init__(self, backend: str, pg_url: str) -> None:
        self.backend = backend
        self._dir = Path(tempfile.mkdtemp(prefix="intake-bench-"))
        self._admin = None
        if backend == "sqlite":
            self.url = f"sqlite:///{self._dir / 'compliance.db'}"
        else:
            from sqlalchemy import create_engine, text

            self.schema = f"intake_bench_{uuid.uuid4().hex[:10]}"
            self._admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
            with self._admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            sep = "&" if "?" in pg_url else "?"
            self.url = f"{pg_url}{sep}options=-csearch_path%3D{self.schema}"
        store = ComplianceStore.from_url(self.url)
        store.init_db()
        store.dispose()

    @property
    def home(self) -> Path:
        return self._dir

    def rows(self) -> int:
        store = ComplianceStore.from_url(self.url)
        try:
            return sum(store.counts_by_status().values())
        finally:
            store.dispose()

    def drop(self) -> None:
        if self._admin is not None:
            from sqlalchemy import text

            with self._admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            self._admin.dispose()
        shutil.rmtree(self._dir, ignore_errors=True)


# -- the server ----------------------------------------------------------------------------------


def start_server(db: Database, secret: str, workers: int, log_level: str) -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(db.home / "airflow"),
        "AIRFLOW_CONN_GDPR_INTAKE": json.dumps({"conn_type": "generic", "password": secret}),
    }
    command = [
        sys.executable,
        "-m",
        "gdpr_erasure.cli",
        "intake",
        "serve",
        "--port",
        "0",
        "--workers",
        str(workers),
        "--db-url",
        db.url,
        "--no-init-db",
        "--log-level",
        log_level,
    ]
    log = open(db.home / "server.log", "w")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    line = process.stdout.readline()
    if not line.startswith(READY_PREFIX):
        process.kill()
        raise SystemExit(f"the intake did not start; see {db.home / 'server.log'}")
    return process, line.strip().removeprefix(READY_PREFIX)


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the load generator --------------------------------------------------------------------------


def prepare(host: str, port: int, secret: str, count: int, tag: str) -> list[bytes]:
    """Pre-signed raw HTTP/1.1 requests, each for a new request id."""
    requests = []
    stamp = int(time.time())
    for i in range(count):
        body = json.dumps(
            {"request_id": f"{tag}-{i}", "email": f"bench.{tag}.{i}@example.test", "phone": f"+1555{i:07d}"},
            separators=(",", ":"),
        ).encode()
        signature = signature_header(secret, body, stamp)
        head = (
            f"POST /v1/requests HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{SIGNATURE_HEADER}: {signature}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


async def _connection(
    host: str, port: int, work: list[bytes], latencies: list[float], statuses: dict
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while work:
            raw = work.pop()
            started = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def drive(host: str, port: int, work: list[bytes], concurrency: int) -> tuple[float, list[float], dict]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, work, latencies, statuses) for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, statuses


def run_loop(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


def bench(
    backend: str, *, requests: int, concurrency: int, workers: int, pg_url: str, warmup: int, log_level: str
) -> Result:
    db = Database(backend, pg_url)
    secret = secrets.token_hex(32)
    process, url = start_server(db, secret, workers, log_level)
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
        # Warm up every worker (imports, first connection lookup, pool) before measuring.
        run_loop(drive(host, port, prepare(host, port, secret, warmup, "warm"), concurrency))
        before = db.rows()
        work = prepare(host, port, secret, requests, "run")
        seconds, latencies, statuses = run_loop(drive(host, port, work, concurrency))
        stored = db.rows() - before
        accepted = min(statuses.get(202, 0), stored)
        if set(statuses) - {202}:
            print(f"  {backend}: answers other than 202: {statuses}", file=sys.stderr)
        return Result(backend, workers, requests, concurrency, accepted, stored, seconds, latencies)
    finally:
        stop_server(process)
        db.drop()


def print_table(results: list[Result], load_before: tuple[float, ...]) -> None:
    header = (
        f"{'store':<11} {'workers':>7} {'requests':>8} {'concurrency':>11} {'accepted/s':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'mean ms':>7} {'stored':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:<11} {r.workers:>7} {r.requests:>8} {r.concurrency:>11} {r.rate:>10.0f} "
            f"{r.percentile(0.50):>7.1f} {r.percentile(0.99):>7.1f} {statistics.fmean(r.latencies_ms):>7.1f} "
            f"{r.stored:>7}"
        )
    print(
        f"\nmachine: {os.cpu_count()} CPU(s); server, database and this load generator share them. "
        "Closed loop, keep-alive, pre-signed requests, one new request id each.\n"
        f"1-min load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} "
        "(anything above the bench itself competes for the same cores)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"], help="repeatable")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument(
        "--concurrency", type=int, action="append", help="connections (repeatable; default 32)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        action="append",
        help="server workers (repeatable; default 1 SQLite, 2 PostgreSQL)",
    )
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--pg-url", default=os.environ.get("GDPR_TEST_PG_URL", DEFAULT_PG_URL))
    parser.add_argument(
        "--log-level", default="info", help="server log level (info: one line per call, as deployed)"
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results = []
    for backend in args.backend or ["sqlite", "postgresql"]:
        for workers in args.workers or ([1] if backend == "sqlite" else [2]):
            for concurrency in args.concurrency or [4, 16]:
                print(
                    f"running {backend}, {workers} worker(s), concurrency {concurrency} ...", file=sys.stderr
                )
                results.append(
                    bench(
                        backend,
                        requests=args.requests,
                        concurrency=concurrency,
                        workers=workers,
                        pg_url=args.pg_url,
                        warmup=args.warmup,
                        log_level=args.log_level,
                    )
                )
    print_table(results, load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
