"""Signed receipts of a request the erasure policy kept something of, from real runs: the stack as
in production (``airflow dags test`` in its own process, the sandbox, the compliance store, a
ledger key and a witness), the default policy, and the person whose Stripe customer has an open
dispute. The first run erases Twilio and Segment and withholds the customer; its receipt lists
what was kept and verifies offline. Then the dispute is won, time passes to the review date and a
second run reviews it: the customer is deleted, a review entry follows the record, and a receipt
issued now covers the review; the first receipt still verifies against the later head."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from e2e_support import forms, signing_stack

from gdpr_erasure.hashing import stripe_tag
from gdpr_erasure.store import RequestStatus
from gdpr_erasure.store.schema import erasure_requests

PERSON = "open_dispute"
RID = f"req-{PERSON}"


def cli(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
    )


def issue(stack, out) -> dict:
    issued = cli(stack, "receipt", "issue", RID, "--out-dir", str(out))
    assert issued.returncode == 0, issued.stderr
    return json.loads((out / f"{RID}.receipt.json").read_text())["receipt"]


def verify(stack, path, *more: str) -> subprocess.CompletedProcess:
    return cli(stack, "receipt", "verify", str(path), "--public-key", str(stack.root / "receipts.pem"), *more)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """Both runs, with a receipt issued after each; what the tests read."""
    root = tmp_path_factory.mktemp("e2e-exemptions") / "stack"
    with signing_stack(root) as (stack, key):
        (root / "receipts.pem").write_text(key.public_pem())
        person = stack.people[PERSON]
        store = stack.store()
        try:
            assert stack.submit([PERSON]) == [RID]
            assert stack.run_dag("first-run.log") == 0
            first = {"status": store.get(RID).status, "record": store.audit_entry(RID)}
            first["receipt"] = issue(stack, root / "first")
            first["verified"] = verify(stack, root / "first" / f"{RID}.receipt.json")
            size = first["receipt"]["ledger"]["tree_head"]["tree_size"]

            # The dispute is won; time passes to the review date.
            (dispute,) = stack.sandbox.state(PERSON)["stripe"]["disputes"]
            assert stack.sandbox.set_dispute_status(dispute["id"], "won")["status"] == "won"
            with store.engine.begin() as conn_:
                conn_.execute(
                    erasure_requests.update()
                    .where(erasure_requests.c.id == RID)
                    .values(not_before=datetime.now(UTC) - timedelta(seconds=1))
                )
            assert stack.run_dag("review-run.log") == 0
            second = {"status": store.get(RID).status, "review": store.audit_entry(f"{RID}/review/2")}
            second["receipt"] = issue(stack, root / "second")
            second["verified"] = verify(stack, root / "second" / f"{RID}.receipt.json")
            # The first receipt against the head signed after the review, with its consistency proof.
            later = cli(stack, "audit", "head", "--from-size", str(size))
            assert later.returncode == 0, later.stderr
            (root / "later-head.json").write_text(later.stdout)
            first["against_later"] = verify(
                stack, root / "first" / f"{RID}.receipt.json", "--head", str(root / "later-head.json")
            )
            tag = stripe_tag(_hash_key(stack), person["stripe_customer_ids"][0])
            texts = "".join(p.read_text() for p in root.glob("*/*.receipt.json"))
        finally:
            store.dispose()
    return {"first": first, "second": second, "tag": tag, "person": person, "texts": texts}


def _hash_key(stack):
    from gdpr_erasure.hashing import HashKey

    conn = json.loads(stack.env["AIRFLOW_CONN_GDPR_HASH_KEY"])
    return HashKey(key_id=conn["login"], secret=conn["password"].encode())


def test_the_first_run_closes_the_request_with_the_customer_kept_and_its_receipt_says_so(reviewed):
    first, tag = reviewed["first"], reviewed["tag"]
    assert first["status"] is RequestStatus.COMPLETED_WITH_EXEMPTIONS
    receipt = first["receipt"]
    assert receipt["outcome"] == "completed_with_exemptions"
    (kept,) = receipt["kept"]
    assert (kept["system"], kept["kind"], kept["id"], kept["action"], kept["cases"]) == (
        "stripe",
        "stripe.customer",
        tag,
        "withhold",
        ["open_dispute"],
    )
    assert kept["legal_basis"].startswith("Art. 17(3)(e)") and kept["retained_until"] is None
    assert datetime.fromisoformat(kept["review_date"]) > datetime.now(UTC) + timedelta(days=59)
    assert receipt["erased"]["stripe"]["customers"] == {}  # the only customer was kept
    assert receipt["erased"]["segment"]["status"] == "FINISHED"
    assert receipt["statement"][0].startswith("Erased: ") and "Segment profile" in receipt["statement"][0]
    assert receipt["statement"][1].startswith(f"Kept: stripe stripe.customer {tag}, withhold (open_dispute)")
    assert receipt["reviews"] == [] and receipt["audit"]["seq"] == first["record"].seq

    verified = first["verified"]
    assert verified.returncode == 0, verified.stderr
    lines = verified.stdout.splitlines()
    assert (
        lines[0].startswith(f"valid receipt for {RID}") and f"record {first['record'].seq} is in" in lines[0]
    )
    assert lines[1:] == ["outcome: completed_with_exemptions", receipt["statement"][1]]


def test_a_receipt_issued_after_the_review_covers_it_and_both_verify(reviewed):
    first, second, tag = reviewed["first"], reviewed["second"], reviewed["tag"]
    assert second["status"] is RequestStatus.COMPLETED
    review = second["review"]
    assert review.record["follows"] == {
        "seq": first["record"].seq,
        "record_hash": first["record"].record_hash,
    }
    receipt = second["receipt"]
    assert (receipt["outcome"], receipt["kept"], receipt["statement"][-1]) == (
        "completed",
        [],
        "Kept: nothing.",
    )
    customer = receipt["erased"]["stripe"]["customers"][tag]
    assert (customer["outcome"], customer["review"]) == ("deleted", 2)
    assert customer["deleted_evidence"]["state"] == "deleted"
    assert receipt["audit"]["record_hash"] == first["record"].record_hash
    assert [(r["review"], r["seq"], r["record_hash"]) for r in receipt["reviews"]] == [
        (2, review.seq, review.record_hash)
    ]
    verified = second["verified"]
    assert verified.returncode == 0, verified.stderr
    assert f"its latest entry, review 2 (seq {review.seq}), is in the signed head" in verified.stdout
    assert f"follows record {first['record'].seq}" in verified.stdout
    assert "outcome: completed" in verified.stdout.splitlines()
    # The receipt issued before the review still holds: the later head extends its head.
    later = first["against_later"]
    assert later.returncode == 0, later.stderr
    assert "and the later head of size" in later.stdout


def test_the_receipts_hold_no_identifier(reviewed):
    person, texts = reviewed["person"], reviewed["texts"]
    for value in (person["email"], person["phone"], *person["stripe_customer_ids"]):
        assert not [f for f in forms(value) if f in texts]
