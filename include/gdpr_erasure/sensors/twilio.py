"""Prove that Twilio Memory deleted the profiles."""

from __future__ import annotations

from typing import Any

from gdpr_erasure import steps
from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.sensors.base import DeletionProofSensor
from gdpr_erasure.triggers.twilio import TwilioProfileDeletedTrigger


class TwilioProfileDeletedSensor(DeletionProofSensor):
    """Deferrable: waits until every deleted Memory profile answers 404.

    :param request_ids: the batch of erasure requests (templated).
    :param twilio_conn_id: Twilio connection.
    """

    purge_step = steps.TWILIO_PROFILE
    verify_step = steps.VERIFY_TWILIO_PROFILE

    def __init__(self, *, twilio_conn_id: str = TwilioHook.default_conn_name, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", 2.0)
        super().__init__(**kwargs)
        self.twilio_conn_id = twilio_conn_id

    def build_trigger(self, purge_result: dict[str, Any]):
        profile_ids = purge_result.get("profile_ids") or []
        if not profile_ids:
            return None
        return TwilioProfileDeletedTrigger(profile_ids, self.twilio_conn_id, poll_interval=self.poll_interval)
