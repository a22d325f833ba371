"""The task that writes the ledger record: it closes a request, deciding its outcome from the
recorded steps, appends its audit record to the ledger and forgets its identifiers.

A request the erasure policy kept something of closes ``completed_with_exemptions``, its record
listing each object kept (``kept``) and the policy that decided (``policy``). When a later run
reviews what was kept (its review date passed), the outcome of the review is a new ledger entry of
kind ``review``: records are never rewritten."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, TypeVar

from airflow.sdk import Context, TriggerRule
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from gdpr_erasure import steps
from gdpr_erasure.batch import RequestScope, as_request_ids, is_dry_run, run_batch, task_try
from gdpr_erasure.hashing import (
    ALGORITHM,
    HashKey,
    identifier_hashes,
    identifiers_hash,
    keyed_hash,
    load_hash_key,
    stripe_tag,
    tag_of_hmac,
)
from gdpr_erasure.ledger.heads import load_ledger_key
from gdpr_erasure.ledger.log import Ledger
from gdpr_erasure.ledger.witness import witness_from_connection
from gdpr_erasure.operators.base import ErasureStepOperator
from gdpr_erasure.operators.stripe import KEPT
from gdpr_erasure.policy import (
    ACTIVE_SUBSCRIPTION,
    CUSTOMER_BALANCE,
    HOLD_FOR_REVIEW,
    OPEN_DISPUTE,
    OPEN_INVOICE,
    REDACT,
    RETAIN,
    STRIPE_CUSTOMER,
    WITHHOLD,
)
from gdpr_erasure.store import (
    AuditEntry,
    AuditRecordExists,
    ErasureRequest,
    RequestStatus,
    StepResult,
    StepStatus,
    TaskTry,
)
from gdpr_erasure.store.chain import REVIEW
from gdpr_erasure.store.status import CLOSED

AUDIT_SCHEMA = "gdpr-erasure-audit/1"
COMPLETED = RequestStatus.COMPLETED.value
COMPLETED_WITH_EXEMPTIONS = RequestStatus.COMPLETED_WITH_EXEMPTIONS.value
_ERASURE_OK = {StepStatus.DONE, StepStatus.PENDING, StepStatus.SKIPPED, StepStatus.ALREADY_ABSENT}
_NEEDS_PROOF = {StepStatus.DONE, StepStatus.PENDING}
R = TypeVar("R")


class RequestsFailed(AirflowFailException):
    """Some requests of the batch could not be erased or proven; they are marked failed (final
    for this run: retrying the audit step cannot change the upstream outcome). The other
    requests of the batch were closed before this is raised."""


def open_steps(results: dict[str, StepResult]) -> tuple[list[str], list[str], dict[str, datetime]]:
    """Why a request cannot be closed yet, as ``(failures, still_pending, waiting)``.

    A failure is an erasure that did not succeed or a deletion the provider reported failed; still
    pending is a deletion the provider has accepted but not finished (a Segment regulation that
    is RUNNING when the sensor's patience ran out); waiting maps an erasure that a provider's quota
    held back (Segment's monthly regulations: ``pending`` with ``not_before``) to the time it
    may run again.
    """
    failures: list[str] = []
    pending: list[str] = []
    waiting: dict[str, datetime] = {}
    resolve = results.get(steps.RESOLVE)
    if resolve is None or resolve.status is not StepStatus.DONE:
        reason = resolve.result.get("reason") if resolve else None
        return [f"{steps.RESOLVE}: {reason or 'did not run'}"], [], {}
    for erasure, verify in steps.ERASURE_STEPS.items():
        result = results.get(erasure)
        if result is None:
            failures.append(f"{erasure}: did not run")
        elif result.status is StepStatus.PENDING and result.result.get("not_before"):
            waiting[erasure] = datetime.fromisoformat(result.result["not_before"])
        elif result.status not in _ERASURE_OK or result.status is StepStatus.PENDING:
            failures.append(f"{erasure}: {result.status.value}")
        elif verify and result.status in _NEEDS_PROOF:
            proof = results.get(verify)
            if proof is not None and proof.status is StepStatus.PENDING:
                pending.append(f"{verify}: {proof.result.get('status') or 'pending'}")
            elif proof is None or proof.status is not StepStatus.DONE:
                reason = proof.result.get("reason") if proof else None
                failures.append(f"{verify}: {reason or (proof.status.value if proof else 'not proven')}")
    return failures, pending, waiting


def build_audit_record(
    request: ErasureRequest,
    results: dict[str, StepResult],
    key,
    run_id: str,
    ran_in: TaskTry | None = None,
) -> dict[str, Any]:
    """The ledger entry: what was erased where, with which evidence. No raw identifier: the
    identifiers and Segment user ids appear only as HMAC-SHA256 values.

    The fields ``profile_purge``, ``history_purge`` and ``purge`` hold each erasure step's status.
    They keep the word of schema ``gdpr-erasure-audit/1``: every reader (the export, receipts,
    the auditor page) reads them in the records already hashed into the ledger, and a renamed
    field would make two spellings of one schema (docs/glossary.md, "purge").

    ``ran_in`` (records written since store schema 5) names the task instance that wrote the
    record: ``dag_run_id`` and ``map_index`` as Airflow's REST API names them, with the DAG, the
    full task id and the try, enough to open its log. Only there: where each step ran is in the
    store's step rows, because a record names no step (docs/glossary.md), and records written
    before carry no ``ran_in``, which every reader accepts.

    ``outcome`` is ``completed``, or ``completed_with_exemptions`` when the erasure policy kept
    something (records written since the policy, issue 15): ``kept`` lists each object kept
    (:func:`kept_objects`) and ``policy`` names the policy that decided (its digest and file
    name). Records written before have neither; readers take a missing ``kept`` as empty.

    :param request: the request as stored.
    :param results: its recorded steps.
    :param key: the hash key.
    :param run_id: the DAG run closing it.
    :param ran_in: the ``write_ledger_record`` task instance and try; None leaves ``ran_in`` out.
    """

    def status(name: str) -> str | None:
        return results[name].status.value if name in results else None

    def result(kind: type[R], name: str) -> R:
        return steps.result_as(kind, results.get(name))

    resolved = result(steps.Resolution, steps.RESOLVE)
    stripe, segment = result(steps.StripeErasure, steps.STRIPE), result(steps.SegmentErasure, steps.SEGMENT)
    history = result(steps.TwilioHistoryErasure, steps.TWILIO_HISTORY)
    where = {}
    if ran_in is not None:
        where["ran_in"] = {
            "dag_id": ran_in.dag_id,
            "task_id": ran_in.task_id,
            "dag_run_id": ran_in.run_id,
            "map_index": ran_in.map_index,
            "try_number": ran_in.try_number,
        }
    kept = kept_objects(stripe, key)
    return {
        "schema": AUDIT_SCHEMA,
        "request_id": request.id,
        "received_at": request.received_at.isoformat(),
        "completed_at": datetime.now(UTC).isoformat(),
        "outcome": COMPLETED_WITH_EXEMPTIONS if kept else COMPLETED,
        "kept": kept,
        "policy": stripe.get("policy"),
        "attempts": request.attempts,
        "run_id": run_id,
        **where,
        "subject": {
            "identifier_types": request.identifiers.present() if request.identifiers else [],
            "identifiers_hash": identifiers_hash(key, request.identifiers) if request.identifiers else None,
            # Each identifier's own keyed hash: the lookup finds the record by any one of them.
            "identifier_hashes": identifier_hashes(key, request.identifiers) if request.identifiers else {},
            "hash_algorithm": ALGORITHM,
            "hash_key_id": key.key_id,
        },
        "twilio": {
            "memory_profile_ids": resolved.get("twilio", {}).get("memory_profile_ids", []),
            "profile_purge": status(steps.TWILIO_PROFILE),
            "profile_proof": result(steps.TwilioProfileProof, steps.VERIFY_TWILIO_PROFILE) or None,
            "history_purge": status(steps.TWILIO_HISTORY),
            "history_deleted": history.get("deleted", {}),
            "history_remaining_after": history.get("remaining_after"),
            "history_reason": history.get("reason"),
            "conversation_services_searched": history.get("conversation_services_searched"),
        },
        "segment": {
            "user_ids_hmac": [keyed_hash(key, u) for u in resolved.get("segment", {}).get("user_ids", [])],
            "segment_ids": resolved.get("segment", {}).get("segment_ids", []),
            "regulation_id": segment.get("regulation_id"),
            "regulation_type": segment.get("regulation_type"),
            "purge": status(steps.SEGMENT),
            "reason": segment.get("reason"),
            "proof": result(steps.SegmentRegulationProof, steps.VERIFY_SEGMENT) or None,
        },
        "stripe": _stripe_audit(
            resolved.get("stripe") or {},
            stripe,
            status(steps.STRIPE),
            result(steps.StripeProof, steps.VERIFY_STRIPE),
            key,
        ),
    }


def _stripe_audit(
    resolved: steps.StripeIds | dict[str, Any],
    stripe: steps.StripeErasure,
    erasure_status: str | None,
    proof: steps.StripeProof,
    key: HashKey,
) -> dict[str, Any]:
    """The Stripe part of the audit record. A ``cus_`` id links to charges that keep PII under the
    ``delete`` method, so it is an identifier too: every place that would name a customer holds
    its tag instead (:func:`~gdpr_erasure.hashing.stripe_tag`: ``cus#`` and the first 12 hex
    characters of its HMAC-SHA256), and ``customer_hmacs`` maps each tag to the full keyed hash
    (the subject's ``hash_key_id``). The ``*_ids`` field names are kept; their values are tags.
    Ops match a ``cus_`` id to a tag with ``gdpr-erasure hash --stripe-customer``.

    Customers are kept apart by what happened to them:

    * ``erased_customer_ids``: ``deleted`` (our delete, then ``deleted: true`` or a 404) or
      ``redacted`` (our redaction job succeeded), each proven;
    * ``already_absent_customer_ids``: seen at resolve, gone before our tag or delete;
    * ``not_found_at_intake``: the id given at intake answered 404 at resolve, so Stripe never
      knew it (or a server that answers deleted customers with 404 had deleted it): not an
      erasure, never among the customers above;
    * ``deleted_before_resolve``: the id given at intake was already the ``deleted: true`` object.

    ``customers`` holds each handled customer's outcome with ``proven_by``: the answer that
    proved it gone (``deleted_stub`` or ``not_found``, or ``redaction_job_succeeded``).
    """
    hmacs: dict[str, str] = {}

    def tag(customer_id: str) -> str:
        if customer_id != stripe_tag(key, customer_id):  # not a tag already (the proof's keys are)
            full = keyed_hash(key, customer_id)
            customer_id = tag_of_hmac(full)
            hmacs[customer_id] = full
        return customer_id

    proven = {tag(cid): p for cid, p in ((proof.get("customers") or {}) if proof else {}).items()}
    job_succeeded = bool(proof) and proof.get("status") == "succeeded"
    customers: dict[str, Any] = {}
    for cid, record in (stripe.get("customers") or {}).items():
        outcome = record.get("outcome")
        if outcome == "redacted":
            proven_by = "redaction_job_succeeded" if job_succeeded else None
        elif tag(cid) in proven:
            proven_by = proven[tag(cid)].get("evidence")
        elif outcome == "already_absent":
            proven_by = record.get("evidence")  # the tag's or delete's own 404 / deleted object
        else:
            proven_by = None
        customers[tag(cid)] = {**record, "proven_by": proven_by}
    absent = {tag(cid): a for cid, a in (resolved.get("absent_at_resolve") or {}).items()}
    if proof and proof.get("customers"):
        proof = {**proof, "customers": proven}
    return {
        "customer_ids": sorted(customers),
        "customer_hmacs": dict(sorted(hmacs.items())),
        "method": stripe.get("method"),
        "customers": customers,
        "erased_customer_ids": sorted(
            t
            for t, c in customers.items()
            if c.get("outcome") in ("deleted", "redacted") and c["proven_by"] is not None
        ),
        "already_absent_customer_ids": sorted(
            t for t, c in customers.items() if c.get("outcome") == "already_absent"
        ),
        "not_found_at_intake": sorted(t for t, a in absent.items() if a.get("outcome") == "never_existed"),
        "deleted_before_resolve": sorted(
            t for t, a in absent.items() if a.get("outcome") == "deleted_before_resolve"
        ),
        "absent_at_resolve": absent,
        "deletion_ts": stripe.get("deletion_ts"),
        "redaction_job_id": stripe.get("redaction_job_id"),
        "purge": erasure_status,
        "reason": stripe.get("reason"),
        "proof": proof or None,
    }


#: Why a live-state case keeps a customer, as the ``reason`` of a kept object says it.
_CASE_REASONS = {
    ACTIVE_SUBSCRIPTION: "the customer has an active subscription",
    OPEN_INVOICE: "the customer has an open or uncollectible invoice",
    OPEN_DISPUTE: "a payment of the customer is disputed",
    CUSTOMER_BALANCE: "the customer's balance is not zero",
}
#: What the policy's action does with what it keeps.
_ACTION_REASONS = {
    WITHHOLD: "withheld: no write to it until its review date",
    HOLD_FOR_REVIEW: "held for a person's review: no write to it",
    RETAIN: "retained untouched until the end of its retention period",
    REDACT: "redacted: the person's details removed, the amounts kept until the end of the retention period",
}


def kept_reason(decision: steps.StripeCustomerDecision) -> str:
    """One line saying why a customer is kept, from the names of its decision (never from the
    customer's data): the deciding case, or the ``stripe.customer`` rule, and what the action does."""
    why = _CASE_REASONS.get(decision.get("deciding_case") or "", f"the policy's {STRIPE_CUSTOMER} rule")
    return f"{why}; {_ACTION_REASONS.get(decision.get('action') or '', 'kept')}"


def kept_objects(stripe: steps.StripeErasure, key: HashKey) -> list[dict[str, Any]]:
    """The objects the erasure policy kept, as the audit record lists them (``kept``), by id:
    each Stripe customer with no write (``withhold``, ``retain``, ``hold_for_review``), and each
    one redacted whose rule keeps its amounts for a period (``redact`` with ``retain_for``)::

        {"system": "stripe", "kind": "stripe.customer", "id": "cus#<12 hex>", "action": "withhold",
         "cases": ["open_dispute"], "reason": "<one line>", "legal_basis": "...",
         "review_date": "<ISO 8601>" | null, "retained_until": "<ISO 8601>" | null}

    ``review_date`` is when a withheld customer is checked again (the request comes back then);
    ``retained_until`` until when a retained or redacted one's data stays. No ``cus_`` id: the id
    is the customer's tag.

    :param stripe: the ``erase_stripe`` step's result.
    :param key: the hash key (tags).
    """
    items = []
    for customer_id, record in (stripe.get("customers") or {}).items():
        decision = record.get("decision") or {}
        outcome = record.get("outcome")
        if outcome != KEPT and not (outcome == "redacted" and decision.get("retained_until")):
            continue
        items.append(
            {
                "system": "stripe",
                "kind": STRIPE_CUSTOMER,
                "id": stripe_tag(key, customer_id),
                "action": decision.get("action"),
                "cases": list(decision.get("cases") or []),
                "reason": kept_reason(decision),
                "legal_basis": decision.get("legal_basis"),
                "review_date": decision.get("review_date"),
                "retained_until": decision.get("retained_until"),
            }
        )
    return sorted(items, key=lambda item: (item["system"], item["id"]))


def next_review(kept: list[dict[str, Any]]) -> datetime | None:
    """The earliest review date among kept objects (None: nothing kept comes back by itself)."""
    dates = [datetime.fromisoformat(item["review_date"]) for item in kept if item.get("review_date")]
    return min(dates) if dates else None


def review_key(request_id: str, attempt: int) -> str:
    """The ledger key of a request's review entry in one attempt (request ids have no '/')."""
    return f"{request_id}/review/{attempt}"


def build_review_record(
    request: ErasureRequest,
    results: dict[str, StepResult],
    key: HashKey,
    first: AuditEntry,
    run_id: str,
    ran_in: TaskTry | None = None,
) -> dict[str, Any]:
    """The ledger entry of a review: a request closed ``completed_with_exemptions`` came back at
    its review date (or was sent back), and the customers its policy kept were checked again.
    Its erasure record is not rewritten (records never are); this entry follows it::

        {"schema", "kind": "review", "request_id", "review": <attempt>,
         "follows": {"seq", "record_hash"} (the request's erasure record), "received_at",
         "reviewed_at", "outcome": "completed" | "completed_with_exemptions", "attempts",
         "run_id", "ran_in", "stripe": <as in the erasure record, the reviewed customers only>,
         "kept": <everything still kept, as in the erasure record>, "policy"}

    The reviewed customers are those still named by ``cus_`` id (a closed request keeps only the
    ids of the customers kept until a review); ``stripe.proof`` is the proof of those the review
    erased (None when it erased none).

    :param request: the request as stored.
    :param results: its recorded steps.
    :param key: the hash key.
    :param first: the request's erasure record.
    :param run_id: the DAG run of the review.
    :param ran_in: the ``write_ledger_record`` task instance and try.
    """
    stripe = steps.result_as(steps.StripeErasure, results.get(steps.STRIPE))
    reviewed = {
        cid: c
        for cid, c in (stripe.get("customers") or {}).items()
        if cid != stripe_tag(key, cid)  # still a cus_ id: kept until this review
    }
    part: steps.StripeErasure = {**stripe, "customers": reviewed}
    job = stripe.get("redaction_job_id")
    if not any(c.get("redaction_job_id") == job for c in reviewed.values()):
        part.pop("redaction_job_id", None)  # an earlier attempt's job
        part.pop("redaction_job_status", None)
    erased_now = any(c.get("outcome") != KEPT for c in reviewed.values())
    proof = steps.result_as(steps.StripeProof, results.get(steps.VERIFY_STRIPE)) if erased_now else {}
    stripe_result = results.get(steps.STRIPE)
    kept = kept_objects(stripe, key)
    record: dict[str, Any] = {
        "schema": AUDIT_SCHEMA,
        "kind": REVIEW,
        "request_id": request.id,
        "review": request.attempts,
        "follows": {"seq": first.seq, "record_hash": first.record_hash},
        "received_at": request.received_at.isoformat(),
        "reviewed_at": datetime.now(UTC).isoformat(),
        "outcome": COMPLETED_WITH_EXEMPTIONS if kept else COMPLETED,
        "attempts": request.attempts,
        "run_id": run_id,
        "stripe": _stripe_audit({}, part, stripe_result.status.value if stripe_result else None, proof, key),
        "kept": kept,
        "policy": stripe.get("policy"),
    }
    if ran_in is not None:
        record["ran_in"] = {
            "dag_id": ran_in.dag_id,
            "task_id": ran_in.task_id,
            "dag_run_id": ran_in.run_id,
            "map_index": ran_in.map_index,
            "try_number": ran_in.try_number,
        }
    return record


class LedgerRecordOperator(ErasureStepOperator):
    """Close the request once every system is erased and proven.

    Runs whatever happened upstream (``all_done``) and decides from the compliance store, not
    from Airflow task states:

    * every erasure succeeded and every deletion that needs proof is proven: append one audit
      record (the ledger refuses a second one), mark the request ``completed``, or
      ``completed_with_exemptions`` when the erasure policy kept something (``not_before`` at the
      earliest review date of what it kept, if any), and replace its identifiers in the intake
      table by their keyed hash (the ``cus_`` ids of customers kept until a review stay in the
      stored steps: the review needs them, docs/policy.md);
    * the same for a review of a request closed with exemptions (claimed again at its review
      date): its record exists already and is never rewritten, so the review appends an entry of
      its own (kind ``review``, keyed ``<request id>/review/<attempt>``), and the request ends
      ``completed`` once nothing is kept any more;
    * a provider accepted a deletion but has not finished it (sensor patience ran out): mark it
      ``verifying``; a later run re-checks only that;
    * a provider asked to wait past the retry cap (Segment's monthly regulation quota): mark it
      ``deferred`` until ``not_before``, without counting a failure;
    * otherwise: mark it ``failed`` with the reasons (``needs_attention`` at the
      ``max_failures``-th failure). The task fails once the whole batch is handled, so the
      batch shows red in the grid while every healthy request of it is closed.

    Each of those writes is idempotent, so a rerun after a crash finishes the job without a
    second record.

    :param request_ids: the batch of erasure requests (templated).
    :param max_failures: failed attempts after which the request goes to ``needs_attention``.
    :param retention_days: days to keep the identifiers after completion (templated; 0 forgets
        them right away, otherwise ``forget_identifiers`` does it when the time comes).
    """

    template_fields = ("request_ids", "max_failures", "retention_days")
    ui_color = "#e0f2f1"

    def __init__(self, *, max_failures: int = 3, retention_days: int | str = 0, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.max_failures = max_failures
        self.retention_days = retention_days

    def execute(self, context: Context) -> dict[str, Any]:
        if is_dry_run(context):
            raise AirflowSkipException("dry run: no audit record")
        ids = as_request_ids(self.request_ids)
        key = load_hash_key()  # once per batch: each lookup is a round trip to the API server
        outcomes = run_batch(ids, lambda rid: self._close_one(rid, key, context), self.max_concurrency)
        counts = Counter(outcome for outcome, _ in outcomes)
        self.log.info("write_ledger_record: %d request(s): %s", len(ids), dict(sorted(counts.items())))
        if counts.get(COMPLETED) or counts.get(COMPLETED_WITH_EXEMPTIONS):
            self.sign_tree_head()
        failed = {rid: reason for rid, (outcome, reason) in zip(ids, outcomes, strict=True) if reason}
        if failed:
            raise RequestsFailed(f"{len(failed)} of {len(ids)} request(s) not completed: {failed}")
        return {"requests": len(ids), **counts}

    def sign_tree_head(self) -> None:
        """Sign a head over every record so far and publish it to the witness (docs/ledger.md).
        Without the gdpr_ledger_key connection the ledger is only hash-chained: say so loudly."""
        key = load_ledger_key()
        if key is None:
            self.log.warning(
                "no gdpr_ledger_key connection: no signed tree head, the ledger is only hash-chained"
            )
            return
        started = time.perf_counter()
        head = Ledger(self.store).sign_new_head(key, witness_from_connection())
        if head is not None:
            self.log.info(
                "signed tree head: size %d, root %s (%.0f ms)",
                head.tree_size,
                head.root_hash,
                (time.perf_counter() - started) * 1000,
            )

    def _close_one(self, request_id: str, key: HashKey, context: Context) -> tuple[str, str]:
        # No ran_in: this task records no step of its own, it only rewrites steps (tags and keyed
        # hashes for ids), which must keep where they ran. Its own place goes into the record.
        request = RequestScope(self.store, request_id, self.log)
        outcome = "error"
        try:
            outcome, reason = self.close(request, key, context)
            return outcome, reason
        finally:
            request.log.close(f"{self.task_id}: {request_id} ({outcome})")

    def close(self, scope: RequestScope, key: HashKey, context: Context) -> tuple[str, str]:
        """Close one request; returns ``(outcome, failure reason or "")``."""
        store, log = scope.store, scope.log
        request = store.get(scope.id)
        entry = store.audit_entry(scope.id)
        if request.status in CLOSED and entry is not None:
            log.info("already %s (audit seq %d)", request.status.value, entry.seq)
            return request.status.value, ""
        if request.status is RequestStatus.ON_HOLD:
            # A legal hold stopped it before a write (docs/holds.md): not a failure, no record yet;
            # after the release a run resumes it and closes it then.
            log.info("on hold (%s): left open until the hold is released", request.last_error or "legal hold")
            return "on_hold", ""

        results = store.steps(scope.id)
        # A record written in an earlier attempt: this attempt reviews what the policy kept.
        reviewing = entry is not None and entry.record.get("attempts") != request.attempts
        review = store.audit_entry(review_key(scope.id, request.attempts)) if reviewing else None
        written = review if reviewing else entry
        failures, pending, waiting = open_steps(results) if written is None else ([], [], {})
        if failures:  # a failure elsewhere outweighs a wait: the request is retried as failed
            reason = "; ".join(failures)
            after = store.record_failure(scope.id, reason, max_failures=int(self.max_failures))
            log.error(
                "%s (failure %d of %d): %s",
                after.status.value,
                after.failures,
                int(self.max_failures),
                reason,
            )
            return after.status.value, f"{after.status.value}: {reason}"
        if waiting:
            # A provider's quota is spent (Segment's monthly regulations): everything else is
            # done; the request waits, without a failure, for the first run after the reset.
            not_before = max(waiting.values())
            reason = "; ".join(
                f"{step}: provider quota spent, waiting until {due.isoformat()}"
                for step, due in sorted(waiting.items())
            )
            if request.status is RequestStatus.DEFERRED:  # a rerun of this task
                log.info("already deferred until %s", request.not_before)
            else:
                store.defer(scope.id, not_before, reason)
                log.warning(
                    "deferred until %s: %s; a run after that finishes it", not_before.isoformat(), reason
                )
            return "deferred", ""
        if pending:
            store.transition(scope.id, RequestStatus.VERIFYING, expected=[RequestStatus.IN_PROGRESS])
            log.info(
                "erased, proof still pending (%s): verifying; a later run checks again", "; ".join(pending)
            )
            return "verifying", ""

        if written is None:
            ran_in = task_try(context)
            if reviewing:
                record = build_review_record(request, results, key, entry, context["run_id"], ran_in)
                ledger_key = review_key(scope.id, request.attempts)
            else:
                record = build_audit_record(request, results, key, run_id=context["run_id"], ran_in=ran_in)
                ledger_key = scope.id
            try:
                written = store.append_audit(ledger_key, record)
            except AuditRecordExists:  # a concurrent rerun got there first
                written = store.audit_entry(ledger_key)
        what = "review entry" if reviewing else "audit record"
        log.info("%s seq %d, hash %s", what, written.seq, written.record_hash)
        outcome = written.record.get("outcome") or COMPLETED
        kept = written.record.get("kept") or []
        if outcome == COMPLETED_WITH_EXEMPTIONS:
            review_at = next_review(kept)
            if request.status is not RequestStatus.COMPLETED_WITH_EXEMPTIONS:
                store.transition(scope.id, RequestStatus.COMPLETED_WITH_EXEMPTIONS, not_before=review_at)
            log.info(
                "%d object(s) kept by the erasure policy: %s; %s",
                len(kept),
                ", ".join(f"{item['id']} ({item['action']})" for item in kept),
                f"checked again from {review_at.isoformat()}" if review_at else "no automatic review",
            )
        elif request.status is not RequestStatus.COMPLETED:
            store.transition(scope.id, RequestStatus.COMPLETED)
        # scope.steps, not the snapshot above: each forget records the resolve step, and the
        # second must start from what the first wrote, or it would write the first's ids back.
        self._forget_resolved_user_ids(scope, scope.steps, key)
        self._forget_stripe_customer_ids(scope, scope.steps, key)
        if request.identifiers is not None and int(self.retention_days) == 0:
            store.erase_identifiers(scope.id, identifiers_hash(key, request.identifiers))
            log.info("identifiers replaced by their keyed hash")
        return outcome, ""

    @staticmethod
    def _forget_resolved_user_ids(scope: RequestScope, results: dict[str, StepResult], key: HashKey) -> None:
        """Segment user ids can be emails in some workspaces: once the request is closed, the
        stored resolution keeps only their keyed hashes (as the audit record does)."""
        resolved = results.get(steps.RESOLVE)
        resolution = steps.result_as(steps.Resolution, resolved)
        segment = resolution.get("segment")
        if not segment or not segment.get("user_ids"):
            return
        forgotten: steps.Resolution = {
            **resolution,
            "segment": {
                **segment,
                "user_ids": [],
                "user_ids_hmac": [keyed_hash(key, u) for u in segment["user_ids"]],
            },
        }
        scope.record(steps.RESOLVE, resolved.status, forgotten)

    @staticmethod
    def _forget_stripe_customer_ids(
        scope: RequestScope, results: dict[str, StepResult], key: HashKey
    ) -> None:
        """Stripe ``cus_`` ids link to charges that can keep PII: once the request is closed, the
        stored steps name customers only by their tag (as the audit record does). Tags are left
        as they are, so a rerun after a crash changes nothing more.

        Except the customers the erasure policy kept until a review date (``withhold``): their
        ``cus_`` id stays in the resolve step's ``customer_ids`` and as their key in
        ``erase_stripe``, because the review reads their live state again and erases them if it
        may; the review that settles them forgets them. The person's email and phone are forgotten
        all the same: the review never resolves the person again (docs/policy.md)."""
        stripe_step = steps.result_as(steps.StripeErasure, results.get(steps.STRIPE))
        in_review = {
            cid
            for cid, c in (stripe_step.get("customers") or {}).items()
            if c.get("outcome") == KEPT and (c.get("decision") or {}).get("review_date")
        }

        def tagged(mapping: dict[str, Any] | None) -> dict[str, Any]:
            return {
                cid if cid in in_review else stripe_tag(key, cid): v for cid, v in (mapping or {}).items()
            }

        def untagged(mapping: dict[str, Any] | list[str] | None) -> bool:
            return any(cid != stripe_tag(key, cid) and cid not in in_review for cid in mapping or {})

        resolved = results.get(steps.RESOLVE)
        resolution = steps.result_as(steps.Resolution, resolved)
        stripe = resolution.get("stripe") or {}
        if (
            untagged(stripe.get("customer_ids"))
            or untagged(stripe.get("matched_by"))
            or untagged(stripe.get("absent_at_resolve"))
            or (stripe.get("customer_ids") and "customer_tags" not in stripe)
        ):
            tags = {
                stripe_tag(key, c)
                for c in [*stripe.get("customer_ids", []), *stripe.get("customer_tags", [])]
            }
            forgotten: steps.StripeIds = {
                **stripe,
                "customer_ids": [c for c in stripe.get("customer_ids", []) if c in in_review],
                "customer_tags": sorted(tags),
                "matched_by": tagged(stripe.get("matched_by")),
                "absent_at_resolve": tagged(stripe.get("absent_at_resolve")),
            }
            scope.record(steps.RESOLVE, resolved.status, {**resolution, "stripe": forgotten})
        for name in (steps.STRIPE, steps.VERIFY_STRIPE):
            step = results.get(name)
            if step is not None and untagged(step.result.get("customers")):
                scope.record(
                    name, step.status, {**step.result, "customers": tagged(step.result["customers"])}
                )
