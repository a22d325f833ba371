"""Wait until Twilio Memory no longer returns the deleted profiles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.triggers.base import PollUntilDoneTrigger


class TwilioProfileDeletedTrigger(PollUntilDoneTrigger):
    """Done when ``GET /v1/Stores/{store}/Profiles/{id}`` answers 404 for every profile.

    :param profile_ids: Memory profile ids (``mem_profile_...``).
    :param twilio_conn_id: Twilio connection.
    :param poll_interval: seconds between checks.
    """

    def __init__(
        self,
        profile_ids: list[str],
        twilio_conn_id: str = "twilio_default",
        poll_interval: float = 5.0,
        deadline: float | None = None,
    ):
        super().__init__(poll_interval, deadline)
        self.profile_ids = list(profile_ids)
        self.twilio_conn_id = twilio_conn_id

    def serialize_kwargs(self) -> dict[str, Any]:
        return {
            "profile_ids": self.profile_ids,
            "twilio_conn_id": self.twilio_conn_id,
            **super().serialize_kwargs(),
        }

    def check(self) -> tuple[str, dict[str, Any]]:
        hook = TwilioHook(self.twilio_conn_id)
        remaining = [pid for pid in self.profile_ids if hook.memory_profile_exists(pid)]
        if remaining:
            return "waiting", {"summary": f"{len(remaining)} profile(s) still present"}
        return "done", {"profiles": self.profile_ids, "gone_at": datetime.now(UTC).isoformat()}
