"""The task that writes the ledger record: it closes a request, deciding its outcome from the
recorded steps, appends its audit record to the ledger and forgets its identifiers."""

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
from gdpr_erasure.store import (
    AuditRecordExists,
    ErasureRequest,
    RequestStatus,
    StepResult,
    StepStatus,
    TaskTry,
)

AUDIT_SCHEMA = "gdpr-erasure-audit/1"
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
    return {
        "schema": AUDIT_SCHEMA,
        "request_id": request.id,
        "received_at": request.received_at.isoformat(),
        "completed_at": datetime.now(UTC).isoformat(),
        "outcome": "completed",
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


class LedgerRecordOperator(ErasureStepOperator):
    """Close the request once every system is erased and proven.

    Runs whatever happened upstream (``all_done``) and decides from the compliance store, not
    from Airflow task states:

    * every erasure succeeded and every deletion that needs proof is proven: append one audit
      record (the ledger refuses a second one), mark the request ``completed``, and replace its
      identifiers in the intake table by their keyed hash;
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
        if counts.get("completed"):
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
        if request.status is RequestStatus.COMPLETED and entry is not None:
            log.info("already completed (audit seq %d)", entry.seq)
            return "completed", ""
        if request.status is RequestStatus.ON_HOLD:
            # A legal hold stopped it before a write (docs/holds.md): not a failure, no record yet;
            # after the release a run resumes it and closes it then.
            log.info("on hold (%s): left open until the hold is released", request.last_error or "legal hold")
            return "on_hold", ""

        results = store.steps(scope.id)
        failures, pending, waiting = open_steps(results) if entry is None else ([], [], {})
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

        if entry is None:
            record = build_audit_record(
                request, results, key, run_id=context["run_id"], ran_in=task_try(context)
            )
            try:
                entry = store.append_audit(scope.id, record)
            except AuditRecordExists:  # a concurrent rerun got there first
                entry = store.audit_entry(scope.id)
        log.info("audit record seq %d, hash %s", entry.seq, entry.record_hash)
        if request.status is not RequestStatus.COMPLETED:
            store.transition(scope.id, RequestStatus.COMPLETED)
        # scope.steps, not the snapshot above: each forget records the resolve step, and the
        # second must start from what the first wrote, or it would write the first's ids back.
        self._forget_resolved_user_ids(scope, scope.steps, key)
        self._forget_stripe_customer_ids(scope, scope.steps, key)
        if request.identifiers is not None and int(self.retention_days) == 0:
            store.erase_identifiers(scope.id, identifiers_hash(key, request.identifiers))
            log.info("identifiers replaced by their keyed hash")
        return "completed", ""

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
        as they are, so a rerun after a crash changes nothing more."""

        def tagged(mapping: dict[str, Any] | None) -> dict[str, Any]:
            return {stripe_tag(key, cid): value for cid, value in (mapping or {}).items()}

        def untagged(mapping: dict[str, Any] | None) -> bool:
            return any(cid != stripe_tag(key, cid) for cid in mapping or {})

        resolved = results.get(steps.RESOLVE)
        resolution = steps.result_as(steps.Resolution, resolved)
        stripe = resolution.get("stripe") or {}
        if (
            stripe.get("customer_ids")
            or untagged(stripe.get("matched_by"))
            or untagged(stripe.get("absent_at_resolve"))
        ):
            tags = {
                stripe_tag(key, c)
                for c in [*stripe.get("customer_ids", []), *stripe.get("customer_tags", [])]
            }
            forgotten: steps.StripeIds = {
                **stripe,
                "customer_ids": [],
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
