"""Proof checks: what proves each erasure step's deletion, asked of the provider once per call.

A check is a plain class (:class:`~gdpr_erasure.proofs.base.ProofCheck`), one module per
provider; the sensors call it once on a worker and
:class:`~gdpr_erasure.triggers.proof.DeletionProofTrigger` calls it in the triggerer until the
request settles. This package imports neither: it sits below both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gdpr_erasure import steps
from gdpr_erasure.proofs.base import ProofCheck
from gdpr_erasure.proofs.segment import SegmentRegulationCheck
from gdpr_erasure.proofs.stripe import stripe_proof_check
from gdpr_erasure.proofs.twilio import TwilioMemoryProfileDeletedCheck

#: (erasure result, provider connection, Stripe tagger) -> the check, or None: nothing to prove.
CheckBuilder = Callable[[Any, str, Callable[[str], str]], ProofCheck | None]

#: Erasure step -> how to build the check that proves it from the step's stored result.
PROOF_CHECKS: dict[str, CheckBuilder] = {
    steps.TWILIO_PROFILE: TwilioMemoryProfileDeletedCheck.from_erasure,
    steps.SEGMENT: SegmentRegulationCheck.from_erasure,
    steps.STRIPE: stripe_proof_check,
}


def proof_check(
    erasure_step: str, erasure: dict[str, Any], conn_id: str, tag: Callable[[str], str]
) -> ProofCheck | None:
    """The check that proves ``erasure_step``'s deletion; None when the step deleted nothing.

    :param erasure_step: an erasure step with a proof (``steps.ERASURE_STEPS``).
    :param erasure: what the erasure step stored for the request.
    :param conn_id: the provider connection.
    :param tag: names a Stripe customer in the proof (:class:`~gdpr_erasure.hashing.StripeTagger`).
    """
    return PROOF_CHECKS[erasure_step](erasure, conn_id, tag)
