"""Conversations outside the account's default Conversation Service are erased and proven.

``/v1/Conversations`` and ``/v1/ParticipantConversations`` reach only the default service; the
sandbox's ``other_service`` person talks to the company through a second service. Before the
fix, the pipeline listed nothing there (and a delete on the default path answered 404, counted
as "already absent"), so the request completed with the conversations still in place.
"""

from __future__ import annotations

import pytest

from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.store import RequestStatus


def test_conversations_in_another_service_are_deleted_and_proven(pipeline):
    pipeline.submit("other_service")
    assert pipeline.sandbox.state("other_service")["twilio"]["participations"] == 2
    assert pipeline.run().state == "success"

    assert pipeline.sandbox.state("other_service")["twilio"]["participations"] == 0
    record = pipeline.audit()["req-other_service"]["twilio"]
    assert record["history_deleted"]["conversations"] == 2
    assert record["history_remaining_after"]["conversations"] == 0
    deletes = [
        r
        for r in pipeline.sandbox.requests_log()
        if r["method"] == "DELETE" and "Conversations" in r["route"] and r["status"] == 204
    ]
    assert {r["route"] for r in deletes} == {"/v1/Services/{ChatServiceSid}/Conversations/{Sid}"}
    assert all(r.get("webhook_enabled") == "false" for r in deletes)


@pytest.mark.parametrize("pipeline", [{"GDPR_ERASURE_RETRY_DELAY_SECONDS": "0.1"}], indirect=True)
def test_the_proof_fails_when_a_conversation_is_left(pipeline, monkeypatch):
    """The erasure's proof is a second inventory over every service. If a conversation survives
    (here: deletes sent to the default-service path, the old behaviour), the request fails with
    the reason instead of completing."""

    def delete_on_default_path(self, chat_service_sid, conversation_sid):
        return self._delete_without_webhooks("delete conversation", f"/Conversations/{conversation_sid}")

    monkeypatch.setattr(TwilioHook, "delete_conversation", delete_on_default_path)
    pipeline.submit("other_service")
    assert pipeline.run().state == "failed"

    request = pipeline.store.get("req-other_service")
    assert request.status is RequestStatus.FAILED
    assert "erase_twilio_history" in request.last_error
    assert pipeline.audit() == {}
    assert pipeline.sandbox.state("other_service")["twilio"]["participations"] == 2
    history = pipeline.store.steps("req-other_service")["erase_twilio_history"].result
    assert history["remaining_after"]["conversations"] == 2
