"""Prove that Segment finished the regulation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gdpr_erasure import steps
from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.proofs.base import ProofCheck

SUCCESS = "FINISHED"
FAILURE = frozenset({"FAILED", "INVALID", "NOT_SUPPORTED", "PARTIAL_SUCCESS"})


def failure_reason(regulation: dict[str, Any]) -> str:
    """What went wrong, from ``streamStatus``: the destinations that did not finish and why.

    :param regulation: Segment's answer for the regulation.
    """
    problems = []
    for stream in regulation.get("streamStatus") or []:
        for dest in stream.get("destinationStatus") or []:
            if dest.get("status") not in (None, "FINISHED"):
                name = dest.get("name") or dest.get("id")
                problems.append(f"{name}: {dest.get('status')} {dest.get('errString') or ''}")
    detail = "; ".join(p.strip() for p in problems) or "no destination detail"
    return f"regulation {regulation.get('id')} is {regulation.get('overallStatus')} ({detail})"


class SegmentRegulationCheck(ProofCheck):
    """Done on ``FINISHED``; failed on FAILED, INVALID, NOT_SUPPORTED or PARTIAL_SUCCESS, and
    when Segment does not know the regulation (a 404 is not a proof).

    :param regulation_id: Segment ``regulateId``.
    :param segment_conn_id: Segment connection.
    """

    def __init__(self, regulation_id: str, segment_conn_id: str = "segment_default") -> None:
        self.regulation_id = regulation_id
        self.segment_conn_id = segment_conn_id

    @classmethod
    def from_erasure(
        cls, erasure: steps.SegmentErasure, conn_id: str, tag: Callable[[str], str]
    ) -> SegmentRegulationCheck | None:
        """The check of the regulation ``erase_segment`` created; None if it created none.

        :param erasure: the erasure step's stored result.
        :param conn_id: Segment connection.
        :param tag: unused (Stripe's checks name customers by tag).
        """
        regulation_id = erasure.get("regulation_id")
        return cls(regulation_id, conn_id) if regulation_id else None

    def check(self) -> tuple[steps.ProofState, steps.SegmentRegulationProof]:
        regulation = SegmentHook(self.segment_conn_id).get_regulation(self.regulation_id)
        if regulation is None:
            return "failed", steps.SegmentRegulationProof(
                regulation_id=self.regulation_id,
                reason=f"regulation {self.regulation_id} not found",
            )
        status = regulation.get("overallStatus")
        evidence = steps.SegmentRegulationProof(
            regulation_id=self.regulation_id,
            status=status,
            finished_at=regulation.get("finishedAt"),
            checked_at=datetime.now(UTC).isoformat(),
        )
        if status == SUCCESS:
            return "done", evidence
        if status in FAILURE:
            return "failed", {
                **evidence,
                "reason": failure_reason(regulation),
                "stream_status": regulation.get("streamStatus"),
            }
        return "waiting", {**evidence, "summary": f"regulation {status}"}
