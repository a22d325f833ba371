"""A run signs a tree head over its records and publishes it; the evidence survives the owner of
the compliance database: a deleted record fails ``audit verify`` against the witness, and a
receipt issued before fails against the head signed after."""

from __future__ import annotations

import json
import os
import re

from sqlalchemy import select

from gdpr_erasure.cli import main
from gdpr_erasure.ledger.log import Ledger
from gdpr_erasure.ledger.witness import Witness
from gdpr_erasure.store.schema import audit_log, ledger_heads


def _witness_uri() -> str:
    return json.loads(os.environ["AIRFLOW_CONN_GDPR_LEDGER_WITNESS"])["extra"]["uri"]


def _cli(*args: str) -> int:
    return main(list(args))


def test_a_run_signs_and_publishes_a_head_and_receipts_prove_inclusion(pipeline, tmp_path, capsys):
    ids = pipeline.submit("person-002", "no_stripe", "multi_stripe")
    assert pipeline.run().state == "success"
    heads = Witness(_witness_uri()).heads()
    assert heads and heads[-1].tree_size == len(ids)
    assert Ledger(pipeline.store).latest_head() == heads[-1]

    url = os.environ["GDPR_COMPLIANCE_DB_URL"]
    assert _cli("audit", "--db-url", url, "verify") == 0
    # One head per write_ledger_record task: per request in a small run (batch_size auto).
    assert f"{len(heads)} published head(s) verified" in capsys.readouterr().out

    # A receipt with its inclusion proof, verified offline (the same key signs both here).
    os.environ["AIRFLOW_CONN_GDPR_RECEIPT_KEY"] = os.environ["AIRFLOW_CONN_GDPR_LEDGER_KEY"]
    assert _cli("receipt", "--db-url", url, "issue", ids[1], "--out-dir", str(tmp_path)) == 0
    public = tmp_path / "ledger.pem"
    public.write_text(_public_pem())
    receipt = tmp_path / f"{ids[1]}.receipt.json"
    assert _cli("receipt", "verify", str(receipt), "--public-key", str(public)) == 0
    # Under the head its record was first covered by (one head per write_ledger_record task).
    record, size = map(
        int, re.search(r"record (\d+) is in the signed head of size (\d+)", capsys.readouterr().out).groups()
    )
    assert record <= size <= len(ids)
    del os.environ["AIRFLOW_CONN_GDPR_RECEIPT_KEY"]


def _public_pem() -> str:
    from gdpr_erasure.receipts import load_signing_key

    return load_signing_key().public_pem()


def test_a_deleted_record_fails_verify_and_the_receipt_against_a_later_head(pipeline, tmp_path, capsys):
    ids = pipeline.submit("person-002", "no_stripe")
    assert pipeline.run().state == "success"
    url = os.environ["GDPR_COMPLIANCE_DB_URL"]
    key = os.environ["AIRFLOW_CONN_GDPR_LEDGER_KEY"]
    os.environ["AIRFLOW_CONN_GDPR_RECEIPT_KEY"] = key
    try:
        victim = ids[0]
        assert _cli("receipt", "--db-url", url, "issue", victim, "--out-dir", str(tmp_path)) == 0
        public = tmp_path / "ledger.pem"
        public.write_text(_public_pem())

        # The owner removes the record, renumbers the rest, wipes the stored heads so the next
        # head is signed over the rewritten ledger, and lets db init recreate the triggers.
        with pipeline.store.engine.begin() as conn:
            for trigger in ("audit_log_no_delete", "audit_log_no_update", "ledger_heads_no_delete"):
                conn.exec_driver_sql(f"DROP TRIGGER {trigger}")
            seq = conn.execute(select(audit_log.c.seq).where(audit_log.c.request_id == victim)).scalar_one()
            conn.execute(audit_log.delete().where(audit_log.c.request_id == victim))
            conn.execute(audit_log.update().where(audit_log.c.seq > seq).values(seq=audit_log.c.seq - 1))
            conn.execute(ledger_heads.delete())
        pipeline.store.init_db()
        capsys.readouterr()

        assert _cli("audit", "--db-url", url, "verify") == 1
        err = capsys.readouterr().err
        assert "do not match the published signed head" in err or "covers more records" in err
        assert f"request {victim} is completed but has no audit record" in err

        pipeline.submit("person-003", "person-004")
        # One batch signs size 3 over the rewritten ledger. (Per-request groups would first sign
        # size 2, which the witness refuses as a fork of its published size 2: caught too, but the
        # task then waits for its retry.)
        assert pipeline.run(batch_size=50).state == "success"
        later = tmp_path / "later.json"
        capsys.readouterr()
        receipt = tmp_path / f"{victim}.receipt.json"
        issued_under = json.loads(receipt.read_text())["receipt"]["ledger"]["tree_head"]["tree_size"]
        # The spelling, --db-url after the subcommand.
        assert _cli("audit", "head", "--db-url", url, "--from-size", str(issued_under)) == 0
        later.write_text(capsys.readouterr().out)
        assert _cli("receipt", "verify", str(receipt), "--public-key", str(public)) == 0
        capsys.readouterr()
        assert _cli("receipt", "verify", str(receipt), "--public-key", str(public), "--head", str(later)) == 1
        assert "does not extend the receipt's" in capsys.readouterr().err
    finally:
        del os.environ["AIRFLOW_CONN_GDPR_RECEIPT_KEY"]
