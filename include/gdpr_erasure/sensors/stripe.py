"""Prove that Stripe deleted the customers (or finished redacting them)."""

from __future__ import annotations

from typing import Any

from gdpr_erasure import steps
from gdpr_erasure.hashing import StripeTagger
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.sensors.base import DeletionProofSensor
from gdpr_erasure.triggers.stripe import StripeCustomerDeletedTrigger, StripeRedactionJobTrigger


class StripeCustomerDeletedSensor(DeletionProofSensor):
    """Deferrable: waits until ``GET /v1/customers/{id}`` reads as gone for every customer
    ``redact_stripe`` handled (the ``deleted: true`` object, or a 404 on the customer's path:
    the proof records which), or, for the redaction-job method, until the job is
    ``succeeded``. Customers that were already absent are checked too. Ids given at intake that
    Stripe never knew are not here: ``redact_stripe`` never sees them (see ``resolve``).

    The trigger gets each customer's tag (``cus#`` and 12 hex characters of its keyed hash), and
    the proof it returns, which this sensor stores and logs, is keyed by tag, not by ``cus_`` id.

    :param request_ids: the batch of erasure requests (templated).
    :param stripe_conn_id: Stripe connection.
    """

    purge_step = steps.STRIPE
    verify_step = steps.VERIFY_STRIPE

    def __init__(self, *, stripe_conn_id: str = StripeHook.default_conn_name, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", 5.0)
        super().__init__(**kwargs)
        self.stripe_conn_id = stripe_conn_id
        self._tag = StripeTagger()

    def _tags(self, customer_ids: list[str]) -> dict[str, str]:
        return {cid: self._tag(cid) for cid in customer_ids}

    def build_trigger(self, purge_result: dict[str, Any]):
        if purge_result.get("method") == "redaction_job" and purge_result.get("redaction_job_id"):
            return StripeRedactionJobTrigger(
                purge_result["redaction_job_id"], self.stripe_conn_id, poll_interval=self.poll_interval
            )
        customers = sorted(purge_result.get("customers") or {})
        if not customers:
            return None
        return StripeCustomerDeletedTrigger(
            customers, self.stripe_conn_id, poll_interval=self.poll_interval, tags=self._tags(customers)
        )
