"""What the auditor page costs over a large ledger, measured over HTTP.

    .venv/bin/python -m gdpr_erasure.auditor.bench [--records 100000] [--db-url URL] [--serve]

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import uvicorn
from sqlalchemy import insert

from gdpr_erasure.auditor.app import create_app
from gdpr_erasure.hashing import HashKey, identifiers_hash
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.ledger.log import Ledger
from gdpr_erasure.receipts import generate_signing_key
from gdpr_erasure.store import ComplianceStore, RequestStatus
from gdpr_erasure.store.chain import GENESIS_HASH, canonical_json, chain_hash
from gdpr_erasure.store.schema import audit_log, erasure_requests

START = datetime(2025, 1, 6, tzinfo=UTC)
CHUNK = 10_000


def person(seq: int) -> SubjectIdentifiers:
    """The made-up person of record ``seq``: an email, and a phone for every third."""
    phone = f"+4420794{seq:05d}"[:13] if seq % 3 == 0 else None
    return SubjectIdentifiers(email=f"person{seq}@example.com", phone=phone)


def record_of(seq: int, key: HashKey) -> tuple[dict, datetime, datetime]:
    """A record shaped like ``build_audit_record``'s, one every 7 minutes; time to complete from
    an hour to 40 days (about one in eight over the 30-day limit)."""
    completed = START + timedelta(minutes=7 * seq)
    received = completed - timedelta(hours=1 + (seq * 37) % (24 * 40))
    rid = f"req-{seq:08d}"
    subject = person(seq)
    tag = f"cus#{seq:012x}"
    return (
        {
            "schema": "gdpr-erasure-audit/1",
            "request_id": rid,
            "received_at": received.isoformat(),
            "completed_at": completed.isoformat(),
            "outcome": "completed",
            "attempts": 1,
            "run_id": f"scheduled__{completed.date().isoformat()}T00:00:00+00:00",
            "subject": {
                "identifier_types": subject.present(),
                "identifiers_hash": identifiers_hash(key, subject),
                "hash_algorithm": "HMAC-SHA256",
                "hash_key_id": key.key_id,
            },
            "twilio": {
                "memory_profile_ids": [f"mem_profile_{seq:026d}"],
                "profile_purge": "done",
                "profile_proof": {"gone_at": completed.isoformat(), "summary": "1 profile(s) answer 404"},
                "history_purge": "done",
                "history_deleted": {"messages": seq % 13, "calls": seq % 3},
                "history_remaining_after": {"messages": 0, "calls": 0},
            },
            "segment": {
                "regulation_id": f"reg{seq:024d}",
                "regulation_type": "SUPPRESS_WITH_DELETE",
                "purge": "done",
                "segment_ids": [f"seg{seq}"],
                "user_ids_hmac": [],
                "proof": {"status": "FINISHED", "finished_at": completed.isoformat()},
            },
            "stripe": {
                "customer_ids": [tag],
                "method": "delete",
                "purge": "done",
                "customers": {tag: {"outcome": "deleted", "proven_by": "deleted_stub"}},
                "erased_customer_ids": [tag],
                "proof": {"customers": {tag: {"state": "deleted", "evidence": "deleted_stub"}}},
            },
        },
        received,
        completed,
    )


def fill(store: ComplianceStore, count: int, key: HashKey) -> None:
    prev = GENESIS_HASH
    for start in range(1, count + 1, CHUNK):
        rows, records = [], []
        for seq in range(start, min(start + CHUNK, count + 1)):
            record, received, completed = record_of(seq, key)
            record_json = canonical_json(record)
            digest = chain_hash(seq, prev, completed, record_json)
            rows.append(
                {
                    "id": record["request_id"],
                    "status": RequestStatus.COMPLETED.value,
                    "source": "bench",
                    "attempts": 1,
                    "failures": 0,
                    "received_at": received,
                    "updated_at": completed,
                    "completed_at": completed,
                    "identifiers_hash": record["subject"]["identifiers_hash"],
                    "pii_erased_at": completed,
                    "claimed_by": f"gdpr_erasure/{record['run_id']}",
                }
            )
            records.append(
                {
                    "seq": seq,
                    "request_id": record["request_id"],
                    "recorded_at": completed,
                    "record": record_json,
                    "prev_hash": prev,
                    "record_hash": digest,
                }
            )
            prev = digest
        with store.engine.begin() as conn:
            conn.execute(insert(erasure_requests), rows)
            conn.execute(insert(audit_log), records)


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
