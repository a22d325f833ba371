"""What the auditor page costs over a large ledger, measured over HTTP.

    .venv/bin/python include/bench/auditor_bench.py [--records 100000] [--db-url URL] [--serve]

Fills a fresh store (SQLite in a temporary directory by default) with completed requests and
audit records shaped like the pipeline's, written straight into the tables (the chain hashes
computed as ``append_audit`` does, as ``include/bench/ledger_bench.py`` does), signs a tree
head, serves the app on loopback with uvicorn (every user allowed) and times: the first page
(cold, then warm), a middle page, the last page, a period's first page, a request's drill-down,
its signed receipt, a lookup and the whole CSV export. ``--serve`` keeps serving afterwards, to
look at the page in a browser.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import requests
import uvicorn

from devstack.ledgerfill import START, fill, person
from gdpr_erasure.auditor.app import create_app
from gdpr_erasure.hashing import HashKey
from gdpr_erasure.ledger.log import Ledger
from gdpr_erasure.receipts import generate_signing_key
from gdpr_erasure.store import ComplianceStore


def _serve(app) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


def _time(label: str, call, repeat: int = 5) -> requests.Response:
    times, response = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        response = call()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (label, response.status_code, response.text[:300])
    print(f"{label:<58} median {statistics.median(times) * 1000:8.1f} ms   (max {max(times) * 1000:.1f})")
    assert response is not None
    return response


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--db-url")
    parser.add_argument("--serve", action="store_true", help="keep serving after the measurements")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="auditor-bench-"))
    # This process's own keys, as connections in its environment (never a real deployment's).
    hash_secret = secrets.token_hex(32)
    receipt_key, receipt_pem = generate_signing_key("bench-receipts")
    os.environ["AIRFLOW_CONN_GDPR_HASH_KEY"] = json.dumps(
        {"conn_type": "generic", "login": "bench", "password": hash_secret}
    )
    os.environ["AIRFLOW_CONN_GDPR_RECEIPT_KEY"] = json.dumps(
        {"conn_type": "generic", "login": receipt_key.key_id, "password": receipt_pem}
    )
    key = HashKey("bench", hash_secret.encode())

    store = ComplianceStore.from_url(args.db_url or f"sqlite:///{work / 'compliance.db'}")
    store.init_db()
    started = time.perf_counter()
    fill(store, args.records, key)
    print(f"filled {args.records:,} records in {time.perf_counter() - started:.1f} s ({store.dialect})")
    started = time.perf_counter()
    Ledger(store).sign_new_head(receipt_key)
    print(f"signed the first tree head in {time.perf_counter() - started:.1f} s")

    url = _serve(create_app(store_factory=lambda: store, user_dependency=lambda: "bench"))
    http = requests.Session()
    get = lambda path, **params: lambda: http.get(f"{url}{path}", params=params, timeout=120)  # noqa: E731

    print(f"\n{args.records:,} records, over HTTP (uvicorn on loopback, one process):")
    _time("first page, cold (figures computed, chain check started)", get("/"), repeat=1)
    started = time.perf_counter()
    while "Audit chain intact" not in http.get(f"{url}/", timeout=120).text:
        time.sleep(0.2)
    print(f"{'  the chain check in the background took about':<58} {time.perf_counter() - started:8.1f} s")
    _time("first page", get("/"))
    middle = args.records // 2
    page = _time(f"middle page (?after={middle})", get("/", after=middle))
    assert f'data-seq="{middle + 1}"' in page.text
    page = _time("last page (?before=tip+1)", get("/", before=args.records + 1))
    assert f'data-seq="{args.records}"' in page.text
    since = (START + timedelta(minutes=7 * middle)).date()
    until = since + timedelta(days=30)
    _time(f"a 30-day period's first page, cold ({since}..{until})", get("/", since=since, until=until), 1)
    _time("the same period's first page", get("/", since=since, until=until))
    _time("the same period's next page", get("/", since=since, until=until, after=middle + 50))
    rid = f"req-{middle:08d}"
    _time(f"drill-down /request/{rid}", get(f"/request/{rid}"))
    _time(f"signed receipt /request/{rid}/receipt", get(f"/request/{rid}/receipt"), repeat=2)
    origin = {"Origin": url}
    # Every identifier the request gave: its one hash covers them together.
    form = {
        name: value
        for name, value in (("email", person(middle).email), ("phone", person(middle).phone))
        if value
    }
    answer = _time(
        f"lookup by {' and '.join(form)} (POST /lookup)",
        lambda: http.post(f"{url}/lookup", data=form, headers=origin, timeout=120),
        repeat=3,
    )
    assert f'data-request-id="{rid}"' in answer.text
    started = time.perf_counter()
    size = sum(
        len(chunk)
        for chunk in http.get(f"{url}/export?format=csv", stream=True, timeout=600).iter_content(65536)
    )
    elapsed = time.perf_counter() - started
    print(f"{'CSV export of every record (streamed)':<58} {elapsed:8.1f} s, {size / 1e6:.1f} MB")
    if args.serve:
        print(f"\nserving {url}/ (Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    store.dispose()


if __name__ == "__main__":
    main()
