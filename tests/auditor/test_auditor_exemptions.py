"""What the erasure policy kept, on the auditor page over real HTTP on a real SQLite store, with
records and review entries built by ``write_ledger_record``'s own builders: an exemptions badge on
the records that keep something, a review listed as a review of its request (never a request of
its own), the drill-down's reviews and what is kept now, and the signed receipt of a request
completed with exemptions, before and after the review that erased what was kept, each verified
offline by ``gdpr-erasure receipt verify``."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
from auditor.auditor_support import (
    LEGAL_BASIS,
    november,
    seed_request,
    seed_review,
    seed_with_exemptions,
    serve,
)

from gdpr_erasure.auditor.app import create_app
from gdpr_erasure.cli import main as cli
from gdpr_erasure.hashing import load_hash_key, stripe_tag
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.ledger.export import period_figures
from gdpr_erasure.receipts import generate_signing_key, sign_receipt
from gdpr_erasure.store import ComplianceStore, RequestStatus

DONE = {"email": "Ada.Lovelace@Example.org", "stripe_customer_id": "cus_AdaLovelace01"}
KEPT = {"email": "Grace.Hopper@Example.org", "phone": "+1 415-555-0199"}
REVIEWED = {"email": "Alan.Turing@Example.org", "stripe_customer_id": "cus_AlanTuring003"}
REVIEW_DATE = datetime.now(UTC) + timedelta(days=30)  # a review that keeps it again: now + 60 days


@pytest.fixture
def store(tmp_path):
    store = ComplianceStore.from_url(f"sqlite:///{tmp_path / 'compliance.db'}")
    store.init_db()
    key = load_hash_key()
    seed_request(store, key, "req-done", SubjectIdentifiers.parse(**DONE), received_at=november(1))
    customers = {}
    for rid, given, day in (("req-kept", KEPT, 2), ("req-reviewed", REVIEWED, 3)):
        customers[rid] = seed_with_exemptions(
            store,
            key,
            rid,
            SubjectIdentifiers.parse(**given),
            received_at=november(day),
            review_date=REVIEW_DATE,
        )
    seed_review(store, key, "req-reviewed", customers["req-reviewed"][1], erase=True)
    store.customers = customers  # the (deleted, withheld) cus_ ids of each request
    yield store
    store.dispose()


@pytest.fixture
def site(store):
    with serve(create_app(store_factory=lambda: store, user_dependency=lambda: "auditor")) as url:
        yield url


@pytest.fixture
def keys(tmp_path, monkeypatch):
    """The receipt key in ``gdpr_receipt_key`` and the ledger's in ``gdpr_ledger_key``: a receipt
    whose entry no head covers yet signs one first, as ``receipt issue`` does. The receipt key
    and the public keys' files."""
    receipts, receipts_pem = generate_signing_key("test-receipts")
    ledger, ledger_pem = generate_signing_key("test-ledger")
    for conn_id, (key, pem) in {"RECEIPT": (receipts, receipts_pem), "LEDGER": (ledger, ledger_pem)}.items():
        monkeypatch.setenv(
            f"AIRFLOW_CONN_GDPR_{conn_id}_KEY",
            json.dumps({"conn_type": "generic", "login": key.key_id, "password": pem}),
        )
    (tmp_path / "receipts.pem").write_text(receipts.public_pem())
    (tmp_path / "ledger.pem").write_text(ledger.public_pem())
    return receipts, tmp_path / "receipts.pem", tmp_path / "ledger.pem"


def tag(customer_id: str) -> str:
    return stripe_tag(load_hash_key(), customer_id)


def record_rows(page: str) -> dict[str, str]:
    """Each row of the records list by its seq."""
    table = re.search(r'<table id="records">.*?</table>', page, re.S).group(0)
    return dict(re.findall(r'<tr[^>]*data-seq="(\d+)">(.*?)</tr>', table, re.S))


def verify(path, keys, capsys) -> tuple[int, str, str]:
    """``gdpr-erasure receipt verify FILE`` with the receipt and ledger keys: exit code, out, err."""
    _, receipts_pem, ledger_pem = keys
    capsys.readouterr()
    code = cli(
        [
            "receipt",
            "verify",
            str(path),
            "--public-key",
            str(receipts_pem),
            "--ledger-public-key",
            str(ledger_pem),
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def download(site: str, rid: str, tmp_path):
    response = requests.get(f"{site}/request/{rid}/receipt", timeout=30)
    assert response.status_code == 200, response.text
    path = tmp_path / f"{rid}.receipt.json"
    path.write_bytes(response.content)
    return path, response.json()["receipt"]


def test_records_with_exemptions_have_a_badge_and_reviews_are_rows_of_their_request(site, store):
    page = requests.get(f"{site}/", timeout=10).text
    entries = {e.request_id: e for e in store.audit_entries()}
    rows = record_rows(page)
    assert len(rows) == 4  # three records and one review: no request named req-reviewed/review/2

    kept = rows[str(entries["req-kept"].seq)]
    withheld = tag(store.customers["req-kept"][1])
    badge = re.search(r'<span class="badge" title="([^"]*)">([^<]*)</span>', kept)
    assert badge.group(2) == "1 kept"
    assert html.unescape(badge.group(1)) == f"{withheld} withhold open_dispute review {REVIEW_DATE.date()}"
    assert 'class="badge"' not in rows[str(entries["req-done"].seq)]

    review = entries["req-reviewed/review/2"]
    row = re.search(rf'<tr class="review" data-seq="{review.seq}">(.*?)</tr>', page, re.S).group(1)
    first = entries["req-reviewed"].seq
    erased = tag(store.customers["req-reviewed"][1])
    assert (
        f'Review 2 of request <a href="request/req-reviewed">req-reviewed</a> (follows record #{first}, '
        f"checked {erased}): completed; nothing kept any more"
    ) in row
    assert "review%2F2" not in page and "request/req-reviewed/review" not in page
    # The record of the reviewed request still shows what it kept then: records are never rewritten.
    assert "1 kept" in rows[str(first)]

    # The period's figures count the exemptions apart from plain completions.
    cards = dict(
        (label, int(value)) for value, label in re.findall(r"<b>(\d+)</b><span>([^<]+)</span>", page)
    )
    figures = period_figures(store)
    assert cards["Completed with exemptions"] == figures["completed_with_exemptions"] >= 1
    assert cards["Objects kept"] == figures["kept_objects"] >= 1
    assert cards["Completed"] == figures["completed"]

    api = requests.get(f"{site}/api/records", timeout=10).json()["records"]
    as_review = next(r for r in api if r["kind"] == "review")
    assert (as_review["request_id"], as_review["review"], as_review["follows_seq"]) == (
        "req-reviewed",
        2,
        first,
    )
    assert (as_review["outcome"], as_review["kept"]) == ("completed", "")


def test_the_drill_down_lists_the_reviews_and_what_is_kept_now(site, store):
    page = requests.get(f"{site}/request/req-reviewed", timeout=10).text
    erased = tag(store.customers["req-reviewed"][1])
    reviews = re.search(r'<table id="reviews">.*?</table>', page, re.S).group(0)
    review = store.audit_entry("req-reviewed/review/2")
    assert re.search(
        rf"<td>2</td><td[^>]*>[^<]+</td><td>{review.seq}</td><td>completed</td><td>{erased}</td><td>nothing</td>",
        reviews,
    )
    assert "Review 2 entry written" in page
    # What is kept now is the review's: nothing of the policy's any more.
    kept = re.search(r'<ul id="kept">(.*?)</ul>', page, re.S).group(1)
    assert "withhold" not in kept
    assert 'id="receipt-download" href="req-reviewed/receipt"' in page

    waiting = requests.get(f"{site}/request/req-kept", timeout=10).text
    withheld = tag(store.customers["req-kept"][1])
    assert f"Stripe {withheld}: withhold by the erasure policy (open_dispute), reviewed from" in waiting
    assert 'id="reviews"' not in waiting
    assert 'id="receipt-download" href="req-kept/receipt"' in waiting  # with exemptions too
    for text in (page, waiting):
        for cid in (*store.customers["req-kept"], *store.customers["req-reviewed"]):
            assert cid not in text


def test_a_request_completed_with_exemptions_gets_a_receipt_that_lists_what_was_kept(
    site, store, keys, tmp_path, capsys
):
    path, receipt = download(site, "req-kept", tmp_path)
    deleted, withheld = (tag(c) for c in store.customers["req-kept"])
    assert receipt["schema"] == "gdpr-erasure-receipt/2"
    assert receipt["outcome"] == "completed_with_exemptions"
    (kept,) = receipt["kept"]
    assert kept == {
        "system": "stripe",
        "kind": "stripe.customer",
        "id": withheld,
        "action": "withhold",
        "cases": ["open_dispute"],
        "reason": "a payment of the customer is disputed; withheld: no write to it until its review date",
        "legal_basis": LEGAL_BASIS,
        "review_date": REVIEW_DATE.isoformat(),
        "retained_until": None,
    }
    # Erased is what was erased: the withheld customer is not there.
    assert set(receipt["erased"]["stripe"]["customers"]) == {deleted}
    assert receipt["statement"] == [
        f"Erased: 1 Twilio Memory profile(s); Twilio history (calls 1, messages 3); Segment profile "
        f"(regulation regSeed01, FINISHED); Stripe customer {deleted} (deleted).",
        f"Kept: stripe stripe.customer {withheld}, withhold (open_dispute): a payment of the customer is "
        f"disputed; withheld: no write to it until its review date; legal basis: {LEGAL_BASIS}; reviewed "
        f"again from {REVIEW_DATE.date()}.",
    ]
    assert receipt["reviews"] == [] and receipt["policy"]["source"] == "default.yaml"
    for cid in store.customers["req-kept"]:
        assert cid not in path.read_text()

    code, out, err = verify(path, keys, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("valid receipt for req-kept")
    assert f"record {store.audit_entry('req-kept').seq} is in the signed head" in lines[0]
    assert lines[1:] == ["outcome: completed_with_exemptions", receipt["statement"][1]]


def test_a_receipt_issued_after_a_review_covers_the_review_and_names_the_record(
    store, keys, tmp_path, capsys, monkeypatch
):
    url = str(store.engine.url)
    assert cli(["receipt", "--db-url", url, "issue", "req-reviewed", "--out-dir", str(tmp_path)]) == 0
    path = tmp_path / "req-reviewed.receipt.json"
    receipt = json.loads(path.read_text())["receipt"]
    record, review = store.audit_entry("req-reviewed"), store.audit_entry("req-reviewed/review/2")
    deleted, withheld = (tag(c) for c in store.customers["req-reviewed"])

    assert (receipt["outcome"], receipt["kept"]) == ("completed", [])
    assert receipt["statement"][-1] == "Kept: nothing."
    assert receipt["erased"]["stripe"]["customers"] == {
        deleted: {"outcome": "deleted", "deleted_evidence": {"state": "deleted", "evidence": "deleted_stub"}},
        withheld: {
            "outcome": "deleted",
            "deleted_evidence": {"state": "deleted", "evidence": "deleted_stub"},
            "review": 2,
        },
    }
    assert f"Stripe customer {withheld} (deleted at review 2)" in receipt["statement"][0]
    # The proof is the latest entry's; the record and the review are named by seq and hash.
    assert receipt["audit"] == {
        "seq": record.seq,
        "record_hash": record.record_hash,
        "prev_hash": record.prev_hash,
    }
    assert [(r["review"], r["seq"], r["record_hash"], r["outcome"]) for r in receipt["reviews"]] == [
        (2, review.seq, review.record_hash, "completed")
    ]
    assert receipt["ledger"]["leaf"]["request_id"] == "req-reviewed/review/2"

    code, out, err = verify(path, keys, capsys)
    assert code == 0, err
    assert (
        f"its latest entry, review 2 (seq {review.seq}), is in the signed head of size {review.seq} and "
        f"follows record {record.seq}"
    ) in out
    assert "outcome: completed" in out
    assert re.search(rf"review 2 \(audit seq {review.seq}, [^)]+\): completed", out)

    # --all issues one receipt per request, never one for a review entry.
    everything = tmp_path / "all"
    assert cli(["receipt", "--db-url", url, "issue", "--all", "--out-dir", str(everything)]) == 0
    assert sorted(p.name for p in everything.rglob("*.json")) == [
        "req-done.receipt.json",
        "req-kept.receipt.json",
        "req-reviewed.receipt.json",
    ]
    assert store.get("req-reviewed").status is RequestStatus.COMPLETED


def test_a_receipt_that_states_other_exemptions_than_its_ledger_entry_fails(site, keys, tmp_path, capsys):
    """The receipt's own signature cannot vouch for what it says was kept: its ledger entry must
    say the same, and the entry must be the one it names."""
    receipts_key, _, _ = keys
    path, receipt = download(site, "req-kept", tmp_path)
    lies = {
        "states another outcome or other kept objects than its ledger entry": {
            **receipt,
            "kept": [],
            "outcome": "completed",
        },
        "does not hash to the record hash it names": {
            **receipt,
            "audit": {**receipt["audit"], "record_hash": "0" * 64},
        },
        "is about another record": {**receipt, "request_id": "req-done"},
    }
    for why, content in lies.items():
        path.write_text(json.dumps(sign_receipt(content, receipts_key)))  # a signer who lies
        code, _, err = verify(path, keys, capsys)
        assert code == 1, why
        assert err.startswith("INVALID: ") and why in err


def test_a_review_that_keeps_the_customer_again_is_in_the_receipt_with_its_new_review_date(
    store, keys, tmp_path, capsys
):
    key = load_hash_key()
    deleted, withheld = seed_with_exemptions(
        store,
        key,
        "req-again",
        SubjectIdentifiers.parse(email="Mary.Somerville@Example.org"),
        received_at=november(4),
        review_date=REVIEW_DATE,
    )
    review = seed_review(store, key, "req-again", withheld, erase=False)
    url = str(store.engine.url)
    assert cli(["receipt", "--db-url", url, "issue", "req-again", "--out-dir", str(tmp_path)]) == 0
    receipt = json.loads((tmp_path / "req-again.receipt.json").read_text())["receipt"]
    (kept,) = receipt["kept"]
    assert receipt["outcome"] == "completed_with_exemptions"
    assert kept["id"] == tag(withheld) and kept["review_date"] == review.record["kept"][0]["review_date"]
    assert kept["review_date"] != REVIEW_DATE.isoformat()  # the review set the next one
    assert set(receipt["erased"]["stripe"]["customers"]) == {tag(deleted)}
