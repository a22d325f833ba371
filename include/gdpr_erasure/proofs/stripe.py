"""Prove that Stripe deleted the customers, or that their redaction job succeeded, or both: the
erasure policy may redact one customer of a request and the connection's method delete another."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from gdpr_erasure import steps
from gdpr_erasure.hashing import STRIPE_TAG_PREFIX
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


class StripeErasureCheck(ProofCheck):
    """Done when every part is: a request whose customers were partly deleted and partly redacted
    (the policy redacts a customer with an open invoice whatever the connection's method) needs
    both the deleted customers read as gone and the redaction job ``succeeded``. Failed as soon as
    one part fails; waiting while one part waits. The evidence merges both (``customers`` and the
    job's ``redaction_job_id`` and ``status``).

    :param parts: the checks, each of a different kind.
    """

    def __init__(self, *parts: ProofCheck) -> None:
        self.parts = parts

    def check(self) -> tuple[steps.ProofState, steps.StripeProof]:
        merged: dict = {}
        waiting: list[str] = []
        for part in self.parts:
            state, evidence = part.check()
            if state == "failed":
                return "failed", evidence
            if state == "waiting":
                waiting.append(evidence.get("summary") or str(evidence.get("status")))
            merged.update({k: v for k, v in evidence.items() if k != "summary"})
        if waiting:
            return "waiting", {**merged, "summary": "; ".join(waiting)}
        return "done", steps.StripeProof(**merged)


#: Outcomes of a customer that the redaction job covers.
_REDACTING = ("tagged_for_redaction", "redacted")


def stripe_proof_check(
    erasure: steps.StripeErasure, conn_id: str, tag: Callable[[str], str]
) -> ProofCheck | None:
    """The check of what ``erase_stripe`` did: its redaction job if a customer went through one,
    and, for the ``delete`` method, every other customer it handled (those already absent too);
    both when a request has both (:class:`StripeErasureCheck`); None if it handled none.

    Customers the erasure policy kept (``kept``: nothing written) are not checked: they are not
    erased and must not be "proven". Nor are customers already named by their tag: a request
    closed with exemptions keeps only the ``cus_`` ids of customers kept until a review, so at the
    review the others were proven already (in the request's first audit record).

    :param erasure: the erasure step's stored result.
    :param conn_id: Stripe connection.
    :param tag: names a customer in the proof: :class:`gdpr_erasure.hashing.StripeTagger`.
    """
    customers = {
        cid: c
        for cid, c in (erasure.get("customers") or {}).items()
        if not cid.startswith(STRIPE_TAG_PREFIX) and c.get("outcome") != "kept"
    }
    job_id = erasure.get("redaction_job_id")
    redacting = bool(job_id) and any(c.get("outcome") in _REDACTING for c in customers.values())
    if erasure.get("method") == "redaction_job" and redacting:
        return StripeRedactionJobCheck(job_id, conn_id)  # every customer went through the job
    gone = sorted(cid for cid, c in customers.items() if c.get("outcome") not in _REDACTING)
    deleted = StripeCustomerDeletedCheck(gone, conn_id, tag=tag) if gone else None
    job = StripeRedactionJobCheck(job_id, conn_id) if redacting else None
    if deleted and job:
        return StripeErasureCheck(deleted, job)
    return deleted or job
