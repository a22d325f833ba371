"""Prove that Twilio Memory deleted the profiles."""

from __future__ import annotations

from typing import Any

from gdpr_erasure import steps
from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.proofs.twilio import TwilioMemoryProfileDeletedCheck
from gdpr_erasure.sensors.base import DeletionProofSensor


class TwilioMemoryProfileDeletedSensor(DeletionProofSensor):
    """Deferrable: waits until every deleted Memory profile answers 404.

    :param request_ids: the batch of erasure requests (templated).
    :param twilio_conn_id: Twilio connection.
    """

    erasure_step = steps.TWILIO_PROFILE
    verify_step = steps.VERIFY_TWILIO_PROFILE
    check_class = TwilioMemoryProfileDeletedCheck

    def __init__(self, *, twilio_conn_id: str = TwilioHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.twilio_conn_id = twilio_conn_id

    @property
    def provider_conn_id(self) -> str:
        return self.twilio_conn_id
