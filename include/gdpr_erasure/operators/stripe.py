"""Redact the person in Stripe: tag each customer, confirm the tag, then delete or redact."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import Context

from gdpr_erasure import steps
from gdpr_erasure.hooks.stripe import StripeHook, idempotency_key
from gdpr_erasure.operators.base import ErasureStepOperator, RequestScope
from gdpr_erasure.store import StepStatus

GDPR_STATUS = "redacted"


class TagNotConfirmed(RuntimeError):
    """Stripe's answer to the metadata update did not show our tag."""


class RedactStripeOperator(ErasureStepOperator):
    """For every Stripe customer of the person:

    1. set metadata ``gdpr_status=redacted``, ``deletion_ts`` and ``gdpr_request_id`` and check
       them in Stripe's response (after a delete, Stripe returns no metadata, so this is the
       only moment the tag can be confirmed);
    2. delete the customer (``redaction_method=delete``) or, when the connection enables it,
       create and run a Redaction Job that also strips PII from charges, invoices and
       PaymentIntents.

    ``deletion_ts`` is fixed on the first attempt and stored, so a rerun sends the identical
    update with the identical idempotency key; customers already handled are skipped.
    A customer that no longer exists is ``already_absent``, not an error.

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

    def process(self, request: RequestScope, context: Context) -> dict[str, Any]:
        earlier = request.finished_step(steps.STRIPE, proof=steps.VERIFY_STRIPE)
        if earlier is not None:
            request.log.info("Stripe step already %s", earlier.status.value)
            return {"customers": len(earlier.result.get("customers", {})), "rerun": True}
        customer_ids = request.resolved()["stripe"]["customer_ids"]
        if not customer_ids:
            request.record(steps.STRIPE, StepStatus.SKIPPED, {"reason": "no customer"})
            request.log.info("no Stripe customer: nothing to redact")
            return {"customers": 0}

        hook = StripeHook(self.stripe_conn_id)
        previous = request.step(steps.STRIPE)
        state: dict[str, Any] = dict(previous.result) if previous else {}
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

        request.log.info("Stripe customers: %s", ", ".join(customer_ids))
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
        self, hook: StripeHook, request: RequestScope, state: dict[str, Any], customer_id: str
    ) -> None:
        record = state["customers"].setdefault(customer_id, {"outcome": "pending"})
        if record["outcome"] in ("deleted", "already_absent", "tagged_for_redaction"):
            request.log.info("%s: %s earlier, skipping", customer_id, record["outcome"])
            return
        metadata = {
            "gdpr_status": GDPR_STATUS,
            "deletion_ts": str(state["deletion_ts"]),
            "gdpr_request_id": request.id,
        }
        key = idempotency_key(request.id, "tag", customer_id, metadata["deletion_ts"])
        updated = hook.update_customer_metadata(customer_id, metadata, idempotency_key=key)
        if updated is None or updated.get("deleted"):
            record["outcome"] = "already_absent"
            request.log.info("%s: already gone from Stripe", customer_id)
            _save(request, state, StepStatus.PENDING)
            return
        echoed = updated.get("metadata") or {}
        if any(echoed.get(k) != v for k, v in metadata.items()):
            raise TagNotConfirmed(f"{customer_id}: Stripe's response does not show the gdpr_status tag")
        record["tag_confirmed"] = True
        if state["method"] == "delete":
            record["outcome"] = hook.delete_customer(customer_id)
            request.log.info("%s: tagged (confirmed) and %s", customer_id, record["outcome"])
        else:
            record["outcome"] = "tagged_for_redaction"
            request.log.info("%s: tagged (confirmed); redaction job follows", customer_id)
        _save(request, state, StepStatus.PENDING)

    def _redaction_job(self, hook: StripeHook, request: RequestScope, state: dict[str, Any]) -> None:
        targets = [cid for cid, c in state["customers"].items() if c["outcome"] == "tagged_for_redaction"]
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


def _save(request: RequestScope, state: dict[str, Any], status: StepStatus) -> None:
    request.record(steps.STRIPE, status, state)
