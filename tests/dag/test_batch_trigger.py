"""The batch trigger against the sandbox: each request of a batch settles on its own, and a
request still waiting at the deadline is handed over as ``pending``."""

from __future__ import annotations

import asyncio
import time

from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.triggers.batch import BatchProofTrigger
from gdpr_erasure.triggers.segment import SegmentRegulationTrigger
from gdpr_erasure.triggers.stripe import StripeCustomerDeletedTrigger


def _first_event(trigger: BatchProofTrigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first())


def test_each_request_settles_on_its_own_and_the_slow_one_is_pending_at_the_deadline(
    sandbox, api_connections
):
    person = sandbox.person("person-002")
    running = SegmentHook().create_regulation([person["segment_user_id"]])  # 2 s in the sandbox
    trigger = BatchProofTrigger.of(
        {
            "req-gone": StripeCustomerDeletedTrigger(["cus_NoSuchCustomer01"]),
            "req-bad-regulation": SegmentRegulationTrigger("no-such-regulation"),
            "req-slow": SegmentRegulationTrigger(running),
        },
        poll_interval=0.2,
        deadline=time.time() + 0.5,  # before the regulation finishes
    )

    payload = _first_event(trigger)

    assert payload["status"] == "settled"
    outcomes = payload["outcomes"]
    assert outcomes["req-gone"]["state"] == "done"
    # The trigger proves customers this pipeline deleted: a 404 for one is proof, named as such.
    proof = outcomes["req-gone"]["evidence"]["customers"]["cus_NoSuchCustomer01"]
    assert (proof["state"], proof["evidence"]) == ("deleted", "not_found")
    assert outcomes["req-bad-regulation"]["state"] == "failed"
    assert "not found" in outcomes["req-bad-regulation"]["evidence"]["reason"]
    assert outcomes["req-slow"]["state"] == "pending"
    assert outcomes["req-slow"]["evidence"]["regulation_id"] == running


def test_without_a_deadline_it_waits_until_every_request_is_proven(sandbox, api_connections):
    person = sandbox.person("person-002")
    running = SegmentHook().create_regulation([person["segment_user_id"]])
    trigger = BatchProofTrigger.of({"req-slow": SegmentRegulationTrigger(running)}, poll_interval=0.5)

    payload = _first_event(trigger)

    assert payload["outcomes"]["req-slow"]["state"] == "done"
    assert payload["outcomes"]["req-slow"]["evidence"]["status"] == "FINISHED"
    assert payload["polls"] > 1  # it did wait
