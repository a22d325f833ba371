"""What proves a deletion: a provider check, and how often to ask it.

A check is a plain class, not a trigger. Built from what an erasure step stored, it asks the
provider once (:meth:`ProofCheck.check`) and answers ``done``, ``waiting`` or ``failed`` with
its evidence. The sensor calls it once on the worker, right after the erasure (often the proof
is already there); :class:`~gdpr_erasure.triggers.proof.DeletionProofTrigger`, the one trigger,
calls it in the triggerer until the request settles. The hooks are synchronous (official SDKs), so
there a check runs in a thread and the event loop stays free for other triggers.
"""

from __future__ import annotations

import os
from typing import Any

from gdpr_erasure.steps import ProofState

#: Replaces every interval below when set and not 0 (the sandbox: demo, tests, compose's
#: sandbox profile). Leave it unset in production.
POLL_SECONDS_ENV = "GDPR_ERASURE_POLL_SECONDS"

#: Seconds between checks in production, per check. Segment takes hours to days, so it is
#: asked rarely; Stripe and Memory answer within seconds.
POLL_SECONDS: dict[str, float] = {
    "TwilioMemoryProfileDeletedCheck": 10.0,
    "SegmentRegulationCheck": 900.0,
    "StripeCustomerDeletedCheck": 5.0,
    "StripeRedactionJobCheck": 5.0,
    "StripeErasureCheck": 5.0,  # deleted and redacted customers of one request
}


class ProofCheck:
    """Ask a provider, once, whether a deletion is proven.

    :meth:`check` returns ``(state, evidence)``: ``"done"`` (proven; the evidence is stored as the
    verify step's result), ``"failed"`` (the provider says the deletion failed; the evidence
    holds ``reason``) or ``"waiting"`` (not yet; ``summary`` says why). Errors from the provider
    that outlast the hook's retries are raised, never read as an answer.

    Checks hold provider ids (a Stripe ``cus_`` id among them), so they are never serialized:
    the trigger rebuilds them from the compliance store where it runs.
    """

    def check(self) -> tuple[ProofState, dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def poll_seconds(cls) -> float:
        """Seconds between two checks of this kind: :data:`POLL_SECONDS`, or the environment's
        :data:`POLL_SECONDS_ENV` when set (read now, not at import: tests set it late)."""
        fast = float(os.environ.get(POLL_SECONDS_ENV) or 0)
        return fast or POLL_SECONDS[cls.__name__]
