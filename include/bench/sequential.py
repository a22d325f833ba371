"""What an ops team would write instead of the DAG: one request after another, in a loop.

It makes the same API calls as the pipeline, with the same hooks (the same retries), for each
request in turn: resolve (Segment profiles, Memory lookups, Stripe customers), erase (Memory
profile, the Twilio history listed and deleted then listed again, a Segment regulation, Stripe
tag and delete), and last, once every request is erased, one proof check per deletion (so the
script never sits waiting for a regulation). No compliance store, no audit ledger: only the
calls. ``make bench`` times it on a sample of requests (its cost is linear by construction).
"""

from __future__ import annotations

import time
from typing import Any

from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.hooks.stripe import StripeHook, idempotency_key
from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.identifiers import SubjectIdentifiers


def _history(twilio: TwilioHook, phone: str | None, identities: list[str]) -> dict[str, list]:
    calls = twilio.list_call_sids(phone) if phone else []
    recordings = [r for call in calls for r in twilio.list_recording_sids(call)]
    participations = twilio.list_participant_conversations(address=phone) if phone else []
    for identity in identities:
        participations += twilio.list_participant_conversations(identity=identity)
    return {
        "messages": twilio.list_message_sids(phone) if phone else [],
        "calls": calls,
        "recordings": recordings,
        "transcriptions": [t for r in recordings for t in twilio.list_transcription_sids(r)],
        "conversations": list(
            dict.fromkeys((p["chat_service_sid"], p["conversation_sid"]) for p in participations)
        ),
    }


def erase(request_id: str, ids: SubjectIdentifiers) -> dict[str, Any]:
    """Resolve and erase one person; returns what the proof checks need."""
    segment, twilio, stripe = SegmentHook(), TwilioHook(), StripeHook()

    user_ids = {ids.user_id} if ids.user_id else set()
    for id_type, value in (("email", ids.email), ("phone", ids.phone), ("user_id", ids.user_id)):
        if value and (profile := segment.get_profile(id_type, value)) is not None:
            user_ids.update(profile.ids_of_type("user_id"))
    profiles = {
        p
        for t, v in (("email", ids.email), ("phone", ids.phone))
        if v
        for p in twilio.lookup_memory_profiles(t, v)
    }
    customers: set[str] = set()
    if (
        ids.stripe_customer_id
        and (c := stripe.retrieve_customer(ids.stripe_customer_id))
        and not c.get("deleted")
    ):
        customers.add(c["id"])
    if ids.email:
        for spelling in dict.fromkeys([ids.email_as_given or ids.email, ids.email]):
            customers.update(c["id"] for c in stripe.list_customers_by_email(spelling))

    for profile_id in sorted(profiles):
        twilio.delete_memory_profile(profile_id)
    identities = [v for v in dict.fromkeys([ids.email, ids.email_as_given, ids.user_id]) if v]
    if ids.phone or identities:
        found = _history(twilio, ids.phone, identities)
        for kind, delete in (
            ("messages", twilio.delete_message),
            ("transcriptions", twilio.delete_transcription),
            ("recordings", twilio.delete_recording),
            ("calls", twilio.delete_call),
            ("conversations", lambda where: twilio.delete_conversation(*where)),
        ):
            for sid in found[kind]:
                delete(sid)
        left = _history(twilio, ids.phone, identities)
        if any(left.values()):
            raise RuntimeError(f"{request_id}: Twilio history left after the erasure")
    regulation = segment.create_regulation(sorted(user_ids)) if user_ids else None
    stamp = str(int(time.time()))
    for customer_id in sorted(customers):
        metadata = {"gdpr_status": "erased", "deletion_ts": stamp, "gdpr_request_id": request_id}
        key = idempotency_key(request_id, "tag", customer_id, stamp)
        if stripe.update_customer_metadata(customer_id, metadata, idempotency_key=key) is not None:
            stripe.delete_customer(customer_id)
    return {"profiles": sorted(profiles), "regulation": regulation, "customers": sorted(customers)}


def prove(done: dict[str, Any], poll_seconds: float = 1.0, timeout: float = 600.0) -> None:
    """Check every deletion once more, polling until the providers confirm it."""
    segment, twilio, stripe = SegmentHook(), TwilioHook(), StripeHook()
    deadline = time.monotonic() + timeout
    while True:
        pending = [p for p in done["profiles"] if twilio.memory_profile_exists(p)]
        if done["regulation"]:
            status = (segment.get_regulation(done["regulation"]) or {}).get("overallStatus")
            if status != "FINISHED":
                pending.append(done["regulation"])
        for customer_id in done["customers"]:
            if stripe.customer_presence(customer_id) == "present":
                pending.append(customer_id)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not proven after {timeout}s: {pending}")
        time.sleep(poll_seconds)


def erase_sequentially(requests: list[tuple[str, SubjectIdentifiers]]) -> float:
    """Erase every request in turn, then prove each; returns the wall time in seconds."""
    started = time.monotonic()
    erased = [erase(request_id, ids) for request_id, ids in requests]
    for done in erased:
        prove(done)
    return time.monotonic() - started
