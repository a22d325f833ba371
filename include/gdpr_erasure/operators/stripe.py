"""Erase the person from Stripe: tag each customer, confirm the tag, then delete it or run a
redaction job."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import Context

from gdpr_erasure import steps
from gdpr_erasure.batch import RequestScope
from gdpr_erasure.hashing import StripeTagger
from gdpr_erasure.hooks.stripe import StripeHook, idempotency_key, is_deleted_stub
from gdpr_erasure.operators.base import ErasureStepOperator
from gdpr_erasure.store import StepStatus

#: The tag set on each customer before it is deleted or redacted (Stripe's words for the two
#: methods): our erasure of it is under way.
GDPR_STATUS = "erased"
#: Per-customer outcomes after which the customer is not touched again.
SETTLED = ("deleted", "already_absent", "tagged_for_redaction", "redacted")


class TagNotConfirmed(RuntimeError):
    """Stripe's answer to the metadata update did not show our tag."""


class StripeCustomerErasureOperator(ErasureStepOperator):
    """For every Stripe customer of the person:

    1. set metadata ``gdpr_status=erased``, ``deletion_ts`` and ``gdpr_request_id`` and check
       them in Stripe's response (after a delete, Stripe returns no metadata, so this is the
       only moment the tag can be confirmed);
    2. delete the customer (``redaction_method=delete``) or, when the connection enables it,
       create and run a Redaction Job that also strips PII from charges, invoices and
       PaymentIntents.

    ``deletion_ts`` is fixed on the first attempt and stored, so a rerun sends the identical
    update with the identical idempotency key; customers already handled are skipped.

    Per customer the step records one outcome (the audit record keeps them apart):

    * ``deleted``: our ``DELETE`` answered the deleted-customer object (``deleted: true``);
    * ``already_absent``: resolve saw it, but our tag or delete found it gone (a 404 on its
      path, with or without ``code``, or the ``deleted: true`` object): a repeated tag or delete
      after a crash lands here, and so does a customer deleted by someone else meanwhile;
    * ``tagged_for_redaction`` then ``redacted`` (with ``redaction_job_id``) once the redaction
      job covering it runs.

    ``evidence`` says which answer settled it (``deleted_stub`` or ``not_found``) and
    ``evidence_from`` which call (``tag`` or ``delete``). Ids given at intake that Stripe never
    knew never reach this step (``resolve`` lists them apart).

    The task log names a customer by its tag (``cus#`` and 12 hex characters of its keyed hash,
    see :func:`gdpr_erasure.hashing.stripe_tag`), never by its ``cus_`` id.

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

    def process(self, request: RequestScope, context: Context) -> dict[str, Any]:
        earlier = request.finished_step(steps.STRIPE, proof=steps.VERIFY_STRIPE)
        if earlier is not None:
            request.log.info("Stripe step already %s", earlier.status.value)
            customers = steps.result_as(steps.StripeErasure, earlier).get("customers", {})
            return {"customers": len(customers), "rerun": True}
        customer_ids = request.resolved()["stripe"]["customer_ids"]
        if not customer_ids:
            request.record(steps.STRIPE, StepStatus.SKIPPED, steps.StripeErasure(reason="no customer"))
            request.log.info("no Stripe customer: nothing to erase")
            return {"customers": 0}

        hook = StripeHook(self.stripe_conn_id)
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
        _save(request, state, StepStatus.PENDING)  # the timestamp is fixed before Stripe sees it

        request.log.info("Stripe customers: %s", ", ".join(self._tag(c) for c in customer_ids))
        for customer_id in customer_ids:
            self._tag_and_delete(hook, request, state, customer_id)
        if state["method"] == "redaction_job":
            self._redaction_job(hook, request, state)

        outcomes = [c["outcome"] for c in state["customers"].values()]
        status = (
            StepStatus.ALREADY_ABSENT if all(o == "already_absent" for o in outcomes) else StepStatus.DONE
        )
        _save(request, state, status)
        summary = {o: outcomes.count(o) for o in sorted(set(outcomes))}
        request.log.info("Stripe (%s): %s", state["method"], summary)
        return {"customers": len(outcomes), **summary}

    def _tag_and_delete(
        self, hook: StripeHook, request: RequestScope, state: steps.StripeErasure, customer_id: str
    ) -> None:
        record = state["customers"].setdefault(customer_id, steps.StripeCustomerRecord(outcome="pending"))
        if record["outcome"] in SETTLED:
            request.log.info("%s: %s earlier, skipping", self._tag(customer_id), record["outcome"])
            return
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
        if state["method"] == "delete":
            outcome = hook.delete_customer(customer_id)
            evidence = "deleted_stub" if outcome == "deleted" else "not_found"
            record.update(outcome=outcome, evidence=evidence, evidence_from="delete")
            request.log.info("%s: tagged (confirmed) and %s (%s)", self._tag(customer_id), outcome, evidence)
        else:
            record["outcome"] = "tagged_for_redaction"
            request.log.info("%s: tagged (confirmed); redaction job follows", self._tag(customer_id))
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
        if job_id is None:
            attempt = str(len(state.get("failed_redaction_job_ids", [])))
            key = idempotency_key(request.id, "redaction_job", attempt, *sorted(targets))
            job_id = hook.create_redaction_job(sorted(targets), idempotency_key=key)["id"]
            state["redaction_job_id"] = job_id
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


def _save(request: RequestScope, state: steps.StripeErasure, status: StepStatus) -> None:
    request.record(steps.STRIPE, status, state)
