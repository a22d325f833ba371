"""Prove that Stripe deleted the customers (or finished redacting them)."""

from __future__ import annotations

from typing import Any

from gdpr_erasure import steps
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.proofs.stripe import StripeCustomerDeletedCheck
from gdpr_erasure.sensors.base import DeletionProofSensor


class StripeCustomerDeletedSensor(DeletionProofSensor):
    """Deferrable: waits until ``GET /v1/customers/{id}`` reads as gone for every customer
    ``erase_stripe`` handled (the ``deleted: true`` object, or a 404 on the customer's path:
    the proof records which), or, for the redaction-job method, until the job is
    ``succeeded``. Customers that were already absent are checked too. Ids given at intake that
    Stripe never knew are not here: ``erase_stripe`` never sees them (see ``resolve``).

    The proof, which this sensor stores and logs, is keyed by each customer's tag (``cus#`` and
    12 hex characters of its keyed hash), not by ``cus_`` id; the trigger it defers to carries
    request ids only and reads the ``cus_`` ids from the compliance store in the triggerer.

    :param request_ids: the batch of erasure requests (templated).
    :param stripe_conn_id: Stripe connection.
    """

    erasure_step = steps.STRIPE
    verify_step = steps.VERIFY_STRIPE
    check_class = StripeCustomerDeletedCheck

    def __init__(self, *, stripe_conn_id: str = StripeHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stripe_conn_id = stripe_conn_id

    @property
    def provider_conn_id(self) -> str:
        return self.stripe_conn_id
