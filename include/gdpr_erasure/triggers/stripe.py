"""Wait until Stripe shows the customers deleted, or their redaction job succeeded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.triggers.base import PollUntilDoneTrigger

REDACTION_FAILED = ("failed", "canceled")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class StripeCustomerDeletedTrigger(PollUntilDoneTrigger):
    """Done when every customer reads as gone: ``GET /v1/customers/{id}`` answers the
    deleted-customer object (``deleted: true`` and the same id) or a 404 on that path (with or
    without ``code: resource_missing``; see :meth:`StripeHook.retrieve_customer`). Anything else
    (a customer, a 200 without ``deleted``) keeps it waiting; an error (401, a wrong ``api_base``)
    is reported, never read as gone.

    The proof per customer is ``{"state": "deleted", "evidence": "deleted_stub" | "not_found",
    "checked_at"}``: which answer proved it. It is keyed by the customer's tag from ``tags``
    (``cus#`` and 12 hex characters of its keyed hash), as is the waiting summary, so the event
    (stored in Airflow's metadata DB) and the task log never hold a ``cus_`` id; a customer
    without a tag (a trigger serialized before tags existed) is keyed by its id.

    :param customer_ids: ``cus_`` ids to watch.
    :param tags: ``cus_`` id -> its tag (:func:`gdpr_erasure.hashing.stripe_tag`).
    :param stripe_conn_id: Stripe connection.
    :param poll_interval: seconds between checks.
    """

    def __init__(
        self,
        customer_ids: list[str],
        stripe_conn_id: str = "stripe_default",
        poll_interval: float = 5.0,
        deadline: float | None = None,
        tags: dict[str, str] | None = None,
    ):
        super().__init__(poll_interval, deadline)
        self.customer_ids = list(customer_ids)
        self.stripe_conn_id = stripe_conn_id
        self.tags = dict(tags or {})

    def serialize_kwargs(self) -> dict[str, Any]:
        return {
            "customer_ids": self.customer_ids,
            "stripe_conn_id": self.stripe_conn_id,
            "tags": self.tags,
            **super().serialize_kwargs(),
        }

    def check(self) -> tuple[str, dict[str, Any]]:
        hook = StripeHook(self.stripe_conn_id)
        proof: dict[str, Any] = {}
        for customer_id in self.customer_ids:
            presence = hook.customer_presence(customer_id)
            name = self.tags.get(customer_id, customer_id)
            if presence == "present":
                return "waiting", {"summary": f"{name} still exists"}
            proof[name] = {"state": "deleted", "evidence": presence, "checked_at": _now()}
        return "done", {"customers": proof}


class StripeRedactionJobTrigger(PollUntilDoneTrigger):
    """Done when the redaction job reaches ``succeeded``; failed on ``failed`` or ``canceled``.

    :param job_id: the redaction job.
    :param stripe_conn_id: Stripe connection.
    :param poll_interval: seconds between checks.
    """

    def __init__(
        self,
        job_id: str,
        stripe_conn_id: str = "stripe_default",
        poll_interval: float = 10.0,
        deadline: float | None = None,
    ):
        super().__init__(poll_interval, deadline)
        self.job_id = job_id
        self.stripe_conn_id = stripe_conn_id

    def serialize_kwargs(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "stripe_conn_id": self.stripe_conn_id, **super().serialize_kwargs()}

    def check(self) -> tuple[str, dict[str, Any]]:
        job = StripeHook(self.stripe_conn_id).retrieve_redaction_job(self.job_id)
        status = job.get("status")
        evidence = {"redaction_job_id": self.job_id, "status": status, "checked_at": _now()}
        if status == "succeeded":
            return "done", evidence
        if status in REDACTION_FAILED:
            return "failed", {**evidence, "reason": f"redaction job {self.job_id} is {status}"}
        return "waiting", {**evidence, "summary": f"redaction job {status}"}
