"""The per-request steps: their names, as stored in ``erasure_steps`` and shown in the audit
record, and the results each one stores, which later steps read.

Each erasure step writes its outcome under its own name; each verification writes its proof
under ``verify_<system>``. The ledger record task reads them all back to decide the request's
outcome.

The results are ``TypedDict``s: what is stored is the dict itself, as JSON, so a result written
by an earlier release reads unchanged and the audit record, which embeds some of them
(proofs, Stripe customer outcomes), keeps its exact bytes. Keys are optional unless a class
says otherwise, because a step stores part of its result before it is done (a Stripe
timestamp, a Twilio inventory) and a failure adds ``reason`` to whatever was there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, cast

if TYPE_CHECKING:
    from gdpr_erasure.store import StepResult

# Stored in ``erasure_steps`` and named in task ids: renaming one takes a store migration
# (store/migrations.py; version 4 gave the erasure steps one verb, docs/glossary.md).
RESOLVE = "resolve"
TWILIO_PROFILE = "erase_twilio_profile"
TWILIO_HISTORY = "erase_twilio_history"
SEGMENT = "erase_segment"
STRIPE = "erase_stripe"
VERIFY_TWILIO_PROFILE = "verify_twilio_profile"
VERIFY_SEGMENT = "verify_segment"
VERIFY_STRIPE = "verify_stripe"

#: Erasure steps and the verification that proves each (None: the erasure itself is the proof,
#: because the 2010 API deletes synchronously and a re-list shows nothing left).
ERASURE_STEPS: dict[str, str | None] = {
    TWILIO_PROFILE: VERIFY_TWILIO_PROFILE,
    TWILIO_HISTORY: None,
    SEGMENT: VERIFY_SEGMENT,
    STRIPE: VERIFY_STRIPE,
}


# -- resolve ---------------------------------------------------------------------------------


class _SegmentIds(TypedDict):
    segment_ids: list[str]
    #: Emptied once the request is closed (Segment user ids can be emails).
    user_ids: list[str]


class SegmentIds(_SegmentIds, total=False):
    """The person's Segment profiles and the user ids a regulation names."""

    #: Their keyed hashes, set once the request is closed.
    user_ids_hmac: list[str]


class TwilioIds(TypedDict):
    """The person's Twilio Memory profiles, and whether there is a phone whose history to search."""

    memory_profile_ids: list[str]
    has_phone: bool


class AbsentCustomer(TypedDict):
    """A ``cus_`` id given at intake that was already gone at resolve: not our erasure."""

    outcome: Literal["never_existed", "deleted_before_resolve"]
    #: The answer that showed it: ``not_found`` or ``deleted_stub``.
    evidence: str
    checked_at: str


class _StripeIds(TypedDict):
    #: Live customers to erase; emptied once the request is closed (see ``customer_tags``).
    customer_ids: list[str]
    #: Customer -> how it was found (``given`` or ``email``); keyed by tag once closed.
    matched_by: dict[str, str]
    #: Keyed by tag once closed.
    absent_at_resolve: dict[str, AbsentCustomer]


class StripeIds(_StripeIds, total=False):
    """The person's Stripe customers."""

    #: The tags of ``customer_ids``, set once the request is closed.
    customer_tags: list[str]


class Resolution(TypedDict, total=False):
    """Step ``resolve``: every profile that holds the person's identifiers (ids only)."""

    segment: SegmentIds
    twilio: TwilioIds
    stripe: StripeIds
    reason: str


# -- erasures --------------------------------------------------------------------------------

DeleteOutcome = Literal["deleted", "already_absent"]


class TwilioProfileErasure(TypedDict, total=False):
    """Step ``erase_twilio_profile``; skipped with ``reason`` when there is no profile."""

    profile_ids: list[str]
    outcomes: dict[str, DeleteOutcome]
    reason: str


#: Items per kind: messages, calls, recordings, transcriptions, conversations.
HistoryCounts = dict[str, int]


class TwilioHistoryErasure(TypedDict, total=False):
    """Step ``erase_twilio_history``. ``found`` is the first attempt's inventory, kept across
    reruns; ``deleted`` is ``found`` minus ``remaining_after`` (which must be all zero)."""

    found: HistoryCounts
    deleted: HistoryCounts
    remaining_after: HistoryCounts
    conversation_services_searched: int
    reason: str


class SegmentErasure(TypedDict, total=False):
    """Step ``erase_segment``: the regulation created (done), or the quota it waits for
    (pending with ``waiting_for`` and ``not_before``), or why none was needed (skipped)."""

    regulation_id: str
    regulation_type: str
    subjects: int
    #: Regulations Segment reported failed; each retry creates a new one.
    failed_regulation_ids: list[str]
    waiting_for: Literal["quota"]
    #: ISO 8601: when Segment's quota allows the regulation.
    not_before: str
    reason: str


#: ``kept``: the erasure policy kept the customer (withhold, retain, hold_for_review): no write.
StripeOutcome = Literal["pending", "deleted", "already_absent", "tagged_for_redaction", "redacted", "kept"]


class StripeCustomerDecision(TypedDict, total=False):
    """The erasure policy's decision on one Stripe customer, made from its live state right before
    any write (:meth:`gdpr_erasure.policy.ErasurePolicy.stripe_decision`, docs/policy.md)."""

    #: ``erase``, ``redact``, ``retain``, ``withhold`` or ``hold_for_review``.
    action: str
    #: The live-state cases found (``active_subscription``, ``open_invoice``, ...), in policy order.
    cases: list[str]
    #: The case whose rule decided; None when the ``stripe.customer`` rule did.
    deciding_case: str | None
    #: Subscriptions are cancelled before the write (``active_subscription: cancel_then_erase``).
    cancel_subscriptions: bool
    legal_basis: str | None
    #: ISO 8601: when a withheld customer is checked again (None unless withheld).
    review_date: str | None
    #: ISO 8601: until when what is kept stays (``retain``, or ``redact`` with ``retain_for``).
    retained_until: str | None
    #: ISO 8601: when the live state was read and the decision made.
    decided_at: str
    #: The request's attempt (its claim count) that decided: a rerun within it keeps the decision.
    attempt: int
    #: The policy that decided (``sha256:...`` of its file).
    policy_digest: str


class _StripeCustomerRecord(TypedDict):
    outcome: StripeOutcome


class StripeCustomerRecord(_StripeCustomerRecord, total=False):
    """One customer in step ``erase_stripe`` (the audit record copies it)."""

    #: The answer that settled it: ``deleted_stub`` or ``not_found``.
    evidence: str
    #: ``live_state``: the read before any write already found it gone.
    evidence_from: Literal["tag", "delete", "live_state"]
    tag_confirmed: bool
    redaction_job_id: str
    #: Results written before the erasure policy (issue 15) have no decision.
    decision: StripeCustomerDecision
    #: Subscriptions this step cancelled before the write (``cancel_then_erase``).
    subscriptions_canceled: int


class PolicyReference(TypedDict):
    """Which erasure policy decided: its digest, and its file's name (never a full path)."""

    digest: str
    source: str


class StripeErasure(TypedDict, total=False):
    """Step ``erase_stripe``. ``deletion_ts`` is fixed before Stripe sees it, so a rerun sends
    the same tag with the same idempotency key. ``customers`` is keyed by ``cus_`` id until
    the request is closed, by tag after (a customer kept until a review date keeps its ``cus_``
    id until it is settled: the review needs it)."""

    deletion_ts: int
    #: The connection's method; a customer the policy redacts goes through a redaction job
    #: whatever it is (its outcome says ``redacted``).
    method: Literal["delete", "redaction_job"]
    customers: dict[str, StripeCustomerRecord]
    redaction_job_id: str
    redaction_job_status: str
    failed_redaction_job_ids: list[str]
    #: The erasure policy of the latest attempt (results written before it have none).
    policy: PolicyReference
    reason: str


# -- proofs (the verify_* steps) --------------------------------------------------------------


class TwilioProfileProof(TypedDict, total=False):
    """Step ``verify_twilio_profile``: every deleted Memory profile answered 404."""

    profiles: list[str]
    gone_at: str
    summary: str
    reason: str


class SegmentRegulationProof(TypedDict, total=False):
    """Step ``verify_segment``: the regulation's ``overallStatus`` (``FINISHED`` proves it);
    a failed one keeps Segment's ``streamStatus`` and the reason drawn from it."""

    regulation_id: str
    status: str | None
    finished_at: str | None
    checked_at: str
    stream_status: list[Any] | None
    summary: str
    reason: str


class StripeCustomerProof(TypedDict):
    """One customer read as gone: which answer proved it (``deleted_stub`` or ``not_found``)."""

    state: Literal["deleted"]
    evidence: str
    checked_at: str


class StripeProof(TypedDict, total=False):
    """Step ``verify_stripe``: per customer, keyed by tag (never by ``cus_`` id), or the
    redaction job's status (``succeeded`` proves it)."""

    customers: dict[str, StripeCustomerProof]
    redaction_job_id: str
    status: str | None
    checked_at: str
    summary: str
    reason: str


#: The result each step stores.
RESULT_TYPES: dict[str, type] = {
    RESOLVE: Resolution,
    TWILIO_PROFILE: TwilioProfileErasure,
    TWILIO_HISTORY: TwilioHistoryErasure,
    SEGMENT: SegmentErasure,
    STRIPE: StripeErasure,
    VERIFY_TWILIO_PROFILE: TwilioProfileProof,
    VERIFY_SEGMENT: SegmentRegulationProof,
    VERIFY_STRIPE: StripeProof,
}


# -- what a proof check answers, and what the trigger tells the sensor ------------------------

#: A check answers done, waiting or failed; the trigger settles a request done, failed,
#: pending (still waiting at the deadline: a later run checks again) or error (the check
#: itself kept failing).
ProofState = Literal["done", "waiting", "failed", "pending", "error"]


class ProofOutcome(TypedDict):
    """One request's outcome in the trigger's event; ``evidence`` becomes the verify step's result."""

    state: ProofState
    evidence: dict[str, Any]


class _ProofEvent(TypedDict):
    status: Literal["settled", "error"]


class ProofEvent(_ProofEvent, total=False):
    """The trigger's event: each request's outcome, or (``error``) why none could be read."""

    outcomes: dict[str, ProofOutcome]
    polls: int
    message: str


R = TypeVar("R")


def result_as(kind: type[R], step: StepResult | None) -> R:
    """The stored result of ``step`` as ``kind`` (one of the types above), or empty if the step
    has not run. Nothing is converted: the stored JSON is the typed dict.

    :param kind: the result's type, e.g. :class:`StripeErasure`.
    :param step: the step as read from the store.
    """
    return cast(R, step.result if step is not None else {})
