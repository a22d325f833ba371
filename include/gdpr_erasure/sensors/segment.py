"""Prove that Segment finished the regulation."""

from __future__ import annotations

from typing import Any

from gdpr_erasure import steps
from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.proofs.segment import SegmentRegulationCheck
from gdpr_erasure.sensors.base import DeletionProofSensor


class SegmentRegulationSensor(DeletionProofSensor):
    """Deferrable: waits for the regulation's ``overallStatus``. ``FINISHED`` passes;
    ``FAILED``, ``INVALID``, ``NOT_SUPPORTED`` and ``PARTIAL_SUCCESS`` fail with the reason taken
    from ``streamStatus`` (kept in the store as evidence).

    :param request_ids: the batch of erasure requests (templated).
    :param segment_conn_id: Segment connection.
    """

    erasure_step = steps.SEGMENT
    verify_step = steps.VERIFY_SEGMENT
    check_class = SegmentRegulationCheck

    def __init__(self, *, segment_conn_id: str = SegmentHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.segment_conn_id = segment_conn_id

    @property
    def provider_conn_id(self) -> str:
        return self.segment_conn_id
