"""The hold lifecycle through real runs of the DAG against the sandbox: a hold placed with the
command line keeps the claim from taking the person's request and the providers from seeing any
write for them, the run stays green; releasing it sends the request back to pending and the next
run erases and audits it; the ledger records both moves and verifies. A hold placed between the
claim and the writes (right after resolve) stops every erasure step for that person alone."""

from __future__ import annotations

import csv
import io

from devstack.localstack import person_identifiers
from gdpr_erasure.cli import main as cli
from gdpr_erasure.holds import place_hold
from gdpr_erasure.operators.resolve import IdentityResolutionOperator
from gdpr_erasure.store import RequestStatus, StepStatus

S = RequestStatus
ERASURES = ("erase_twilio_profile", "erase_twilio_history", "erase_segment", "erase_stripe")


def _erased(state: dict) -> bool:
    return (
        all(c["deleted"] for c in state["stripe"]["customers"])
        and state["twilio"]["messages"] == 0
        and state["memory"]["profile_present"] is False
    )


def test_a_hold_by_email_blocks_the_claim_and_its_release_lets_the_erasure_finish(
    pipeline, monkeypatch, capsys
):
    (rid,) = pipeline.submit("person-002")
    email = person_identifiers(pipeline.sandbox.person("person-002")).email_as_given
    before = pipeline.sandbox.state("person-002")
    assert not _erased(before)

    # Placed like ops do: the email on stdin, never in argv.
    monkeypatch.setattr("sys.stdin", io.StringIO(email + "\n"))
    assert cli(["hold", "place", "--email", "--reason", "LEGAL-42 litigation hold", "--by", "ops"]) == 0
    hold_id = capsys.readouterr().out.strip()
    assert hold_id.startswith("hold-")
    assert pipeline.store.get(rid).status is S.ON_HOLD

    pipeline.sandbox.clear_requests_log()
    run = pipeline.run()
    assert run.state == "success"  # a held request is no failure
    assert pipeline.store.get(rid).status is S.ON_HOLD
    assert pipeline.store.steps(rid) == {}  # never claimed, never resolved
    assert pipeline.side_effects() == {}  # the providers saw no write at all
    assert pipeline.sandbox.state("person-002") == before
    assert [e.record["action"] for e in pipeline.store.audit_entries()] == ["placed"]

    assert cli(["hold", "release", hold_id, "--reason", "LEGAL-42 settled", "--by", "ops"]) == 0
    assert f"{hold_id} released; 1 request(s) back to pending: {rid}" in capsys.readouterr().out
    assert pipeline.store.get(rid).status is S.PENDING

    assert pipeline.run().state == "success"
    assert pipeline.store.get(rid).status is S.COMPLETED
    assert _erased(pipeline.sandbox.state("person-002"))
    entries = pipeline.store.audit_entries()
    assert [(e.kind, e.request_id) for e in entries] == [
        ("hold", f"{hold_id}/placed"),
        ("hold", f"{hold_id}/released"),
        ("erasure", rid),
    ]
    # The hold's target is the email's keyed hash the erasure record carries for the same person.
    subject = entries[2].record["subject"]
    assert entries[0].record["target"] == subject["identifier_hashes"]["email"]
    assert cli(["audit", "verify"]) == 0
    assert "audit ledger intact: 3 record(s)" in capsys.readouterr().out
    assert cli(["audit", "export", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["kind"], r["hold_action"], r["request_id"]) for r in rows] == [
        ("hold", "placed", ""),
        ("hold", "released", ""),
        ("erasure", "", rid),
    ]
    assert email.lower() not in "".join(e.record_json for e in entries).lower()


def test_a_hold_placed_after_the_claim_stops_every_write_for_that_person(pipeline, monkeypatch):
    held, other = pipeline.submit("person-002", "person-004")
    email = person_identifiers(pipeline.sandbox.person("person-002")).email
    before = pipeline.sandbox.state("person-002")
    placed = []
    resolve = IdentityResolutionOperator.process

    def resolve_then_hold(self, request, context):
        """resolve_identity as it is, then ops place a hold: after the claim, before any write."""
        result = resolve(self, request, context)
        if request.id == held:
            change = place_hold(request.store, reason="LEGAL-43 court order", placed_by="ops", email=email)
            placed.append(change.hold.hold_id)
        return result

    monkeypatch.setattr(IdentityResolutionOperator, "process", resolve_then_hold)
    run = pipeline.run()
    assert run.state == "success"
    assert placed and pipeline.store.get(held).status is S.ON_HOLD
    assert pipeline.store.get(other).status is S.COMPLETED
    steps = pipeline.store.steps(held)
    assert set(steps) == {"resolve"}  # resolved (read-only) before the hold, nothing erased after
    assert pipeline.sandbox.state("person-002") == before
    assert _erased(pipeline.sandbox.state("person-004"))
    # Each erasure task of the held request's group ran, found the hold, and succeeded.
    tasks = {
        ti.task_id: ti
        for ti in run.get_task_instances()
        if ti.task_id.split(".")[-1] in ERASURES and ti.rendered_map_index == held
    }
    assert set(tasks) == {f"erase_batch.{name}" for name in ERASURES}
    assert all(ti.state == "success" for ti in tasks.values())

    monkeypatch.setattr(IdentityResolutionOperator, "process", resolve)
    assert cli(["hold", "release", placed[0], "--reason", "LEGAL-43 lifted", "--by", "ops"]) == 0
    assert pipeline.run().state == "success"
    assert pipeline.store.get(held).status is S.COMPLETED
    assert _erased(pipeline.sandbox.state("person-002"))
    assert pipeline.store.steps(held)["resolve"].status is StepStatus.DONE
    audit = pipeline.audit()
    assert audit[held]["outcome"] == "completed"
    assert cli(["audit", "verify"]) == 0
