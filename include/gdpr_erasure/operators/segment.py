"""Ask Segment to delete and suppress the person: one regulation for their user ids."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from gdpr_erasure import steps
from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.operators.base import ErasureStepOperator
from gdpr_erasure.store import StepStatus


class EraseSegmentOperator(ErasureStepOperator):
    """Create one Segment regulation (default ``SUPPRESS_WITH_DELETE``) for the request's user ids.

    Regulations take ``USER_ID`` subjects only, so the ids come from ``resolve_identity``. Segment
    has no idempotency key: the regulation id is recorded the moment it is returned, and a rerun
    that finds one recorded reuses it instead of creating another, unless Segment reported that
    regulation failed (then a retry asks again). Deletion is asynchronous;
    ``SegmentRegulationSensor`` waits for ``FINISHED``.

    :param request_id: the erasure request (templated).
    :param segment_conn_id: Segment connection.
    :param regulation_type: Segment regulation type.
    """

    template_fields = ("request_id", "regulation_type")
    ui_color = "#e8f5e9"

    def __init__(
        self,
        *,
        segment_conn_id: str = SegmentHook.default_conn_name,
        regulation_type: str = "SUPPRESS_WITH_DELETE",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.segment_conn_id = segment_conn_id
        self.regulation_type = regulation_type

    def run(self, context: Context) -> dict[str, Any]:
        previous = self.step(steps.SEGMENT)
        earlier = self.finished_step(steps.SEGMENT, proof=steps.VERIFY_SEGMENT)
        if earlier is not None:
            self.log.info(
                "Segment step of %s already %s (regulation %s): not creating another",
                self.request_id,
                earlier.status.value,
                earlier.result.get("regulation_id"),
            )
            return {"regulation_id": earlier.result.get("regulation_id"), "reused": True}

        resolved = self.resolved()["segment"]
        user_ids = resolved["user_ids"]
        if not user_ids:
            reason = "no Segment profile" if not resolved["segment_ids"] else "Segment profile has no user_id"
            self.store.record_step(self.request_id, steps.SEGMENT, StepStatus.SKIPPED, {"reason": reason})
            self.log.info("%s for %s: no regulation needed", reason, self.request_id)
            return {"regulation_id": None}

        # Only reached again when Segment reported the earlier regulation failed: try a new one.
        failed_before = []
        if previous is not None and previous.result.get("regulation_id"):
            failed_before = [
                *previous.result.get("failed_regulation_ids", []),
                previous.result["regulation_id"],
            ]
            self.log.warning(
                "regulation(s) %s failed for %s: requesting a new one", failed_before, self.request_id
            )
        regulation_id = SegmentHook(self.segment_conn_id).create_regulation(user_ids, self.regulation_type)
        self.store.record_step(
            self.request_id,
            steps.SEGMENT,
            StepStatus.DONE,
            {
                "regulation_id": regulation_id,
                "regulation_type": self.regulation_type,
                "subjects": len(user_ids),
                "failed_regulation_ids": failed_before,
            },
        )
        self.log.info(
            "Segment regulation %s (%s) created for %d user id(s) of %s",
            regulation_id,
            self.regulation_type,
            len(user_ids),
            self.request_id,
        )
        return {"regulation_id": regulation_id, "reused": False}
