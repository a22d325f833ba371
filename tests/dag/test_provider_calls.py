"""Provider calls per request (issue 16): the same proofs with fewer calls.

Each test runs the DAG for one sandbox person and counts, in the sandbox's request log, the calls
a change saves: a list query that found nothing is not asked again as proof, open invoices are one
listing, a given Stripe id the email listing returned is not retrieved again, and a Segment
identifier a found profile already carries is not looked up again. Each also checks that what
proves the erasure is still asked.
"""

from __future__ import annotations

import collections

from gdpr_erasure.hooks import twilio as twilio_hook
from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.operators.resolve import IdentityResolutionOperator

MESSAGES = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
CALLS = "/2010-04-01/Accounts/{AccountSid}/Calls.json"
PARTICIPATIONS = "/v1/Services/{ChatServiceSid}/ParticipantConversations"
CUSTOMER = "/v1/customers/{customer}"
EXTERNAL_IDS = "/v1/spaces/{space_id}/collections/{collection}/profiles/{identifier}/external_ids"


#: The GETs of the run's preflight (``check_providers``), made once per run whatever its size.
PREFLIGHT = collections.Counter(
    {
        "/v1/account": 1,
        "/v1/customers": 1,
        "/2010-04-01/Accounts/{Sid}.json": 1,
        "/v1/ControlPlane/Stores/{storeId}": 1,
        "/v1/Services": 1,
        "/regulations": 1,
        EXTERNAL_IDS: 2,  # an id nobody has, and the check_user_id profile
    }
)


def _erase(pipeline, key: str) -> collections.Counter:
    """Run the DAG for ``key``; the GETs it made by route, the preflight's taken out."""
    pipeline.submit(key)
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"
    assert pipeline.store.get(f"req-{key}").status.value == "completed"
    gets = collections.Counter(r["route"] for r in pipeline.sandbox.requests_log() if r["method"] == "GET")
    assert gets & PREFLIGHT == PREFLIGHT, gets
    return gets - PREFLIGHT


def test_queries_that_found_nothing_are_not_asked_again(pipeline, monkeypatch):
    """quiet_phone has no messages, calls or conversations: each query is asked once (the first
    inventory), and the step is still proven empty."""
    monkeypatch.setattr(twilio_hook, "_services_listed", {})  # no listing left by an earlier test
    gets = _erase(pipeline, "quiet_phone")
    services = 2  # the account's default Conversation Service and a second one
    assert gets[MESSAGES] == 2  # To, From: nothing found, nothing asked again
    assert gets[CALLS] == 2
    assert gets[PARTICIPATIONS] == 2 * services  # by phone and by email, in each service
    assert gets["/v1/Services"] == 1  # the step's: the account's services, shared by a batch's requests
    history = pipeline.store.steps("req-quiet_phone")["erase_twilio_history"].result
    assert history["found"] == history["remaining_after"] == dict.fromkeys(history["found"], 0)
    assert history["conversation_services_searched"] == services


def test_queries_that_found_something_are_asked_again_as_proof(pipeline):
    """many_messages has messages both ways and calls: those queries are asked twice (found, then
    proven empty); the conversation queries that found nothing only once."""
    state = pipeline.sandbox.state("many_messages")["twilio"]
    gets = _erase(pipeline, "many_messages")
    assert gets[MESSAGES] == 4  # To and From, each listed and then proven empty, one page each
    assert 3 <= gets[CALLS] <= 4  # the directions that had calls are proven empty
    assert gets[PARTICIPATIONS] == 4 + 1  # the one lookup that found the conversation, again
    assert pipeline.sandbox.state("many_messages")["twilio"]["messages"] == 0 < state["messages"]
    history = pipeline.store.steps("req-many_messages")["erase_twilio_history"].result
    assert history["deleted"]["messages"] == state["messages"]
    assert not any(history["remaining_after"].values())


def test_stripe_and_segment_reads_are_not_repeated(pipeline):
    """person-002: the given customer is the email listing's (not retrieved at resolve), its open
    invoices are one listing, its Segment profile found by email carries the phone (not looked up
    again); the live state and the proof still read the customer."""
    person = pipeline.sandbox.person("person-002")
    assert person["stripe_customer_ids"] and person["segment_id"]
    gets = _erase(pipeline, "person-002")
    assert gets[CUSTOMER] == 2  # the live state before the tag, the proof after the delete
    assert gets["/v1/invoices"] == 1
    assert gets["/v1/customers"] == 1  # the email listing (one spelling: the email is lower case)
    assert gets[EXTERNAL_IDS] == 1  # by email; the phone is on that profile
    resolved = pipeline.store.steps("req-person-002")["resolve"].result
    assert list(resolved["stripe"]["matched_by"].values()) == ["given"]  # kept by its tag once closed
    assert resolved["segment"]["segment_ids"] == [person["segment_id"]]
    proof = pipeline.store.steps("req-person-002")["verify_stripe"].result
    assert [c["evidence"] for c in proof["customers"].values()] == ["deleted_stub"]


def test_a_batchs_requests_share_each_threads_hooks(pipeline, monkeypatch):
    """The requests a worker thread takes share its hooks, so their SDK client and HTTP
    connection (one TLS handshake per thread and provider, not per request)."""
    built = collections.Counter()
    for hook_class in (StripeHook, TwilioHook, SegmentHook):
        original = hook_class.__init__

        def counting(self, *args, _original=original, _name=hook_class.__name__, **kwargs):
            built[_name] += 1
            _original(self, *args, **kwargs)

        monkeypatch.setattr(hook_class, "__init__", counting)
    ids = pipeline.submit("person-001", "person-002", "person-003", "person-005", "no_stripe")
    operator = IdentityResolutionOperator(task_id="resolve_identity", request_ids=ids, max_concurrency=2)
    assert operator.execute({}) == {"requests": 5, "ok": 5}
    assert all(pipeline.store.steps(rid)["resolve"].status.value == "done" for rid in ids)
    assert set(built) == {"StripeHook", "TwilioHook", "SegmentHook"}
    assert max(built.values()) <= 2, built  # one per thread (two threads), not one per request (five)
    assert not hasattr(operator, "_thread_hooks")  # they end with the task
