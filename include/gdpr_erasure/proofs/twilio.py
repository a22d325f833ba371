"""Prove that Twilio Memory no longer returns the deleted profiles."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from gdpr_erasure import steps
from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.proofs.base import ProofCheck


class TwilioMemoryProfileDeletedCheck(ProofCheck):
    """Done when ``GET /v1/Stores/{store}/Profiles/{id}`` answers 404 for every profile.

    :param profile_ids: Memory profile ids (``mem_profile_...``).
    :param twilio_conn_id: Twilio connection.
    """

    def __init__(self, profile_ids: list[str], twilio_conn_id: str = "twilio_default") -> None:
        self.profile_ids = list(profile_ids)
        self.twilio_conn_id = twilio_conn_id

    @classmethod
    def from_erasure(
        cls, erasure: steps.TwilioProfileErasure, conn_id: str, tag: Callable[[str], str]
    ) -> TwilioMemoryProfileDeletedCheck | None:
        """The check of what ``erase_twilio_profile`` deleted; None if it deleted nothing.

        :param erasure: the erasure step's stored result.
        :param conn_id: Twilio connection.
        :param tag: unused (Stripe's checks name customers by tag).
        """
        profile_ids = erasure.get("profile_ids") or []
        return cls(profile_ids, conn_id) if profile_ids else None

    def check(self) -> tuple[steps.ProofState, steps.TwilioProfileProof]:
        hook = TwilioHook(self.twilio_conn_id)
        remaining = [pid for pid in self.profile_ids if hook.memory_profile_exists(pid)]
        if remaining:
            return "waiting", steps.TwilioProfileProof(summary=f"{len(remaining)} profile(s) still present")
        return "done", steps.TwilioProfileProof(
            profiles=self.profile_ids, gone_at=datetime.now(UTC).isoformat()
        )
