"""Names of the per-request steps, as stored in ``erasure_steps`` and shown in the audit record.

Each purge step writes its outcome under its own name; each verification writes under
``verify_<system>``. The audit operator reads them all back to decide the request's outcome.
"""

from __future__ import annotations

RESOLVE = "resolve"
TWILIO_PROFILE = "purge_twilio_profile"
TWILIO_HISTORY = "purge_twilio_history"
SEGMENT = "erase_segment"
STRIPE = "redact_stripe"
VERIFY_TWILIO_PROFILE = "verify_twilio_profile"
VERIFY_SEGMENT = "verify_segment"
VERIFY_STRIPE = "verify_stripe"

#: Purge steps and the verification that proves each (None: the purge itself is the proof,
#: because the 2010 API deletes synchronously and a re-list shows nothing left).
PURGE_STEPS: dict[str, str | None] = {
    TWILIO_PROFILE: VERIFY_TWILIO_PROFILE,
    TWILIO_HISTORY: None,
    SEGMENT: VERIFY_SEGMENT,
    STRIPE: VERIFY_STRIPE,
}
