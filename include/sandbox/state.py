"""The sandbox's data model: plain Python objects for every emulated resource, in memory.

All state lives in one :class:`SandboxState`. It is only touched from the server's single event
loop, and every handler runs to completion without awaiting, so no lock is needed: a request
sees and leaves the state consistent.

Time-based behaviour (Stripe redaction jobs, Twilio Memory's asynchronous deletion, Segment
regulations, in-flight Twilio messages and calls) is evaluated lazily by :meth:`SandboxState.tick`,
which every request calls first. That keeps the emulation deterministic and free of background
tasks: a status only depends on the elapsed time, never on task scheduling.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sandbox.faults import Faults
from sandbox.ids import STRIPE_ACCOUNT_ID, TWILIO_CHAT_SERVICE_SID, IdFactory

REDACTED = "[redacted]"

# Stripe redaction job statuses after which the job never changes again.
REDACTION_FINAL = frozenset({"succeeded", "canceled"})
# Twilio statuses in which a message or call may not be deleted yet (error 20009).
MESSAGE_IN_FLIGHT = frozenset({"accepted", "scheduled", "queued", "sending", "receiving"})
CALL_IN_FLIGHT = frozenset({"queued", "ringing", "in-progress"})
# Segment regulation types that delete data (the others only suppress or unsuppress).
DELETING_REGULATIONS = frozenset(
    {"DELETE_INTERNAL", "DELETE_ONLY", "SUPPRESS_WITH_DELETE", "SUPPRESS_WITH_DELETE_INTERNAL"}
)


@dataclass
class Settings:
    """What a seed run looks like and how long the asynchronous processes take (seconds)."""

    seed: int = 1
    people: int = 20
    regulation_seconds: float = 3.0
    memory_delete_seconds: float = 0.5
    redaction_step_seconds: float = 0.5
    in_flight_seconds: float = 2.0
    #: Segment's regulation quota: users a workspace may regulate per window (0: no limit).
    #: Segment allows 110,000 a calendar month; past that, ``POST /regulations`` answers 429
    #: until the window resets.
    regulation_quota: float = 0.0
    #: The quota's window: 0 is the calendar month (UTC), as Segment counts; a number of seconds
    #: makes short windows, back to back from the first regulation, for tests.
    regulation_quota_seconds: float = 0.0

    def updated(self, overrides: dict[str, Any]) -> Settings:
        """A copy with ``overrides`` applied; unknown keys or bad values raise ``ValueError``."""
        known = {f.name: f.type for f in fields(self)}
        values = {name: getattr(self, name) for name in known}
        for name, raw in overrides.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError(f"setting {name!r} must be a number")
            if raw < 0:
                raise ValueError(f"setting {name!r} must not be negative")
            values[name] = int(raw) if name in ("seed", "people") else float(raw)
        return Settings(**values)


# --- people -----------------------------------------------------------------------------------


@dataclass
class Person:
    """A seeded data subject and the identifiers the pipeline would be asked to erase."""

    key: str
    first_name: str
    last_name: str
    email: str
    phone: str
    flags: list[str] = field(default_factory=list)
    stripe_customer_ids: list[str] = field(default_factory=list)
    segment_user_id: str | None = None
    segment_id: str | None = None
    anonymous_id: str | None = None
    memory_profile_id: str | None = None
    chat_identity: str | None = None

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


# --- Stripe -----------------------------------------------------------------------------------


@dataclass
class Customer:
    id: str
    created: int
    email: str | None
    name: str | None
    phone: str | None
    description: str | None = None
    address: dict[str, str | None] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    redacted: bool = False
    balance: int = 0  # Stripe's customer balance in cents: negative is a credit, positive is owed


@dataclass
class Charge:
    id: str
    customer: str
    amount: int
    currency: str
    created: int
    description: str
    billing_details: dict[str, Any]
    receipt_email: str | None
    redacted: bool = False
    disputed: bool = False  # Stripe keeps it true once a dispute was opened, whatever its outcome


@dataclass
class Subscription:
    """A subscription with one item (one recurring price); ``status`` is Stripe's enum."""

    id: str
    customer: str
    created: int
    status: str
    item_id: str
    price_id: str
    product_id: str
    unit_amount: int
    current_period_start: int
    current_period_end: int
    currency: str = "usd"
    latest_invoice: str | None = None
    canceled_at: int | None = None
    ended_at: int | None = None
    cancellation_reason: str | None = None
    trial_start: int | None = None
    trial_end: int | None = None


@dataclass
class Invoice:
    """An invoice; ``customer_*`` are the snapshot Stripe takes of the customer at finalization."""

    id: str
    customer: str
    created: int
    status: str
    amount_due: int
    amount_paid: int
    number: str | None
    period_start: int
    period_end: int
    customer_email: str | None
    customer_name: str | None
    customer_phone: str | None
    customer_address: dict[str, str | None] | None
    currency: str = "usd"
    subscription: str | None = None
    due_date: int | None = None
    finalized_at: int | None = None
    paid_at: int | None = None
    marked_uncollectible_at: int | None = None
    redacted: bool = False


@dataclass
class Dispute:
    id: str
    charge: str
    amount: int
    currency: str
    created: int
    status: str
    reason: str
    evidence_due_by: int


@dataclass
class RedactionJob:
    id: str
    created: int
    objects: dict[str, list[str]]
    validation_behavior: str
    status: str = "created"
    since: float = 0.0
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    account: str = STRIPE_ACCOUNT_ID  # the Stripe account of the key that created it


# --- Twilio -----------------------------------------------------------------------------------


@dataclass
class Message:
    sid: str
    from_: str
    to: str
    body: str
    direction: str
    status: str
    date_created: datetime
    date_sent: datetime
    num_media: int = 0
    price: str | None = "-0.00790"
    deleted: bool = False
    final_status: str | None = None  # status it settles into when in flight
    settles_at: float | None = None


@dataclass
class Call:
    sid: str
    from_: str
    to: str
    direction: str
    status: str
    start_time: datetime
    duration: int
    deleted: bool = False
    final_status: str | None = None
    settles_at: float | None = None


@dataclass
class Recording:
    sid: str
    call_sid: str
    date_created: datetime
    duration: int
    channels: int = 1
    source: str = "RecordVerb"
    deleted: bool = False  # soft-deleted: metadata stays listable with IncludeSoftDeleted


@dataclass
class Transcription:
    sid: str
    recording_sid: str
    date_created: datetime
    duration: int
    text: str
    deleted: bool = False


@dataclass
class Conversation:
    sid: str
    friendly_name: str
    unique_name: str | None
    state: str
    date_created: datetime
    date_updated: datetime
    chat_service_sid: str = TWILIO_CHAT_SERVICE_SID
    deleted: bool = False


@dataclass
class ConversationService:
    """A Conversation Service; the account's default one is where ``/v1/Conversations`` points."""

    sid: str
    friendly_name: str
    date_created: datetime


@dataclass
class Participant:
    sid: str
    conversation_sid: str
    address: str | None  # SMS binding address (a phone number) ...
    proxy_address: str | None
    identity: str | None  # ... or a Conversations SDK identity
    user_sid: str | None
    deleted: bool = False


# --- Twilio Memory ----------------------------------------------------------------------------


@dataclass
class MemoryProfile:
    id: str
    created_at: str
    traits: dict[str, dict[str, Any]]
    delete_requested_at: float | None = None
    deleted: bool = False


# --- Segment ----------------------------------------------------------------------------------


@dataclass
class SegmentProfile:
    segment_id: str
    external_ids: list[dict[str, str]]
    traits: dict[str, Any]
    deleted: bool = False

    def matches(self, id_type: str, value: str) -> bool:
        """True when the profile carries the external id ``id_type:value`` (case-sensitive)."""
        if id_type == "segment_id":
            return self.segment_id == value
        return any(x["type"] == id_type and x["id"] == value for x in self.external_ids)

    def user_ids(self) -> set[str]:
        return {x["id"] for x in self.external_ids if x["type"] == "user_id"}


@dataclass
class Regulation:
    id: str
    created_at: str
    started: float
    duration: float
    regulation_type: str
    subject_type: str
    subject_ids: list[str]
    outcome: str  # "finish", "fail" or "stuck" (set from the seeded people's flags)
    finished_at: str | None = None
    applied: bool = False

    def status(self, now: float) -> str:
        """The overallStatus after ``now - started`` seconds (INITIALIZED, RUNNING, then final)."""
        elapsed = now - self.started
        if elapsed < self.duration / 3:
            return "INITIALIZED"
        if self.outcome == "stuck" or elapsed < self.duration:
            return "RUNNING"
        return "FAILED" if self.outcome == "fail" else "FINISHED"


# --- the whole sandbox ------------------------------------------------------------------------


def isoformat(moment: datetime) -> str:
    """RFC 3339 UTC timestamp with a ``Z`` suffix, as Segment and Twilio Memory print them."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SandboxState:
    """Everything the sandbox knows: seeded data, runtime objects, faults and the request log."""

    REQUEST_LOG_LIMIT = 10_000

    def __init__(
        self,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.faults = Faults(seed=0)
        self.requests: deque[dict[str, Any]] = deque(maxlen=self.REQUEST_LOG_LIMIT)
        # Numbers every logged call, never restarted by a clear: a reader of a long run fetches
        # only the calls after the last one it saw (GET /_sandbox/requests?after=N) before the
        # log drops them.
        self.request_seq = 0
        # Exact totals, unlike the log above, which keeps only the newest calls.
        self.request_counts: Counter[tuple[str, str, str, int, bool]] = Counter()
        # Successful Stripe writes per customer (the customer or one of its objects), replays
        # excluded: "a withheld customer received no write at all" is a zero here.
        self.customer_writes: Counter[str] = Counter()
        self.reset(settings or Settings())

    # -- lifecycle ---------------------------------------------------------------------------

    def reset(self, settings: Settings) -> None:
        """Drop everything and seed afresh from ``settings`` (faults and the log are cleared)."""
        from sandbox.seed import seed_state  # local import: seed builds on this module

        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.ids = IdFactory(self.rng)
        self.faults = Faults(seed=settings.seed)
        self.clear_requests()
        self.people: dict[str, Person] = {}
        self.customers: dict[str, Customer] = {}
        self.charges: dict[str, Charge] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.invoices: dict[str, Invoice] = {}
        self.disputes: dict[str, Dispute] = {}
        self.redaction_jobs: dict[str, RedactionJob] = {}
        self.idempotency: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, Message] = {}
        self.calls: dict[str, Call] = {}
        self.recordings: dict[str, Recording] = {}
        self.transcriptions: dict[str, Transcription] = {}
        self.conversation_services: dict[str, ConversationService] = {}
        self.conversations: dict[str, Conversation] = {}
        self.participants: dict[str, Participant] = {}
        self.conversation_deletions: list[dict[str, Any]] = []
        self.memory_profiles: dict[str, MemoryProfile] = {}
        self.segment_profiles: dict[str, SegmentProfile] = {}
        self.regulations: dict[str, Regulation] = {}
        self._groups: dict[tuple[str, str], tuple[int, dict[Any, list[Any]]]] = {}
        # What tick() still has to advance: every call ticks, so it must not scan all state.
        self._memory_deleting: list[MemoryProfile] = []
        self._unsettled_regulations: list[Regulation] = []
        seed_state(self)
        self._in_flight = [
            i for i in (*self.messages.values(), *self.calls.values()) if i.settles_at is not None
        ]

    def grouped(self, collection: str, attribute: str) -> dict[Any, list[Any]]:
        """The items of a collection grouped by one attribute, so a filtered listing does not
        scan every seeded record (with 1,000 people, 12,000 messages per call). Items are never
        removed (deletes are soft), so a grouping stays valid until the collection grows."""
        items = getattr(self, collection)
        cached = self._groups.get((collection, attribute))
        if cached is None or cached[0] != len(items):
            groups: dict[Any, list[Any]] = {}
            for item in items.values():
                groups.setdefault(getattr(item, attribute), []).append(item)
            cached = (len(items), groups)
            self._groups[(collection, attribute)] = cached
        return cached[1]

    def now_utc(self) -> datetime:
        return datetime.fromtimestamp(self.wall(), tz=UTC)

    def log_request(self, entry: dict[str, Any]) -> None:
        """Append one served call, numbered (``seq``). Callers pass route templates only, never raw paths."""
        self.request_seq += 1
        entry["seq"] = self.request_seq
        self.requests.append(entry)
        key = (
            entry["api"],
            entry["method"],
            entry["route"],
            entry["status"],
            bool(entry.get("idempotent_replay")),
        )
        self.request_counts[key] += 1

    def clear_requests(self) -> None:
        self.requests.clear()
        self.request_counts.clear()
        self.customer_writes.clear()

    def count_customer_write(self, customer_id: str) -> None:
        """Record one successful write to a Stripe customer or one of its objects."""
        self.customer_writes[customer_id] += 1

    # -- time-based transitions --------------------------------------------------------------

    def tick(self) -> None:
        """Advance every asynchronous process to the current time."""
        now = self.clock()
        for job in self.redaction_jobs.values():
            if job.status not in REDACTION_FINAL:
                self._advance_redaction_job(job, now)
        for profile in self._memory_deleting:
            profile.deleted = now >= profile.delete_requested_at + self.settings.memory_delete_seconds
        self._memory_deleting = [p for p in self._memory_deleting if not p.deleted]
        for regulation in self._unsettled_regulations:
            self._settle_regulation(regulation, now)
        self._unsettled_regulations = [r for r in self._unsettled_regulations if not r.applied]
        for item in self._in_flight:
            if item.settles_at is not None and now >= item.settles_at:
                item.status, item.settles_at = item.final_status or item.status, None
        self._in_flight = [i for i in self._in_flight if i.settles_at is not None]

    def request_memory_delete(self, profile: MemoryProfile) -> None:
        """Memory accepted the deletion; the profile disappears ``memory_delete_seconds`` later."""
        if profile.delete_requested_at is None:
            profile.delete_requested_at = self.clock()
            self._memory_deleting.append(profile)

    def add_regulation(self, regulation: Regulation) -> None:
        self.regulations[regulation.id] = regulation
        self._unsettled_regulations.append(regulation)

    def _advance_redaction_job(self, job: RedactionJob, now: float) -> None:
        step = self.settings.redaction_step_seconds
        while now >= job.since + step:
            if job.status == "created":
                job.status = "validating"
            elif job.status == "validating":
                job.validation_errors = self._validate_redaction(job)
                job.status = "failed" if job.validation_errors else "ready"
            elif job.status == "redacting":
                self._redact(job)
                job.status = "succeeded"
            elif job.status == "canceling":
                job.status = "canceled"
            else:  # ready and failed wait for the caller (run, validate or cancel)
                return
            job.since += step

    def _validate_redaction(self, job: RedactionJob) -> list[dict[str, Any]]:
        """The validation errors of ``job``: unknown objects, or objects locked by another job."""
        errors: list[dict[str, Any]] = []
        known = {
            "customers": (self.customers, "customer"),
            "charges": (self.charges, "charge"),
            "invoices": (self.invoices, "invoice"),
        }
        if job.account != STRIPE_ACCOUNT_ID:
            known = {}  # another account holds none of the sandbox's objects
        for kind, object_ids in job.objects.items():
            store, object_type = known.get(kind, ({}, kind.rstrip("s")))
            for object_id in object_ids:
                if object_id not in store:
                    errors.append(self._validation_error("invalid_state", object_id, object_type))
                elif self._locked_elsewhere(job, kind, object_id):
                    errors.append(self._validation_error("locked_by_other_job", object_id, object_type))
        return errors

    def _validation_error(self, code: str, object_id: str, object_type: str) -> dict[str, Any]:
        message = {
            "invalid_state": f"No such {object_type}: '{object_id}'",
            "locked_by_other_job": f"The {object_type} '{object_id}' is part of another redaction job.",
        }[code]
        return {
            "code": code,
            "erroring_object": {"id": object_id, "object_type": object_type},
            "id": self.ids.stripe("prjve"),
            "message": message,
            "object": "privacy.redaction_job_validation_error",
        }

    def _locked_elsewhere(self, job: RedactionJob, kind: str, object_id: str) -> bool:
        """True when another live job holds the object: a validated one, or an older pending one."""
        older = True  # jobs are kept in creation order
        for other in self.redaction_jobs.values():
            if other.id == job.id:
                older = False
                continue
            if other.account != job.account:
                continue  # each account's jobs lock only its own objects
            holds = other.status in ("ready", "redacting") or (
                older and other.status in ("created", "validating")
            )
            if holds and object_id in other.objects.get(kind, []):
                return True
        return False

    def _redact(self, job: RedactionJob) -> None:
        """Replace personal data on the job's customers, their charges and invoices, and on the
        charges and invoices it lists ("all redactable objects associated with these objects will
        be redacted as well"); amounts, statuses and balances stay."""
        customer_ids = set(job.objects.get("customers", []))
        for customer_id in customer_ids:
            customer = self.customers.get(customer_id)
            if customer:
                customer.email = customer.name = customer.phone = REDACTED
                customer.description = REDACTED if customer.description else None
                customer.address = dict.fromkeys(customer.address or {}, REDACTED) or None
                customer.metadata = {}
                customer.redacted = True
        for charge in self.charges.values():
            if charge.customer in customer_ids or charge.id in job.objects.get("charges", []):
                details = charge.billing_details
                details["email"] = details["name"] = details["phone"] = REDACTED
                details["address"] = dict.fromkeys(details["address"] or {}, REDACTED)
                charge.receipt_email = REDACTED if charge.receipt_email else None
                charge.redacted = True
        for invoice in self.invoices.values():
            if invoice.customer in customer_ids or invoice.id in job.objects.get("invoices", []):
                for name in ("customer_email", "customer_name", "customer_phone"):
                    if getattr(invoice, name):
                        setattr(invoice, name, REDACTED)
                invoice.customer_address = dict.fromkeys(invoice.customer_address or {}, REDACTED) or None
                invoice.redacted = True

    def _settle_regulation(self, regulation: Regulation, now: float) -> None:
        status = regulation.status(now)
        if status not in ("FINISHED", "FAILED"):
            return
        regulation.applied = True
        regulation.finished_at = isoformat(self.now_utc())
        deletes = regulation.regulation_type in DELETING_REGULATIONS
        if status == "FINISHED" and deletes and regulation.subject_type == "USER_ID":
            subjects = set(regulation.subject_ids)
            for profile in self.segment_profiles.values():
                if profile.user_ids() & subjects:
                    profile.deleted = True

    # -- lookups shared by the API modules and the introspection API --------------------------

    def person_by_user_id(self, user_id: str) -> Person | None:
        return next((p for p in self.people.values() if p.segment_user_id == user_id), None)

    def live_memory_profile(self, profile_id: str) -> MemoryProfile | None:
        profile = self.memory_profiles.get(profile_id)
        return profile if profile and not profile.deleted else None
