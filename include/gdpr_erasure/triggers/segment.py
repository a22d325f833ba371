"""Wait until Segment reports a regulation finished."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.triggers.base import PollUntilDoneTrigger

SUCCESS = "FINISHED"
FAILURE = frozenset({"FAILED", "INVALID", "NOT_SUPPORTED", "PARTIAL_SUCCESS"})


def failure_reason(regulation: dict[str, Any]) -> str:
    """What went wrong, from ``streamStatus``: the destinations that did not finish and why."""
    problems = []
    for stream in regulation.get("streamStatus") or []:
        for dest in stream.get("destinationStatus") or []:
            if dest.get("status") not in (None, "FINISHED"):
                name = dest.get("name") or dest.get("id")
                problems.append(f"{name}: {dest.get('status')} {dest.get('errString') or ''}")
    detail = "; ".join(p.strip() for p in problems) or "no destination detail"
    return f"regulation {regulation.get('id')} is {regulation.get('overallStatus')} ({detail})"


class SegmentRegulationTrigger(PollUntilDoneTrigger):
    """Done on ``FINISHED``; failed on FAILED, INVALID, NOT_SUPPORTED or PARTIAL_SUCCESS.

    :param regulation_id: Segment ``regulateId``.
    :param segment_conn_id: Segment connection.
    :param poll_interval: seconds between checks (Segment can take days; keep it long in production).
    """

    def __init__(
        self,
        regulation_id: str,
        segment_conn_id: str = "segment_default",
        poll_interval: float = 60.0,
        deadline: float | None = None,
    ):
        super().__init__(poll_interval, deadline)
        self.regulation_id = regulation_id
        self.segment_conn_id = segment_conn_id

    def serialize_kwargs(self) -> dict[str, Any]:
        return {
            "regulation_id": self.regulation_id,
            "segment_conn_id": self.segment_conn_id,
            **super().serialize_kwargs(),
        }

    def check(self) -> tuple[str, dict[str, Any]]:
        regulation = SegmentHook(self.segment_conn_id).get_regulation(self.regulation_id)
        if regulation is None:
            return "failed", {
                "regulation_id": self.regulation_id,
                "reason": f"regulation {self.regulation_id} not found",
            }
        status = regulation.get("overallStatus")
        evidence = {
            "regulation_id": self.regulation_id,
            "status": status,
            "finished_at": regulation.get("finishedAt"),
            "checked_at": datetime.now(UTC).isoformat(),
        }
        if status == SUCCESS:
            return "done", evidence
        if status in FAILURE:
            return "failed", {
                **evidence,
                "reason": failure_reason(regulation),
                "stream_status": regulation.get("streamStatus"),
            }
        return "waiting", {**evidence, "summary": f"regulation {status}"}
