"""Control and introspection API under ``/_sandbox`` (JSON, no auth, never faulted).

Tests and the demo use it to find the seeded people, to see what is left of a person in every
service, to set fault knobs, to re-seed, and to read the log of API calls served. The request
log holds route templates only: the sandbox never records an email address or a phone number.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import ids
from sandbox.state import Person, SandboxState, Settings
from sandbox.web import json_response

MAX_PEOPLE = 2000
#: ``dispute.status`` in the official spec (stripe/openapi latest/openapi.spec3.json @ 19be337d).
DISPUTE_STATUSES = (
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
    "needs_response",
    "under_review",
    "won",
    "lost",
    "prevented",
)


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


def _bad_request(message: str) -> Response:
    return json_response({"error": message}, 400)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    return json.loads(raw) if raw.strip() else None


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


def accounts(base_url: str) -> dict[str, Any]:
    """Where each API lives on this server and which identifiers and credentials it accepts."""
    return {
        "stripe": {
            "base_url": f"{base_url}/stripe",
            "api_key": "any sk_test_... or rk_test_... key (live keys are refused)",
            "account_id": ids.STRIPE_ACCOUNT_ID,
            # Another project's key: a valid key whose account has none of these customers.
            "other_account_key": "any sk_test_other_... or rk_test_other_... key",
            "other_account_id": ids.STRIPE_OTHER_ACCOUNT_ID,
        },
        "twilio": {
            "base_url": f"{base_url}/twilio",
            "account_sid": ids.TWILIO_ACCOUNT_SID,
            "auth": f"Basic {ids.TWILIO_ACCOUNT_SID} or any SK... API key SID, any non-empty secret",
            "memory_store_id": ids.MEMORY_STORE_ID,
        },
        "segment": {
            "profiles_base_url": f"{base_url}/segment/profiles",
            "public_api_base_url": f"{base_url}/segment/api",
            "space_id": ids.SEGMENT_SPACE_ID,
            "workspace_id": ids.SEGMENT_WORKSPACE_ID,
            "profile_auth": "Basic with any sandbox-... access token as username and an empty password",
            "check_user_id": ids.SEGMENT_CHECK_USER_ID,
            "public_api_auth": "Bearer with any token",
        },
    }


def person_summary(person: Person) -> dict[str, Any]:
    return {
        "key": person.key,
        "name": person.name,
        "email": person.email,
        "phone": person.phone,
        "flags": list(person.flags),
        "stripe_customer_ids": list(person.stripe_customer_ids),
        "segment_user_id": person.segment_user_id,
        "segment_id": person.segment_id,
        "anonymous_id": person.anonymous_id,
        "memory_profile_id": person.memory_profile_id,
        "chat_identity": person.chat_identity,
    }


async def people(request: Request) -> Response:
    state = _state(request)
    state.tick()
    base_url = str(request.base_url).rstrip("/")
    return json_response(
        {
            "accounts": accounts(base_url),
            "settings": vars(state.settings),
            "people": [person_summary(p) for p in state.people.values()],
        }
    )


def remaining(state: SandboxState, person: Person) -> dict[str, Any]:
    """What is left of ``person`` in every emulated service right now."""
    state.tick()
    return {
        "key": person.key,
        "stripe": _stripe_remaining(state, person),
        "twilio": _twilio_remaining(state, person),
        "memory": _memory_remaining(state, person),
        "segment": _segment_remaining(state, person),
    }


def _stripe_remaining(state: SandboxState, person: Person) -> dict[str, Any]:
    """The person's customers (with their balance and the writes they received since the request
    log was last cleared), charges, live state (subscriptions, invoices, disputes) and jobs."""
    customer_ids = set(person.stripe_customer_ids)
    customers = [state.customers[cid] for cid in person.stripe_customer_ids]
    charge_ids = {ch.id for ch in state.charges.values() if ch.customer in customer_ids}
    return {
        "customers": [
            {
                "id": c.id,
                "deleted": c.deleted,
                "redacted": c.redacted,
                "email": c.email,
                "metadata": dict(c.metadata),
                "balance": c.balance,
                "writes": state.customer_writes[c.id],
            }
            for c in customers
        ],
        "writes": sum(state.customer_writes[cid] for cid in customer_ids),
        "charges": [
            {"id": ch.id, "customer": ch.customer, "redacted": ch.redacted, "disputed": ch.disputed}
            for ch in state.charges.values()
            if ch.customer in customer_ids
        ],
        "subscriptions": [
            {"id": sub.id, "customer": sub.customer, "status": sub.status}
            for sub in state.subscriptions.values()
            if sub.customer in customer_ids
        ],
        "invoices": [
            {"id": inv.id, "customer": inv.customer, "status": inv.status, "redacted": inv.redacted}
            for inv in state.invoices.values()
            if inv.customer in customer_ids
        ],
        "disputes": [
            {"id": d.id, "charge": d.charge, "status": d.status}
            for d in state.disputes.values()
            if d.charge in charge_ids
        ],
        "redaction_jobs": [
            {"id": job.id, "status": job.status}
            for job in state.redaction_jobs.values()
            if customer_ids & set(job.objects.get("customers", []))
        ],
    }


def _twilio_remaining(state: SandboxState, person: Person) -> dict[str, Any]:
    """Counts of what is left for the person's phone (and chat identity) in Twilio."""
    phone, identity = person.phone, person.chat_identity
    messages = [m for m in state.messages.values() if phone in (m.to, m.from_) and not m.deleted]
    calls = [c for c in state.calls.values() if phone in (c.to, c.from_)]
    call_sids = {c.sid for c in calls}
    # Recordings of the person's calls stay after the call is deleted, so count them all.
    recordings = [r for r in state.recordings.values() if r.call_sid in call_sids]
    recording_sids = {r.sid for r in recordings}
    transcriptions = [t for t in state.transcriptions.values() if t.recording_sid in recording_sids]
    mine = [
        p
        for p in state.participants.values()
        if p.address == phone or (identity is not None and p.identity == identity)
    ]
    my_conversations = {p.conversation_sid for p in mine}
    return {
        "messages": len(messages),
        "messages_in_flight": sum(1 for m in messages if m.settles_at is not None),
        "calls": sum(1 for c in calls if not c.deleted),
        "recordings": sum(1 for r in recordings if not r.deleted),
        "transcriptions": sum(1 for t in transcriptions if not t.deleted),
        "participations": sum(
            1 for p in mine if not p.deleted and not state.conversations[p.conversation_sid].deleted
        ),
        "conversation_deletions": [
            dict(d) for d in state.conversation_deletions if d["conversation_sid"] in my_conversations
        ],
    }


def _memory_remaining(state: SandboxState, person: Person) -> dict[str, Any]:
    profile = state.memory_profiles.get(person.memory_profile_id or "")
    return {
        "profile_id": person.memory_profile_id,
        "profile_present": bool(profile and not profile.deleted),
        "deletion_requested": bool(profile and profile.delete_requested_at is not None),
    }


def _segment_remaining(state: SandboxState, person: Person) -> dict[str, Any]:
    profile = state.segment_profiles.get(person.segment_id or "")
    now = state.clock()
    return {
        "user_id": person.segment_user_id,
        "profile_present": bool(profile and not profile.deleted),
        "regulations": [
            {"id": r.id, "regulationType": r.regulation_type, "overallStatus": r.status(now)}
            for r in state.regulations.values()
            if person.segment_user_id in r.subject_ids
        ],
    }


async def person_state(request: Request) -> Response:
    state = _state(request)
    person = state.people.get(request.path_params["key"])
    if person is None:
        return json_response({"error": "no seeded person has that key"}, 404)
    return json_response(remaining(state, person))


async def get_faults(request: Request) -> Response:
    return json_response(_state(request).faults.as_dict())


async def put_faults(request: Request) -> Response:
    state = _state(request)
    try:
        state.faults.replace(await _json_body(request) or {})
    except ValueError as exc:
        return _bad_request(str(exc))
    return json_response(state.faults.as_dict())


async def get_limits(request: Request) -> Response:
    """The provider limits (see :mod:`sandbox.limits`) and what they admitted and refused."""
    limits = request.app.state.limits
    return json_response(
        {"limits": limits.as_dict(), "counts": limits.counts_dict(), "in_flight": limits.in_flight_dict()}
    )


async def put_limits(request: Request) -> Response:
    """Replace the limits (APIs and limits not named have none) and zero their counts."""
    limits = request.app.state.limits
    try:
        limits.replace(await _json_body(request) or {})
    except ValueError as exc:
        return _bad_request(str(exc))
    return json_response({"limits": limits.as_dict(), "counts": limits.counts_dict()})


async def reset(request: Request) -> Response:
    """Re-seed from the server's start settings, with the body's overrides applied."""
    state = _state(request)
    initial: Settings = request.app.state.initial_settings
    try:
        overrides = await _json_body(request) or {}
        if not isinstance(overrides, dict):
            raise ValueError("the reset body must be a JSON object")
        settings = initial.updated(overrides)
    except ValueError as exc:
        return _bad_request(str(exc))
    if settings.people > MAX_PEOPLE:
        return _bad_request(f"people must be at most {MAX_PEOPLE}")
    state.reset(settings)
    request.app.state.limits.replace(request.app.state.initial_limits)
    return json_response({"status": "reset", "settings": vars(settings), "people": len(state.people)})


async def put_dispute(request: Request) -> Response:
    """Move a dispute to another status, as Stripe does when it is answered or decided (a test of
    the erasure policy's review closes the dispute that withheld a customer). Not a Stripe write:
    it is counted nowhere, like a change the card network makes."""
    state = _state(request)
    dispute = state.disputes.get(request.path_params["dispute"])
    if dispute is None:
        return json_response({"error": "no dispute has that id"}, 404)
    try:
        body = await _json_body(request) or {}
        status = body.get("status") if isinstance(body, dict) else None
    except ValueError:
        status = None
    if status not in DISPUTE_STATUSES:
        return _bad_request(f"status must be one of {', '.join(DISPUTE_STATUSES)}")
    dispute.status = status
    return json_response({"id": dispute.id, "charge": dispute.charge, "status": dispute.status})


async def get_requests(request: Request) -> Response:
    """The request log, oldest first; ``?after=N``: only the calls numbered (``seq``) above N."""
    entries = _state(request).requests
    after = request.query_params.get("after")
    if after is None:
        return json_response(list(entries))
    try:
        last = int(after)
    except ValueError:
        return _bad_request("after must be an integer (a seq of the log)")
    # Newest last: walk back only over the calls not yet seen.
    newer = []
    for entry in reversed(entries):
        if entry["seq"] <= last:
            break
        newer.append(entry)
    return json_response(newer[::-1])


async def request_counts(request: Request) -> Response:
    """Exact totals per (api, method, route, status, replay) since the last clear: the log itself
    keeps only the newest calls, so counting side effects of a long run must use this."""
    counts = _state(request).request_counts
    return json_response(
        [
            {
                "api": api,
                "method": method,
                "route": route,
                "status": status,
                "idempotent_replay": replay,
                "count": n,
            }
            for (api, method, route, status, replay), n in sorted(counts.items())
        ]
    )


async def clear_requests(request: Request) -> Response:
    _state(request).clear_requests()
    return Response(status_code=204)


routes = [
    Route("/_sandbox/health", health, methods=["GET"]),
    Route("/_sandbox/people", people, methods=["GET"]),
    Route("/_sandbox/state/person/{key}", person_state, methods=["GET"]),
    Route("/_sandbox/faults", get_faults, methods=["GET"]),
    Route("/_sandbox/faults", put_faults, methods=["PUT"]),
    Route("/_sandbox/limits", get_limits, methods=["GET"]),
    Route("/_sandbox/limits", put_limits, methods=["PUT"]),
    Route("/_sandbox/reset", reset, methods=["POST"]),
    Route("/_sandbox/stripe/disputes/{dispute}", put_dispute, methods=["PUT"]),
    Route("/_sandbox/requests", get_requests, methods=["GET"]),
    Route("/_sandbox/requests/counts", request_counts, methods=["GET"]),
    Route("/_sandbox/requests", clear_requests, methods=["DELETE"]),
]
