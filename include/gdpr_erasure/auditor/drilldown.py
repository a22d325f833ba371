"""One request as an auditor reads it: its timeline, its evidence and where it sits in the ledger.

Everything comes from the compliance store: the intake row (received, claims, failures,
deferral, completion, when its identifiers were replaced by their keyed hash), each step's row
(outcome, time of its last write, tries, reason) and the audit record (what was done, what proves
it, what was kept and why). No identifier is shown: the request's identifier *types*, its keyed
hash, Stripe tags and provider ids only. A step's stored result can still hold identifiers while
the request is open (Stripe ``cus_`` ids, Segment user ids), so only counts and named safe
fields are taken from it, and free text (reasons) is scrubbed of anything that looks like one.

Where the work ran, to read its log: since store schema 5 each step's row names the task instance
and try that last worked on it, a request its latest claim's time and batch (map index), and the
audit record the ``write_ledger_record`` task instance that wrote it (``ran_in``). Each is linked
to that task instance's log in the Airflow UI (:func:`task_log_path`). Rows and records written
before schema 5 have none of this: they show the run of the latest claim and the run that wrote
the record, without a time for the claim and without links to task logs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from gdpr_erasure import steps
from gdpr_erasure.ledger.entries import request_entries
from gdpr_erasure.ledger.heads import TreeHead
from gdpr_erasure.ledger.log import Ledger
from gdpr_erasure.pii import REDACTED, scrub
from gdpr_erasure.store import (
    AuditEntry,
    ComplianceStore,
    ErasureRequest,
    RequestNotFound,
    StepResult,
    TaskTry,
)

#: Step (as stored) -> the task that writes it, when its name is not the step's (the timeline's label).
STEP_TASKS = {steps.RESOLVE: "resolve_identity"}
STEP_LABELS = {
    steps.RESOLVE: "Resolve identity",
    steps.TWILIO_PROFILE: "Twilio Memory profile: delete",
    steps.TWILIO_HISTORY: "Twilio history: delete",
    steps.SEGMENT: "Segment: suppress and delete",
    steps.STRIPE: "Stripe: tag and erase",
    steps.VERIFY_TWILIO_PROFILE: "Twilio Memory profile: proof",
    steps.VERIFY_SEGMENT: "Segment regulation: proof",
    steps.VERIFY_STRIPE: "Stripe: proof",
}


def task_log_path(ran: TaskTry) -> str:
    """Where a task instance's log is in the Airflow UI, relative to the UI's root (``[api]
    base_url``): ``dags/DAG/runs/RUN/tasks/TASK``, then ``/mapped/INDEX`` for a mapped task
    instance and ``?try_number=N`` for the try. That is the route of Airflow 3.3's UI (its
    router's ``dags/:dagId/runs/:runId/tasks/:taskId/mapped/:mapIndex``, whose first tab is the
    log, reading ``try_number`` from the query) and what Airflow's own ``TaskInstance.log_url``
    builds.

    :param ran: the task instance and try.
    """
    path = "/".join(
        [
            "dags",
            quote(ran.dag_id, safe=""),
            "runs",
            quote(ran.run_id, safe=""),
            "tasks",
            quote(ran.task_id, safe=""),
        ]
    )
    if ran.map_index >= 0:
        path += f"/mapped/{ran.map_index}"
    if ran.try_number:
        path += f"?try_number={ran.try_number}"
    return path


def record_ran_in(record: dict[str, Any]) -> TaskTry | None:
    """The task instance that wrote an audit record, from its ``ran_in`` (records written since
    store schema 5); None for an older record, or a ``ran_in`` without what a link needs.

    :param record: the audit record as hashed into the ledger.
    """
    ran = record.get("ran_in")
    if not isinstance(ran, dict):
        return None
    dag_id, task_id, run_id = ran.get("dag_id"), ran.get("task_id"), ran.get("dag_run_id")
    if not all(isinstance(v, str) and v for v in (dag_id, task_id, run_id)):
        return None
    map_index, try_number = ran.get("map_index"), ran.get("try_number")
    return TaskTry(
        dag_id,
        task_id,
        run_id,
        map_index if isinstance(map_index, int) else -1,
        try_number if isinstance(try_number, int) else None,
    )


@dataclass(frozen=True)
class Event:
    """One line of the timeline. ``at`` is None for what the store keeps no time of; ``log`` is
    the task instance and try whose log tells it (None: not recorded)."""

    at: datetime | None
    what: str
    outcome: str
    tries: int | None = None
    detail: str = ""
    log: TaskTry | None = None


@dataclass
class Section:
    """The evidence of one system: ``done`` (what was erased), ``proven`` (what shows it)."""

    title: str
    done: list[tuple[str, str]] = field(default_factory=list)
    proven: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RequestView:
    request_id: str
    request: ErasureRequest | None
    entry: AuditEntry | None
    timeline: list[Event]
    identifier_types: list[str]
    identifiers_hash: str | None
    hash_key_id: str | None
    evidence: list[Section]
    #: What was not erased, or not by us, and why.
    kept: list[str]
    #: (what, dag id, run id) of the runs the store names.
    runs: list[tuple[str, str, str]]
    head: TreeHead | None
    #: The task instance that wrote the audit record (None: no record, or one from before schema 5).
    record_log: TaskTry | None = None
    #: The review entries that followed the record (what the erasure policy kept, checked again).
    reviews: list[AuditEntry] = field(default_factory=list)

    @property
    def covered_by_head(self) -> bool:
        return self.entry is not None and self.head is not None and self.head.tree_size >= self.entry.seq

    @property
    def record_json(self) -> str:
        return json.dumps(self.entry.record, indent=2, sort_keys=True) if self.entry else ""


def request_view(store: ComplianceStore, request_id: str) -> RequestView | None:
    """What the store holds about ``request_id``; None if it holds nothing."""
    try:
        request: ErasureRequest | None = store.get(request_id)
    except RequestNotFound:
        request = None
    entries = request_entries(store, request_id, request.attempts if request is not None else None)
    entry = entries.record if entries else None
    if request is None and entry is None:
        return None
    reviews = list(entries.reviews) if entries else []
    results = store.steps(request_id) if request is not None else {}
    record = entry.record if entry else {}
    subject = record.get("subject") or {}
    text = _Redactor(_identifier_values(request))

    types = request.identifiers.present() if request and request.identifiers else []
    view = RequestView(
        request_id=request_id,
        request=request,
        entry=entry,
        timeline=_timeline(request, results, entry, text, reviews),
        identifier_types=types or list(subject.get("identifier_types") or []),
        identifiers_hash=(request.identifiers_hash if request else None) or subject.get("identifiers_hash"),
        hash_key_id=subject.get("hash_key_id"),
        evidence=_evidence(record, text) if entry else [],
        # What is kept now: the latest review's list, else the record's.
        kept=_kept(record, text, reviews[-1].record if reviews else None) if entry else [],
        runs=_runs(request, record),
        head=Ledger(store).latest_head() if entry else None,
        record_log=record_ran_in(record),
        reviews=reviews,
    )
    return view


def _identifier_values(request: ErasureRequest | None) -> list[str]:
    """The open request's own identifiers, in every spelling the store has, to blank out."""
    if request is None or request.identifiers is None:
        return []
    ids = request.identifiers
    values = [ids.email, ids.email_as_given, ids.phone, ids.stripe_customer_id, ids.user_id]
    return sorted({v for v in values if v}, key=len, reverse=True)


class _Redactor:
    """Text for the page: the open request's own identifier values blanked out everywhere, and
    free text (reasons, summaries) also scrubbed of anything that looks like an identifier. Ids
    and tags are not scrubbed: the scrubber would take a tag's or an id's digits for a phone."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets

    def id(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def free(self, value: Any) -> str:
        return scrub(self.id(value))


def _time(value: Any, text: _Redactor) -> str:
    """A time field as written by the pipeline (ISO 8601), shown as it is: the scrubber would
    take its digits for a phone number. Anything else is scrubbed like free text."""
    try:
        return datetime.fromisoformat(str(value)).isoformat()
    except ValueError:
        return text.free(value)


def _timeline(
    request: ErasureRequest | None,
    results: dict[str, StepResult],
    entry: AuditEntry | None,
    text: _Redactor,
    reviews: Sequence[AuditEntry] = (),
) -> list[Event]:
    first: list[Event] = []
    timed: list[Event] = []
    if request is not None:
        first.append(Event(request.received_at, "Received", f"through {request.source}"))
        if request.claimed_by:
            dag_run = request.claimed_by.split("/", 1)[-1]
            batch = request.claimed_map_index
            claimed = Event(
                request.claimed_at,
                "Claimed",
                f"last by run {dag_run}",
                request.attempts,
                (f"into the batch of map index {batch}" if batch is not None else "")
                if request.claimed_at
                else "claimed before store schema 5, which keeps the run of the latest claim, not its time",
            )
            (timed if claimed.at else first).append(claimed)
    for name, result in results.items():
        timed.append(
            Event(
                result.updated_at,
                f"{STEP_LABELS.get(name, name)} ({STEP_TASKS.get(name, name)})",
                result.status.value,
                # The Airflow try that last worked on it (the row's own counter counts its writes:
                # a step saves its progress several times per try).
                result.ran_in.try_number if result.ran_in else None,
                _step_detail(name, result.result, text),
                result.ran_in,
            )
        )
    if request is not None:
        status = request.status.value
        if status in ("failed", "needs_attention"):
            what = "Failed" if status == "failed" else "Needs attention"
            reason = text.free(request.last_error)
            timed.append(Event(request.updated_at, what, status, request.failures, reason))
        if status == "deferred" and request.not_before:
            timed.append(
                Event(
                    request.updated_at,
                    "Deferred (a provider's quota)",
                    f"until {request.not_before.isoformat()}",
                    None,
                    text.free(request.last_error),
                )
            )
        if status in ("in_progress", "verifying", "pending"):
            timed.append(Event(request.updated_at, "Now", status, request.attempts))
        if status == "on_hold":  # last_error names the hold (docs/holds.md), never the person
            timed.append(
                Event(request.updated_at, "On legal hold", status, None, text.free(request.last_error))
            )
        if request.completed_at:
            # completed, or completed_with_exemptions (which keeps its first completion time)
            closed = status if status.startswith("completed") else "completed"
            timed.append(Event(request.completed_at, "Completed", closed, request.attempts))
        if request.pii_erased_at:
            timed.append(Event(request.pii_erased_at, "Identifiers replaced by their keyed hash", "erased"))
    if entry is not None:
        timed.append(
            Event(
                entry.recorded_at,
                "Audit record written",
                f"ledger seq {entry.seq}",
                None,
                f"record hash {entry.record_hash[:16]}…",
                record_ran_in(entry.record),
            )
        )
    for review in reviews:
        timed.append(
            Event(
                review.recorded_at,
                f"Review {review.record.get('review')} entry written",
                f"ledger seq {review.seq}: {review.record.get('outcome')}",
                None,
                f"record hash {review.record_hash[:16]}…",
                record_ran_in(review.record),
            )
        )
    timed.sort(key=lambda event: event.at)  # every event here has a time
    return first + timed


def _count(values: Any) -> int:
    return len(values) if isinstance(values, list | dict) else 0


def _counts(value: Any) -> str:
    """``{"messages": 6, "calls": 0}`` as ``messages 6, calls 0`` (numbers only)."""
    if not isinstance(value, dict):
        return ""
    return ", ".join(f"{kind} {n}" for kind, n in value.items() if isinstance(n, int))


def _step_detail(name: str, result: dict[str, Any], text: _Redactor) -> str:
    """Safe facts of a step's result: counts, provider ids, times, reasons (scrubbed); never a
    key that may be an identifier (a ``cus_`` id, a Segment user id)."""
    parts: list[str] = []
    if name == steps.RESOLVE:
        segment, twilio, stripe = (result.get(k) or {} for k in ("segment", "twilio", "stripe"))
        user_ids = _count(segment.get("user_ids")) or _count(segment.get("user_ids_hmac"))
        customers = _count(stripe.get("customer_ids")) or _count(stripe.get("customer_tags"))
        parts.append(
            f"found {_count(segment.get('segment_ids'))} Segment profile(s) with {user_ids} user id(s), "
            f"{_count(twilio.get('memory_profile_ids'))} Twilio Memory profile(s), "
            f"{customers} Stripe customer(s)"
        )
    elif name == steps.TWILIO_PROFILE and result.get("outcomes"):
        outcomes = Counter(str(v) for v in result["outcomes"].values())
        parts.append(", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())))
    elif name == steps.TWILIO_HISTORY:
        if result.get("deleted") is not None:
            parts.append(f"deleted: {_counts(result.get('deleted'))}")
        if result.get("remaining_after") is not None:
            parts.append(f"left afterwards: {_counts(result.get('remaining_after'))}")
    elif name == steps.SEGMENT:
        if result.get("regulation_id"):
            parts.append(
                f"regulation {text.id(result['regulation_id'])} ({text.id(result.get('regulation_type'))})"
            )
        if result.get("not_before"):
            until = _time(result["not_before"], text)
            parts.append(f"waiting for the {text.id(result.get('waiting_for'))} until {until}")
    elif name == steps.STRIPE:
        if result.get("method"):
            parts.append(f"method {text.id(result['method'])}")
        customers = result.get("customers")
        if isinstance(customers, dict) and customers:
            outcomes = Counter(str((c or {}).get("outcome")) for c in customers.values())
            parts.append(", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())))
    elif name in (steps.VERIFY_TWILIO_PROFILE, steps.VERIFY_SEGMENT, steps.VERIFY_STRIPE):
        if result.get("status"):
            parts.append(f"status {text.id(result['status'])}")
        for label in ("gone_at", "finished_at", "checked_at"):
            if result.get(label):
                parts.append(f"{label.replace('_', ' ')} {_time(result[label], text)}")
        if result.get("summary"):
            parts.append(text.free(result["summary"]))
    if result.get("reason"):
        parts.append(f"reason: {text.free(result['reason'])}")
    return "; ".join(p for p in parts if p)


def _field(label: str, value: Any, text: _Redactor) -> str:
    if label.endswith("_at"):
        return _time(value, text)
    return text.free(value) if label == "summary" else text.id(value)


def _evidence(record: dict[str, Any], text: _Redactor) -> list[Section]:
    stripe, twilio, segment = (record.get(k) or {} for k in ("stripe", "twilio", "segment"))
    sections = []

    s = Section("Stripe")
    s.done.append(("Method", text.id(stripe.get("method")) or "-"))
    s.done.append(("Outcome", text.id(stripe.get("purge")) or "-"))
    for tag, customer in sorted((stripe.get("customers") or {}).items()):
        s.done.append((f"Customer {text.id(tag)}", text.id((customer or {}).get("outcome"))))
        proven_by = (customer or {}).get("proven_by")
        s.proven.append((f"Customer {text.id(tag)}", text.id(proven_by) if proven_by else "not proven"))
    if stripe.get("redaction_job_id"):
        s.done.append(("Redaction job", text.id(stripe["redaction_job_id"])))
    proof = stripe.get("proof") or {}
    for label in ("status", "checked_at", "summary"):
        if proof.get(label):
            s.proven.append((label.replace("_", " ").capitalize(), _field(label, proof[label], text)))
    sections.append(s)

    t = Section("Twilio")
    profiles = twilio.get("memory_profile_ids") or []
    t.done.append(("Memory profiles", ", ".join(text.id(p) for p in profiles) or "none"))
    t.done.append(("Profile deletion", text.id(twilio.get("profile_purge")) or "-"))
    t.done.append(("History deleted", _counts(twilio.get("history_deleted")) or "nothing"))
    t.done.append(("History deletion", text.id(twilio.get("history_purge")) or "-"))
    if twilio.get("conversation_services_searched") is not None:
        t.done.append(("Conversation services searched", str(twilio["conversation_services_searched"])))
    profile_proof = twilio.get("profile_proof") or {}
    for label in ("gone_at", "summary"):
        if profile_proof.get(label):
            value = _field(label, profile_proof[label], text)
            t.proven.append((f"Memory profiles {label.replace('_', ' ')}", value))
    if twilio.get("history_remaining_after") is not None:
        t.proven.append(("History left afterwards", _counts(twilio["history_remaining_after"]) or "nothing"))
    sections.append(t)

    g = Section("Segment")
    g.done.append(("Regulation", text.id(segment.get("regulation_id")) or "none"))
    g.done.append(("Type", text.id(segment.get("regulation_type")) or "-"))
    g.done.append(("Outcome", text.id(segment.get("purge")) or "-"))
    g.done.append(
        (
            "Profiles / user ids",
            f"{_count(segment.get('segment_ids'))} / {_count(segment.get('user_ids_hmac'))} (keyed hashes)",
        )
    )
    segment_proof = segment.get("proof") or {}
    for label in ("status", "finished_at", "checked_at", "summary"):
        if segment_proof.get(label):
            g.proven.append((label.replace("_", " ").capitalize(), _field(label, segment_proof[label], text)))
    sections.append(g)
    return sections


def _kept(record: dict[str, Any], text: _Redactor, latest: dict[str, Any] | None = None) -> list[str]:
    """What the record shows was not erased by this request, or is kept, each with its reason;
    what the erasure policy keeps as ``latest`` (the last review entry) states it, if any."""
    stripe, twilio, segment = (record.get(k) or {} for k in ("stripe", "twilio", "segment"))
    kept = []
    for item in (latest or record).get("kept") or []:  # what the erasure policy kept (docs/policy.md)
        until = (
            f"reviewed from {item['review_date'][:10]}"
            if item.get("review_date")
            else f"kept until {item['retained_until'][:10]}"
            if item.get("retained_until")
            else "until a person decides"
        )
        basis = f"; {text.free(item['legal_basis'])}" if item.get("legal_basis") else ""
        kept.append(
            f"Stripe {text.id(item.get('id'))}: {item.get('action')} by the erasure policy "
            f"({', '.join(item.get('cases') or []) or 'its stripe.customer rule'}), {until}{basis}"
        )
    if stripe.get("method") == "delete" and stripe.get("customers"):
        kept.append(
            "Stripe keeps the deleted customers' charges and their payment details: method delete "
            "(a redaction job, method redaction_job, removes them)"
        )
    for tag in stripe.get("not_found_at_intake") or []:
        kept.append(f"Stripe {text.id(tag)}: the id given at intake was unknown to Stripe: nothing to erase")
    for tag in stripe.get("deleted_before_resolve") or []:
        kept.append(f"Stripe {text.id(tag)}: already deleted before this request")
    for tag in stripe.get("already_absent_customer_ids") or []:
        kept.append(f"Stripe {text.id(tag)}: gone before our tag or delete")
    remaining = twilio.get("history_remaining_after") or {}
    if any(isinstance(n, int) and n for n in remaining.values()):
        kept.append(f"Twilio history left after the erasure: {_counts(remaining)}")
    for system, reason in (
        ("Stripe", stripe.get("reason")),
        ("Twilio history", twilio.get("history_reason")),
        ("Segment", segment.get("reason")),
    ):
        if reason:
            kept.append(f"{system}: {text.free(reason)}")
    return kept


def _runs(request: ErasureRequest | None, record: dict[str, Any]) -> list[tuple[str, str, str]]:
    runs = []
    if request is not None and request.claimed_by and "/" in request.claimed_by:
        dag_id, run_id = request.claimed_by.split("/", 1)
        runs.append(("Latest claim", dag_id, run_id))
    if record.get("run_id"):
        dag_id = runs[0][1] if runs else "gdpr_erasure"
        runs.append(("Audit record written", dag_id, str(record["run_id"])))
    return runs
