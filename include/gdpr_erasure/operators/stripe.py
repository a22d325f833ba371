"""Erase the person from Stripe, customer by customer as the erasure policy decides: read its
live state, then tag it, confirm the tag, and delete it or run a redaction job, or keep it
without a single write."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import Context

from gdpr_erasure import steps
from gdpr_erasure.batch import RequestScope
from gdpr_erasure.hashing import STRIPE_TAG_PREFIX, StripeTagger
from gdpr_erasure.hooks.stripe import (
    StripeHook,
    idempotency_key,
    is_deleted_stub,
    live_state_cases,
)
from gdpr_erasure.operators.base import ErasureStepOperator
from gdpr_erasure.policy import (
    ERASE,
    REDACT,
    RETAIN,
    ErasurePolicy,
    StripeDecision,
    load_policy,
    policy_location,
)
from gdpr_erasure.store import StepStatus

#: The tag set on each customer before it is deleted or redacted (Stripe's words for the two
#: methods): our erasure of it is under way.
GDPR_STATUS = "erased"
#: Per-customer outcomes after which the customer is not touched again.
SETTLED = ("deleted", "already_absent", "tagged_for_redaction", "redacted")
#: The outcome of a customer the erasure policy keeps (withhold, retain, hold_for_review).
KEPT = "kept"

_policy_lock = threading.Lock()  # module level: Airflow deep-copies operators, a lock cannot be


class TagNotConfirmed(RuntimeError):
    """Stripe's answer to the metadata update did not show our tag."""


def policy_reference(policy: ErasurePolicy) -> steps.PolicyReference:
    """Which policy decided, as records keep it: its digest and its file's name (a full path
    says where the file sits on a worker, which is no auditor's business)."""
    return steps.PolicyReference(digest=policy.digest, source=Path(policy.source).name)


def decision_record(
    decision: StripeDecision, policy: ErasurePolicy, *, attempt: int, now: datetime
) -> steps.StripeCustomerDecision:
    """A decision as the step stores it, with its dates worked out from ``now``: the review date
    of a withheld customer, and until when a retained or redacted one's data is kept.

    :param decision: the policy's decision on the customer.
    :param policy: the policy that made it.
    :param attempt: the request's attempt (claim count) that made it.
    :param now: when the live state was read.
    """
    rule = decision.rule
    review = decision.review_date(now)
    retained = rule.retained_until(now) if rule is not None and decision.action in (RETAIN, REDACT) else None
    return steps.StripeCustomerDecision(
        action=decision.action,
        cases=list(decision.cases),
        deciding_case=decision.deciding_case,
        cancel_subscriptions=decision.cancel_subscriptions,
        legal_basis=rule.legal_basis if rule is not None else None,
        review_date=review.isoformat() if review else None,
        retained_until=retained.isoformat() if retained else None,
        decided_at=now.isoformat(),
        attempt=attempt,
        policy_digest=policy.digest,
    )


def customers_to_review(state: steps.StripeErasure, attempt: int) -> list[str]:
    """The customers an earlier attempt kept that this attempt checks again: those still named by
    their ``cus_`` id (a closed request keeps only the ids of customers with a review date)."""
    return [
        customer_id
        for customer_id, record in (state.get("customers") or {}).items()
        if not customer_id.startswith(STRIPE_TAG_PREFIX)
        and record.get("outcome") == KEPT
        and (record.get("decision") or {}).get("attempt") != attempt
    ]


class StripeCustomerErasureOperator(ErasureStepOperator):
    """For every Stripe customer of the person, before any write to it:

    0. read its live state (subscriptions, open invoices, disputes, balance: read-only calls,
       :meth:`StripeHook.live_state`) and ask the erasure policy what to do
       (:meth:`~gdpr_erasure.policy.ErasurePolicy.stripe_decision`, docs/policy.md). ``withhold``,
       ``retain`` and ``hold_for_review`` keep the customer with **no write at all** (not even the
       tag): its outcome is ``kept`` with the decision, and the rest of the request goes on.
       ``cancel_then_erase`` cancels its active subscriptions first;

    then for a customer to erase or redact:

    1. set metadata ``gdpr_status=erased``, ``deletion_ts`` and ``gdpr_request_id`` and check
       them in Stripe's response (after a delete, Stripe returns no metadata, so this is the
       only moment the tag can be confirmed);
    2. delete the customer (``redaction_method=delete``) or, when the connection enables it or the
       policy says ``redact`` (an open invoice: amounts must be kept), create and run a Redaction
       Job that strips PII from it and its charges, invoices and PaymentIntents. One request may
       so have both deleted and redacted customers.

    ``deletion_ts`` is fixed on the first attempt and stored, so a rerun sends the identical
    update with the identical idempotency key; customers already handled are skipped, and a
    customer decided in this attempt of the request (its claim) keeps that decision on a task
    retry: its live state is not read again. A later attempt (a failed request retried, or the
    review of a ``completed_with_exemptions`` request at its review date) reads the live state of
    the customers still kept again, and erases those the policy now lets go.

    Per customer the step records one outcome (the audit record keeps them apart) and, since the
    policy, its ``decision`` (action, cases, deciding case, legal basis, review date, retained
    until, the attempt and the policy's digest); the step records the policy's digest and file
    name:

    * ``deleted``: our ``DELETE`` answered the deleted-customer object (``deleted: true``);
    * ``already_absent``: resolve saw it, but the live-state read, our tag or delete found it gone
      (a 404 on its path, with or without ``code``, or the ``deleted: true`` object): a repeated
      tag or delete after a crash lands here, and so does a customer deleted by someone else
      meanwhile;
    * ``tagged_for_redaction`` then ``redacted`` (with ``redaction_job_id``) once the redaction
      job covering it runs;
    * ``kept``: the policy keeps it; nothing was written to it.

    ``evidence`` says which answer settled it (``deleted_stub`` or ``not_found``) and
    ``evidence_from`` which call (``live_state``, ``tag`` or ``delete``). Ids given at intake that
    Stripe never knew never reach this step (``resolve`` lists them apart). The step is
    ``skipped`` when the policy kept every customer (nothing to prove), ``already_absent`` when
    every other one was gone, ``done`` otherwise.

    The task log names a customer by its tag (``cus#`` and 12 hex characters of its keyed hash,
    see :func:`gdpr_erasure.hashing.stripe_tag`), never by its ``cus_`` id, nor by the ids of its
    subscriptions, invoices or disputes.

    :param request_ids: the batch of erasure requests (templated).
    :param stripe_conn_id: Stripe connection.
    :param job_ready_timeout: seconds to wait for a redaction job to pass validation.
    """

    ui_color = "#ede7f6"
    step_name = steps.STRIPE

    def __init__(
        self,
        *,
        stripe_conn_id: str = StripeHook.default_conn_name,
        job_ready_timeout: float = 600,
        job_poll_interval: float = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stripe_conn_id = stripe_conn_id
        self.job_ready_timeout = job_ready_timeout
        self.job_poll_interval = job_poll_interval
        self._tag = StripeTagger()  # names customers in the log
        self._policy: ErasurePolicy | None = None

    def erasure_policy(self) -> ErasurePolicy:
        """The configured erasure policy, loaded once per task (on the first request that needs
        it, never in a dry run): every request of the batch is decided by the same file."""
        with _policy_lock:
            if self._policy is None:
                self._policy = load_policy(policy_location())
            return self._policy

    def process(self, request: RequestScope, context: Context) -> dict[str, Any]:
        attempt = request.store.get(request.id).attempts
        earlier = request.finished_step(steps.STRIPE, proof=steps.VERIFY_STRIPE)
        if earlier is not None:
            done = steps.result_as(steps.StripeErasure, earlier)
            customer_ids = customers_to_review(done, attempt)
            if not customer_ids:
                request.log.info("Stripe step already %s", earlier.status.value)
                return {"customers": len(done.get("customers", {})), "rerun": True}
            request.log.info(
                "Stripe step %s earlier; the policy kept %d customer(s): their live state is read again",
                earlier.status.value,
                len(customer_ids),
            )
        else:
            customer_ids = request.resolved()["stripe"]["customer_ids"]
            if not customer_ids:
                policy = policy_reference(self.erasure_policy())
                request.record(
                    steps.STRIPE, StepStatus.SKIPPED, steps.StripeErasure(reason="no customer", policy=policy)
                )
                request.log.info("no Stripe customer: nothing to erase")
                return {"customers": 0}

        hook = self.hook(StripeHook, self.stripe_conn_id)
        policy = self.erasure_policy()
        previous = request.step(steps.STRIPE)
        state = steps.StripeErasure(**steps.result_as(steps.StripeErasure, previous))
        state.pop("reason", None)  # an earlier attempt's error; this attempt continues its work
        proof = request.step(steps.VERIFY_STRIPE)
        if proof is not None and proof.status is StepStatus.FAILED and state.get("redaction_job_id"):
            # Stripe reported the job failed: a retry creates a new job (with a new key).
            state["failed_redaction_job_ids"] = [
                *state.get("failed_redaction_job_ids", []),
                state["redaction_job_id"],
            ]
            del state["redaction_job_id"]
        state.setdefault("deletion_ts", int(time.time()))
        state.setdefault("method", hook.redaction_method)
        state.setdefault("customers", {})
        state["policy"] = policy_reference(policy)
        _save(request, state, StepStatus.PENDING)  # the timestamp is fixed before Stripe sees it

        request.log.info(
            "Stripe customers: %s (policy %s)", ", ".join(self._tag(c) for c in customer_ids), policy.digest
        )
        for customer_id in customer_ids:
            self._erase_customer(hook, request, state, customer_id, policy, attempt)
        self._redaction_job(hook, request, state)

        outcomes = [c["outcome"] for c in state["customers"].values()]
        erased = [o for o in outcomes if o != KEPT]
        if not erased:
            status = StepStatus.SKIPPED  # the policy kept every customer: nothing written, nothing to prove
        elif all(o == "already_absent" for o in erased):
            status = StepStatus.ALREADY_ABSENT
        else:
            status = StepStatus.DONE
        self._prove_again(request, state, attempt)  # before the step reads as finished
        _save(request, state, status)
        summary = {o: outcomes.count(o) for o in sorted(set(outcomes))}
        request.log.info("Stripe (%s): %s", state["method"], summary)
        return {"customers": len(outcomes), **summary}

    def _erase_customer(
        self,
        hook: StripeHook,
        request: RequestScope,
        state: steps.StripeErasure,
        customer_id: str,
        policy: ErasurePolicy,
        attempt: int,
    ) -> None:
        name = self._tag(customer_id)
        record = state["customers"].setdefault(customer_id, steps.StripeCustomerRecord(outcome="pending"))
        if record["outcome"] in SETTLED:
            request.log.info("%s: %s earlier, skipping", name, record["outcome"])
            return
        decision = record.get("decision")
        active_subscriptions: list[str] | None = None
        if decision is None or decision.get("attempt") != attempt:
            # Read-only calls before any write: what the customer still has going on.
            live = hook.live_state(customer_id)
            if live["customer"] != "present":
                record.pop("decision", None)
                record.update(outcome="already_absent", evidence=live["customer"], evidence_from="live_state")
                request.log.info(
                    "%s: already gone from Stripe (live state answered %s)", name, live["customer"]
                )
                _save(request, state, StepStatus.PENDING)
                return
            decided = policy.stripe_decision(live_state_cases(live))
            decision = decision_record(decided, policy, attempt=attempt, now=datetime.now(UTC))
            record.update(outcome="pending", decision=decision)
            active_subscriptions = live["active_subscription"]
            _save(request, state, StepStatus.PENDING)  # decided: a retry in this attempt keeps it
            request.log.info(
                "%s: live state %s: %s%s",
                name,
                ", ".join(decision["cases"]) or "nothing going on",
                decision["action"],
                " after cancelling its subscriptions" if decision["cancel_subscriptions"] else "",
            )
        if decision["action"] not in (ERASE, REDACT):
            record["outcome"] = KEPT
            request.log.info("%s: kept (%s), no write to it; %s", name, decision["action"], _until(decision))
            _save(request, state, StepStatus.PENDING)
            return
        if decision.get("cancel_subscriptions") and not record.get("tag_confirmed"):
            self._cancel_subscriptions(hook, request, state, customer_id, active_subscriptions)
        self._tag_and_erase(hook, request, state, customer_id, redact=decision["action"] == REDACT)

    def _cancel_subscriptions(
        self,
        hook: StripeHook,
        request: RequestScope,
        state: steps.StripeErasure,
        customer_id: str,
        active: list[str] | None,
    ) -> None:
        """``cancel_then_erase``: cancel each active subscription before the tag (deleting the
        customer would cancel them too, unrecorded), counting each as it is done. A retry before
        the tag reads which are still active (those cancelled already are not).

        :param active: the ids the decision's live-state read found active (None: read them now).
        """
        record = state["customers"][customer_id]
        if active is None:
            active = hook.live_state(customer_id)["active_subscription"]
        for subscription_id in active:
            hook.cancel_subscription(subscription_id, customer_id=customer_id)
            record["subscriptions_canceled"] = record.get("subscriptions_canceled", 0) + 1
            _save(request, state, StepStatus.PENDING)
        request.log.info(
            "%s: %d subscription(s) cancelled",
            self._tag(customer_id),
            record.get("subscriptions_canceled", 0),
        )

    def _tag_and_erase(
        self,
        hook: StripeHook,
        request: RequestScope,
        state: steps.StripeErasure,
        customer_id: str,
        *,
        redact: bool,
    ) -> None:
        record = state["customers"][customer_id]
        metadata = {
            "gdpr_status": GDPR_STATUS,
            "deletion_ts": str(state["deletion_ts"]),
            "gdpr_request_id": request.id,
        }
        key = idempotency_key(request.id, "tag", customer_id, metadata["deletion_ts"])
        updated = hook.update_customer_metadata(customer_id, metadata, idempotency_key=key)
        if updated is None or is_deleted_stub(updated, customer_id):
            evidence = "not_found" if updated is None else "deleted_stub"
            record.update(outcome="already_absent", evidence=evidence, evidence_from="tag")
            request.log.info(
                "%s: already gone from Stripe (tag answered %s)", self._tag(customer_id), evidence
            )
            _save(request, state, StepStatus.PENDING)
            return
        echoed = updated.get("metadata") or {}
        if any(echoed.get(k) != v for k, v in metadata.items()):
            raise TagNotConfirmed(
                f"{self._tag(customer_id)}: Stripe's response does not show the gdpr_status tag"
            )
        record["tag_confirmed"] = True
        if state["method"] == "delete" and not redact:
            outcome = hook.delete_customer(customer_id)
            evidence = "deleted_stub" if outcome == "deleted" else "not_found"
            record.update(outcome=outcome, evidence=evidence, evidence_from="delete")
            request.log.info("%s: tagged (confirmed) and %s (%s)", self._tag(customer_id), outcome, evidence)
        else:
            record["outcome"] = "tagged_for_redaction"
            why = (
                " (the policy redacts it: amounts are kept)" if redact and state["method"] == "delete" else ""
            )
            request.log.info("%s: tagged (confirmed); redaction job follows%s", self._tag(customer_id), why)
        _save(request, state, StepStatus.PENDING)

    def _redaction_job(self, hook: StripeHook, request: RequestScope, state: steps.StripeErasure) -> None:
        failed_jobs = set(state.get("failed_redaction_job_ids", []))
        targets = [
            cid
            for cid, c in state["customers"].items()
            if c["outcome"] == "tagged_for_redaction"
            or (c["outcome"] == "redacted" and c.get("redaction_job_id") in failed_jobs)
        ]
        if not targets:
            return
        job_id = state.get("redaction_job_id")
        if job_id is not None and any(
            state["customers"][t].get("redaction_job_id") != job_id for t in targets
        ):
            # An earlier attempt's job (a review redacting another customer): this one gets its own.
            job_id = None
        if job_id is None:
            attempt = str(len(state.get("failed_redaction_job_ids", [])))
            key = idempotency_key(request.id, "redaction_job", attempt, *sorted(targets))
            job_id = hook.create_redaction_job(sorted(targets), idempotency_key=key)["id"]
            state["redaction_job_id"] = job_id
            for customer_id in targets:  # which job covers it, before it runs
                state["customers"][customer_id]["redaction_job_id"] = job_id
            _save(request, state, StepStatus.PENDING)
            request.log.info("redaction job %s created for %d customer(s)", job_id, len(targets))
        job = self._wait_until_validated(hook, job_id)
        if job["status"] == "ready":
            job = hook.run_redaction_job(job_id, idempotency_key=idempotency_key(request.id, "run", job_id))
        request.log.info("redaction job %s is %s", job_id, job["status"])
        if job["status"] in ("failed", "canceled"):
            state["failed_redaction_job_ids"] = [*state.get("failed_redaction_job_ids", []), job_id]
            del state["redaction_job_id"]
            _save(request, state, StepStatus.FAILED)
            raise RuntimeError(f"Stripe redaction job {job_id} is {job['status']}")
        state["redaction_job_status"] = job["status"]
        for customer_id in targets:  # the sensor proves the job succeeded
            state["customers"][customer_id].update(outcome="redacted", redaction_job_id=job_id)

    def _prove_again(self, request: RequestScope, state: steps.StripeErasure, attempt: int) -> None:
        """A later attempt (a review) settled a customer an earlier one kept: the proof the sensor
        recorded then does not cover it, so it is marked pending and the sensor proves the step
        again (the earlier proof stays in the request's first audit record). Within one attempt
        the sensor runs only after this step, so a finished proof is an earlier attempt's."""
        proof = request.step(steps.VERIFY_STRIPE)
        settled_now = any(
            not customer_id.startswith(STRIPE_TAG_PREFIX)
            and record["outcome"] in SETTLED
            and (record.get("decision") or {}).get("attempt") == attempt
            for customer_id, record in state["customers"].items()
        )
        if settled_now and proof is not None and proof.status in (StepStatus.DONE, StepStatus.SKIPPED):
            request.record(
                steps.VERIFY_STRIPE,
                StepStatus.PENDING,
                steps.StripeProof(summary="customers erased at a review: not proven yet"),
            )

    def _wait_until_validated(self, hook: StripeHook, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.job_ready_timeout
        while True:
            job = hook.retrieve_redaction_job(job_id)
            if job["status"] not in ("created", "validating"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"redaction job {job_id} still {job['status']} after {self.job_ready_timeout}s"
                )
            time.sleep(self.job_poll_interval)


def _until(decision: steps.StripeCustomerDecision) -> str:
    if decision.get("review_date"):
        return f"checked again from {decision['review_date']}"
    if decision.get("retained_until"):
        return f"kept until {decision['retained_until']}"
    return "kept until a person decides"


def _save(request: RequestScope, state: steps.StripeErasure, status: StepStatus) -> None:
    request.record(steps.STRIPE, status, state)
