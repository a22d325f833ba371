"""Prove that Stripe deleted the customers, or that their redaction job succeeded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from gdpr_erasure import steps
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.proofs.base import ProofCheck

REDACTION_FAILED = ("failed", "canceled")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class StripeCustomerDeletedCheck(ProofCheck):
    """Done when every customer reads as gone: ``GET /v1/customers/{id}`` answers the
    deleted-customer object (``deleted: true`` and the same id) or a 404 on that path (with or
    without ``code: resource_missing``; see :meth:`StripeHook.retrieve_customer`). Anything else
    (a customer, a 200 without ``deleted``) keeps it waiting; an error (401, a wrong ``api_base``)
    is raised, never read as gone.

    The proof per customer is ``{"state": "deleted", "evidence": "deleted_stub" | "not_found",
    "checked_at"}``: which answer proved it. It is keyed by the customer's tag (``cus#`` and 12
    hex characters of its keyed hash), as is the waiting summary, so the trigger's event (stored
    in Airflow's metadata DB) and the task log never hold a ``cus_`` id.

    :param customer_ids: ``cus_`` ids to watch.
    :param stripe_conn_id: Stripe connection.
    :param tag: names a customer: :class:`gdpr_erasure.hashing.StripeTagger`.
    """

    def __init__(
        self, customer_ids: list[str], stripe_conn_id: str = "stripe_default", *, tag: Callable[[str], str]
    ) -> None:
        self.customer_ids = list(customer_ids)
        self.stripe_conn_id = stripe_conn_id
        self.tag = tag

    def check(self) -> tuple[steps.ProofState, steps.StripeProof]:
        hook = StripeHook(self.stripe_conn_id)
        proof: dict[str, steps.StripeCustomerProof] = {}
        for customer_id in self.customer_ids:
            presence = hook.customer_presence(customer_id)
            name = self.tag(customer_id)
            if presence == "present":
                return "waiting", steps.StripeProof(summary=f"{name} still exists")
            proof[name] = steps.StripeCustomerProof(state="deleted", evidence=presence, checked_at=_now())
        return "done", steps.StripeProof(customers=proof)


class StripeRedactionJobCheck(ProofCheck):
    """Done when the redaction job reaches ``succeeded``; failed on ``failed`` or ``canceled``.

    :param job_id: the redaction job.
    :param stripe_conn_id: Stripe connection.
    """

    def __init__(self, job_id: str, stripe_conn_id: str = "stripe_default") -> None:
        self.job_id = job_id
        self.stripe_conn_id = stripe_conn_id

    def check(self) -> tuple[steps.ProofState, steps.StripeProof]:
        job = StripeHook(self.stripe_conn_id).retrieve_redaction_job(self.job_id)
        status = job.get("status")
        evidence = steps.StripeProof(redaction_job_id=self.job_id, status=status, checked_at=_now())
        if status == "succeeded":
            return "done", evidence
        if status in REDACTION_FAILED:
            return "failed", {**evidence, "reason": f"redaction job {self.job_id} is {status}"}
        return "waiting", {**evidence, "summary": f"redaction job {status}"}


def stripe_proof_check(
    erasure: steps.StripeErasure, conn_id: str, tag: Callable[[str], str]
) -> ProofCheck | None:
    """The check of what ``erase_stripe`` did: its redaction job, or every customer it handled
    (those already absent too); None if it handled none.

    :param erasure: the erasure step's stored result.
    :param conn_id: Stripe connection.
    :param tag: names a customer in the proof: :class:`gdpr_erasure.hashing.StripeTagger`.
    """
    if erasure.get("method") == "redaction_job" and erasure.get("redaction_job_id"):
        return StripeRedactionJobCheck(erasure["redaction_job_id"], conn_id)
    customers = sorted(erasure.get("customers") or {})
    return StripeCustomerDeletedCheck(customers, conn_id, tag=tag) if customers else None
