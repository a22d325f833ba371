"""Redact the person in Stripe: tag each customer, confirm the tag, then delete or redact."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import Context

from gdpr_erasure import steps
from gdpr_erasure.hooks.stripe import StripeHook, idempotency_key
from gdpr_erasure.operators.base import ErasureStepOperator, log_group
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

    :param request_id: the erasure request (templated).
    :param stripe_conn_id: Stripe connection.
    :param job_ready_timeout: seconds to wait for a redaction job to pass validation.
    """

    ui_color = "#ede7f6"

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

    def run(self, context: Context) -> dict[str, Any]:
        earlier = self.finished_step(steps.STRIPE, proof=steps.VERIFY_STRIPE)
        if earlier is not None:
            self.log.info("Stripe step of %s already %s", self.request_id, earlier.status.value)
            return {"customers": len(earlier.result.get("customers", {})), "rerun": True}
        customer_ids = self.resolved()["stripe"]["customer_ids"]
        if not customer_ids:
            self.store.record_step(
                self.request_id, steps.STRIPE, StepStatus.SKIPPED, {"reason": "no customer"}
            )
            self.log.info("no Stripe customer for %s: nothing to redact", self.request_id)
            return {"customers": 0}

        hook = StripeHook(self.stripe_conn_id)
        previous = self.step(steps.STRIPE)
        state: dict[str, Any] = dict(previous.result) if previous else {}
        proof = self.step(steps.VERIFY_STRIPE)
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
        self._save(state, StepStatus.PENDING)  # the timestamp is fixed before Stripe sees it

        with log_group(self.log, f"Stripe customers of {self.request_id}: {', '.join(customer_ids)}"):
            for customer_id in customer_ids:
                self._tag_and_delete(hook, state, customer_id)
            if state["method"] == "redaction_job":
                self._redaction_job(hook, state)

        outcomes = [c["outcome"] for c in state["customers"].values()]
        status = (
            StepStatus.ALREADY_ABSENT if all(o == "already_absent" for o in outcomes) else StepStatus.DONE
        )
        self._save(state, status)
        summary = {o: outcomes.count(o) for o in sorted(set(outcomes))}
        self.log.info("Stripe (%s) for %s: %s", state["method"], self.request_id, summary)
        return {"customers": len(outcomes), **summary}

    def _tag_and_delete(self, hook: StripeHook, state: dict[str, Any], customer_id: str) -> None:
        record = state["customers"].setdefault(customer_id, {"outcome": "pending"})
        if record["outcome"] in ("deleted", "already_absent", "tagged_for_redaction"):
            self.log.info("%s: %s earlier, skipping", customer_id, record["outcome"])
            return
        metadata = {
            "gdpr_status": GDPR_STATUS,
            "deletion_ts": str(state["deletion_ts"]),
            "gdpr_request_id": self.request_id,
        }
        key = idempotency_key(self.request_id, "tag", customer_id, metadata["deletion_ts"])
        updated = hook.update_customer_metadata(customer_id, metadata, idempotency_key=key)
        if updated is None or updated.get("deleted"):
            record["outcome"] = "already_absent"
            self.log.info("%s: already gone from Stripe", customer_id)
            self._save(state, StepStatus.PENDING)
            return
        echoed = updated.get("metadata") or {}
        if any(echoed.get(k) != v for k, v in metadata.items()):
            raise TagNotConfirmed(f"{customer_id}: Stripe's response does not show the gdpr_status tag")
        record["tag_confirmed"] = True
        if state["method"] == "delete":
            record["outcome"] = hook.delete_customer(customer_id)
            self.log.info("%s: tagged (confirmed) and %s", customer_id, record["outcome"])
        else:
            record["outcome"] = "tagged_for_redaction"
            self.log.info("%s: tagged (confirmed); redaction job follows", customer_id)
        self._save(state, StepStatus.PENDING)

    def _redaction_job(self, hook: StripeHook, state: dict[str, Any]) -> None:
        targets = [cid for cid, c in state["customers"].items() if c["outcome"] == "tagged_for_redaction"]
        if not targets:
            return
        job_id = state.get("redaction_job_id")
        if job_id is None:
            attempt = str(len(state.get("failed_redaction_job_ids", [])))
            key = idempotency_key(self.request_id, "redaction_job", attempt, *sorted(targets))
            job_id = hook.create_redaction_job(sorted(targets), idempotency_key=key)["id"]
            state["redaction_job_id"] = job_id
            self._save(state, StepStatus.PENDING)
            self.log.info("redaction job %s created for %d customer(s)", job_id, len(targets))
        job = self._wait_until_validated(hook, job_id)
        if job["status"] == "ready":
            job = hook.run_redaction_job(
                job_id, idempotency_key=idempotency_key(self.request_id, "run", job_id)
            )
        self.log.info("redaction job %s is %s", job_id, job["status"])
        if job["status"] in ("failed", "canceled"):
            state["failed_redaction_job_ids"] = [*state.get("failed_redaction_job_ids", []), job_id]
            del state["redaction_job_id"]
            self._save(state, StepStatus.FAILED)
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

    def _save(self, state: dict[str, Any], status: StepStatus) -> None:
        self.store.record_step(self.request_id, steps.STRIPE, status, state)
