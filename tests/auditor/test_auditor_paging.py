"""The auditor page over a ledger of many records, over real HTTP on a real store (SQLite, and
PostgreSQL when GDPR_TEST_PG_URL is set): keyset pages that visit every record exactly once
either way, the period kept in every link, the streamed exports, and the charts."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from auditor.auditor_support import link, november, seed_request, seqs, serve
from store_backends import backends, throwaway_database

from devstack.ledgerfill import START, fill, record_of
from gdpr_erasure.auditor import app as auditor_app
from gdpr_erasure.auditor.app import create_app
from gdpr_erasure.hashing import load_hash_key
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.ledger.export import GDPR_DEADLINE, write_export
from gdpr_erasure.store import ComplianceStore

RECORDS = 237  # four full pages of 50 and a short one


@pytest.fixture(params=backends())
def site(request, tmp_path):
    with throwaway_database(request.param, tmp_path, prefix="gdpr_auditor") as url:
        store = ComplianceStore.from_url(url)
        store.init_db()
        fill(store, RECORDS, load_hash_key())
        app = create_app(store_factory=lambda: store, user_dependency=lambda: "auditor")
        try:
            with serve(app) as base:
                yield base, store
        finally:
            store.dispose()


def _walk(start: str, direction: str) -> list[list[int]]:
    """Follow the ``direction`` links (``page-next`` or ``page-previous``) from ``start``; the
    records of each page visited, in the order visited."""
    pages, url = [], start
    while url is not None:
        assert len(pages) < 50, "the pager loops"
        response = requests.get(url, timeout=30)
        assert response.status_code == 200, response.text
        pages.append(seqs(response.text))
        url = link(url, response.text, direction)
    return pages


def test_next_links_visit_every_record_once(site):
    base, _ = site
    first = requests.get(f"{base}/", timeout=30).text
    assert "records 1&ndash;50 of 237" in first
    assert link(f"{base}/", first, "page-previous") is None  # nothing before the first page
    pages = _walk(f"{base}/", "page-next")
    assert [len(p) for p in pages] == [50, 50, 50, 50, 37]
    visited = [seq for page in pages for seq in page]
    assert visited == list(range(1, RECORDS + 1))


def test_previous_links_from_the_last_page_visit_every_record_once(site):
    base, _ = site
    last_url = link(f"{base}/", requests.get(f"{base}/", timeout=30).text, "page-last")
    assert last_url is not None
    last = requests.get(last_url, timeout=30).text
    assert "records 188&ndash;237 of 237" in last
    assert link(last_url, last, "page-next") is None
    pages = _walk(last_url, "page-previous")
    assert [len(p) for p in pages] == [50, 50, 50, 50, 37]  # cut from the end: the first is short
    visited = sorted(seq for page in pages for seq in page)
    assert visited == list(range(1, RECORDS + 1))


def test_the_period_is_kept_in_every_page_link(site):
    base, _ = site
    # Records are written every 7 minutes from START (include/devstack/ledgerfill.py).
    since, until = START + timedelta(minutes=7 * 60), START + timedelta(minutes=7 * 200)
    start = (
        f"{base}/?since={since.isoformat().replace('+', '%2B')}&until={until.isoformat().replace('+', '%2B')}"
    )
    page = requests.get(start, timeout=30).text
    assert "of 140" in page
    for link_id in ("page-next", "page-last"):
        target = link(start, page, link_id)
        assert target is not None
        assert "since=2025-01-06T07%3A00%3A00%2B00%3A00" in target, target
        assert "until=" in target
    visited = [seq for p in _walk(start, "page-next") for seq in p]
    assert visited == list(range(60, 200))
    # The export buttons export that period.
    exported = requests.get(link(start, page, "export-csv"), timeout=30).text
    assert [int(row["seq"]) for row in csv.DictReader(io.StringIO(exported))] == list(range(60, 200))


def test_page_size_and_cursors(site):
    base, _ = site
    page = requests.get(f"{base}/", params={"limit": 100}, timeout=30).text
    assert seqs(page) == list(range(1, 101))
    assert "limit=100" in link(f"{base}/", page, "page-next")
    for bad in (0, 501, -1):
        assert requests.get(f"{base}/", params={"limit": bad}, timeout=30).status_code == 422
    beyond = requests.get(f"{base}/", params={"after": 10_000}, timeout=30)
    assert beyond.status_code == 200
    assert seqs(beyond.text) == []
    assert "no records on this page (237 in the period)" in beyond.text
    between = requests.get(f"{base}/", params={"after": 10, "before": 15}, timeout=30).text
    assert seqs(between) == [11, 12, 13, 14]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_the_export_streams_every_record_as_the_cli_writes_them(site, fmt, monkeypatch):
    base, store = site
    monkeypatch.setattr(auditor_app, "EXPORT_CHUNK", 40)  # several chunks and a partial one
    response = requests.get(f"{base}/export", params={"format": fmt}, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="gdpr-audit.{fmt}"'
    expected = io.StringIO()
    write_export(store.audit_entries_between(), fmt, expected)
    assert response.text == expected.getvalue()
    if fmt == "json":
        assert [item["seq"] for item in json.loads(response.text)] == list(range(1, RECORDS + 1))


def test_the_page_has_export_buttons_and_the_charts(site):
    base, _ = site
    page = requests.get(f"{base}/", timeout=30).text
    assert 'id="export-csv" href="export?format=csv"' in page
    assert 'id="export-json" href="export?format=json"' in page
    key = load_hash_key()
    records = [record_of(n, key) for n in range(1, RECORDS + 1)]
    # Requests completed per ISO week: one bar per week, titled with its count.
    weeks = Counter("{}-W{:02d}".format(*completed.isocalendar()[:2]) for _, _, completed in records)
    bars = re.findall(r"<title>(\d{4}-W\d{2}): (\d+) completed</title>", page)
    assert {week: int(n) for week, n in bars} == weeks
    # Time to complete against the 30-day limit: the line, and the count and share in words.
    assert 'id="chart-deadline"' in page and 'id="deadline-line"' in page
    late = sum(completed - received > GDPR_DEADLINE for _, received, completed in records)
    assert late > 0
    assert f"{late} of {RECORDS} request(s) ({late / RECORDS:.1%}) took longer than 30 days" in page
    assert "<script" not in page  # server-drawn SVG, nothing to download or run


def test_weeks_without_completions_are_drawn_as_zero(tmp_path):
    store = ComplianceStore.from_url(f"sqlite:///{tmp_path / 'weeks.db'}")
    store.init_db()
    key = load_hash_key()
    # Completed (received + takes) on 5 November twice (ISO week 45), on 21 November after 34
    # days (week 47, over the limit) and on 16 November (week 47); none in week 46.
    for n, (received, takes) in enumerate(
        [(november(2), 3), (november(3), 2), (datetime(2026, 10, 18, tzinfo=UTC), 34)]
    ):
        identifiers = SubjectIdentifiers.parse(email=f"week{n}@example.com")
        seed_request(store, key, f"req-w{n}", identifiers, received_at=received, takes=timedelta(days=takes))
    seed_request(
        store,
        key,
        "req-w3",
        SubjectIdentifiers.parse(email="w3@example.com"),
        received_at=november(16, 9),
        takes=timedelta(hours=5),
    )
    with serve(create_app(store_factory=lambda: store, user_dependency=lambda: "auditor")) as base:
        page = requests.get(f"{base}/", timeout=30).text
    bars = re.findall(r"<title>(\d{4}-W\d{2}): (\d+) completed</title>", page)
    assert bars == [("2026-W45", "2"), ("2026-W46", "0"), ("2026-W47", "2")]
    assert "1 of 4 request(s) (25.0%) took longer than 30 days" in page
    assert page.count("(over the limit)</title>") == 1  # the one red dot
