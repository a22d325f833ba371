"""Stripe ``cus_`` ids are identifiers: after a run, the ledger, the export, receipts and the closed
request's steps name customers only by their tag, and ``gdpr-erasure hash --stripe-customer``
gives ops the same tag for an id they hold."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from gdpr_erasure import steps
from gdpr_erasure.batch import RequestScope
from gdpr_erasure.hashing import keyed_hash, load_hash_key, stripe_tag
from gdpr_erasure.ledger.export import export_row
from gdpr_erasure.operators.ledger_record import LedgerRecordOperator
from gdpr_erasure.receipts import build_receipt


def test_a_closed_request_names_stripe_customers_by_tag_only(pipeline):
    [request_id] = pipeline.submit("multi_stripe")
    customer_ids = pipeline.sandbox.person("multi_stripe")["stripe_customer_ids"]
    assert len(customer_ids) == 2
    assert pipeline.run().state == "success"

    key = load_hash_key()
    tags = sorted(stripe_tag(key, c) for c in customer_ids)
    entry = pipeline.store.audit_entry(request_id)
    stripe = entry.record["stripe"]
    assert stripe["customer_ids"] == stripe["erased_customer_ids"] == tags
    assert sorted(stripe["customers"]) == sorted(stripe["proof"]["customers"]) == tags
    assert stripe["customer_hmacs"] == {stripe_tag(key, c): keyed_hash(key, c) for c in customer_ids}
    assert all(t.startswith("cus#") and len(t) == 16 for t in tags)

    # Nothing the auditor or the requester gets holds an id.
    receipt = build_receipt(entry)
    assert sorted(receipt["erased"]["stripe"]["customers"]) == tags
    assert all(
        c["deleted_evidence"]["state"] == "deleted" for c in receipt["erased"]["stripe"]["customers"].values()
    )
    row = export_row(entry)
    assert row["stripe_customer_ids"] == " ".join(tags)
    for document in (entry.record, receipt, row):
        assert not any(c in json.dumps(document) for c in customer_ids)

    # The steps kept the ids while the request was open; closed, they hold tags only.
    results = pipeline.store.steps(request_id)
    stored = json.dumps({name: r.result for name, r in results.items()})
    assert not any(c in stored for c in customer_ids)
    # Forgetting the Stripe ids must not bring back the Segment user ids forgotten before it.
    segment = results[steps.RESOLVE].result["segment"]
    user_id = pipeline.sandbox.person("multi_stripe")["segment_user_id"]
    assert segment["user_ids"] == [] and segment["user_ids_hmac"] == [keyed_hash(key, user_id)]
    assert user_id not in stored
    resolved = results[steps.RESOLVE].result["stripe"]
    assert resolved["customer_ids"] == [] and resolved["customer_tags"] == tags
    assert sorted(resolved["matched_by"]) == tags
    assert sorted(results[steps.STRIPE].result["customers"]) == tags
    assert sorted(results[steps.VERIFY_STRIPE].result["customers"]) == tags

    # Forgetting again (a rerun after a crash) changes nothing.
    scope = RequestScope(pipeline.store, request_id, logging.getLogger("test"))
    LedgerRecordOperator._forget_stripe_customer_ids(scope, results, key)
    again = pipeline.store.steps(request_id)
    assert {n: r.result for n, r in again.items()} == {n: r.result for n, r in results.items()}

    # Ops match an id they hold to the tag in the export: the id goes in on stdin, not argv.
    matched = subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", "hash", "--stripe-customer"],
        input="\n".join(customer_ids) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    lines = matched.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [stripe_tag(key, c) for c in customer_ids]
    assert lines[0].split()[1] == f"hmac={keyed_hash(key, customer_ids[0])}"
    assert not any(c in matched.stdout + matched.stderr for c in customer_ids)


def test_the_hash_command_refuses_an_id_on_the_command_line():
    refused = subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", "hash", "--stripe-customer", "cus_OnTheCommandLine1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert "shell history" in refused.stderr
    assert "cus_OnTheCommandLine1" not in refused.stdout + refused.stderr
