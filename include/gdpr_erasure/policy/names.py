"""The fixed names of the erasure policy, in one place: object kinds, live-state cases, actions,
which action each kind and case allows, their precedence, and the Stripe statuses behind each case.

The schema (``schema.json``), the shipped default (``default.yaml``), the operators and the
reports all use these names; ``tests/policy`` checks the schema against them.
"""

from __future__ import annotations

# Object kinds: what the pipeline erases, one rule each under ``objects:``.
STRIPE_CUSTOMER = "stripe.customer"
TWILIO_MEMORY_PROFILE = "twilio.memory_profile"
TWILIO_COMMUNICATION_HISTORY = "twilio.communication_history"
SEGMENT_PROFILE = "segment.profile"
OBJECT_KINDS = (STRIPE_CUSTOMER, TWILIO_MEMORY_PROFILE, TWILIO_COMMUNICATION_HISTORY, SEGMENT_PROFILE)

# Live-state cases: what a Stripe customer may still have going on, one rule each under
# ``live_state:``. Found by read-only calls before any write (docs/policy.md says how).
ACTIVE_SUBSCRIPTION = "active_subscription"
OPEN_INVOICE = "open_invoice"
OPEN_DISPUTE = "open_dispute"
CUSTOMER_BALANCE = "customer_balance"
LIVE_STATE_CASES = (ACTIVE_SUBSCRIPTION, OPEN_INVOICE, OPEN_DISPUTE, CUSTOMER_BALANCE)

# Actions.
ERASE = "erase"  # the object goes (Stripe: the connection's method, delete or redaction job)
REDACT = "redact"  # Stripe Redaction Job: strips PII, keeps amounts (stripe.customer only)
RETAIN = "retain"  # kept untouched for retain_for, on a legal basis
WITHHOLD = "withhold"  # no write at all; the request comes back at review_after
CANCEL_THEN_ERASE = "cancel_then_erase"  # cancel the subscriptions, then erase (a business decision)
HOLD_FOR_REVIEW = "hold_for_review"  # kept until a person decides; no automatic re-check
ACTIONS = (ERASE, REDACT, RETAIN, WITHHOLD, CANCEL_THEN_ERASE, HOLD_FOR_REVIEW)

# Object kinds whose step does not read the policy yet: the Twilio and Segment steps erase what
# they find. A rule keeping one would pass the check and still see it erased, a promise the
# pipeline does not keep, so until those steps apply the policy these kinds take ``erase`` only
# (a legal hold keeps one person's data meanwhile: docs/holds.md).
ERASE_ONLY_KINDS = (TWILIO_MEMORY_PROFILE, TWILIO_COMMUNICATION_HISTORY, SEGMENT_PROFILE)

# What each object kind and each case may be told to do.
OBJECT_ACTIONS: dict[str, tuple[str, ...]] = {
    STRIPE_CUSTOMER: (ERASE, REDACT, RETAIN, HOLD_FOR_REVIEW),
    **dict.fromkeys(ERASE_ONLY_KINDS, (ERASE,)),
}
CASE_ACTIONS: dict[str, tuple[str, ...]] = {
    ACTIVE_SUBSCRIPTION: (CANCEL_THEN_ERASE, WITHHOLD, HOLD_FOR_REVIEW),
    OPEN_INVOICE: (REDACT, WITHHOLD, HOLD_FOR_REVIEW),
    OPEN_DISPUTE: (WITHHOLD, HOLD_FOR_REVIEW),
    CUSTOMER_BALANCE: (ERASE, REDACT, WITHHOLD, HOLD_FOR_REVIEW),
}

# Strictest first: when several rules apply to one Stripe customer (its object rule and each
# case present), the first of these wins. ``retain`` (an object rule only) keeps the customer
# untouched for a fixed period without re-checking, so it outranks ``withhold``, which re-checks
# at its review date; only a person's decision (``hold_for_review``) outranks it.
PRECEDENCE = (HOLD_FOR_REVIEW, RETAIN, WITHHOLD, REDACT, CANCEL_THEN_ERASE, ERASE)

# The Stripe statuses behind each case (stripe/openapi latest/openapi.spec3.json, API version
# 2026-07-29.dahlia, commit 19be337d; docs/policy.md).
# subscription.status: incomplete, incomplete_expired, trialing, active, past_due, canceled,
# unpaid, paused. These still bill, or may again:
ACTIVE_SUBSCRIPTION_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid", "paused"})
# invoice.status: draft, open, paid, uncollectible, void. Money still owed on a finalized invoice:
OPEN_INVOICE_STATUSES = frozenset({"open", "uncollectible"})
# dispute.status: warning_needs_response, warning_under_review, warning_closed, needs_response,
# under_review, won, lost, prevented. A dispute is open until it reaches one of:
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})
