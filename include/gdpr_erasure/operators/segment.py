"""Ask Segment to delete and suppress the person: one regulation for their user ids."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from gdpr_erasure import steps
from gdpr_erasure.batch import RequestScope
from gdpr_erasure.hooks.errors import ProviderQuotaExhausted
from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.operators.base import ErasureStepOperator
from gdpr_erasure.store import StepStatus


class SegmentRegulationOperator(ErasureStepOperator):
    """Create one Segment regulation (default ``SUPPRESS_WITH_DELETE``) for the request's user ids.

    Regulations take ``USER_ID`` subjects only, so the ids come from ``resolve_identity``. Segment
    has no idempotency key: the regulation id is recorded the moment it is returned, and a rerun
    that finds one recorded reuses it instead of creating another, unless Segment reported that
    regulation failed (then a retry asks again). Deletion is asynchronous;
    ``SegmentRegulationSensor`` waits for ``FINISHED``.

    Segment regulates at most 110,000 users a month per workspace and answers 429 with the reset
    beyond that. When it asks for a longer wait than the hook retries
    (:class:`~gdpr_erasure.hooks.errors.ProviderQuotaExhausted`), the step is recorded as waiting
    (``pending`` with ``not_before``), not failed: the request's other steps go on in this run,
    the task does not retry, ``write_ledger_record`` defers the request until then, and the first run
    after it asks Segment again (the only step left to do).

    :param request_ids: the batch of erasure requests (templated).
    :param segment_conn_id: Segment connection.
    :param regulation_type: Segment regulation type.
    """

    template_fields = ("request_ids", "regulation_type")
    ui_color = "#e8f5e9"
    step_name = steps.SEGMENT

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

    def process(self, request: RequestScope, context: Context) -> dict[str, Any]:
        previous = request.step(steps.SEGMENT)
        earlier = request.finished_step(steps.SEGMENT, proof=steps.VERIFY_SEGMENT)
        if earlier is not None:
            regulation_id = steps.result_as(steps.SegmentErasure, earlier).get("regulation_id")
            request.log.info(
                "Segment step already %s (regulation %s): not creating another",
                earlier.status.value,
                regulation_id,
            )
            return {"regulation_id": regulation_id, "reused": True}

        resolved = request.resolved()["segment"]
        user_ids = resolved["user_ids"]
        if not user_ids:
            reason = "no Segment profile" if not resolved["segment_ids"] else "Segment profile has no user_id"
            request.record(steps.SEGMENT, StepStatus.SKIPPED, steps.SegmentErasure(reason=reason))
            request.log.info("%s: no regulation needed", reason)
            return {"regulation_id": None}

        # Reached again when Segment reported the earlier regulation failed (try a new one), or
        # when the step waited for Segment's quota (ask again now that the request is due).
        earlier_try = steps.result_as(steps.SegmentErasure, previous)
        failed_before = list(earlier_try.get("failed_regulation_ids", []))
        if earlier_try.get("regulation_id"):
            failed_before.append(earlier_try["regulation_id"])
            request.log.warning("regulation(s) %s failed: requesting a new one", failed_before)
        try:
            regulation_id = self.hook(SegmentHook, self.segment_conn_id).create_regulation(
                user_ids, self.regulation_type
            )
        except ProviderQuotaExhausted as exc:
            return self._wait_for_quota(request, exc, len(user_ids), failed_before)
        request.record(
            steps.SEGMENT,
            StepStatus.DONE,
            steps.SegmentErasure(
                regulation_id=regulation_id,
                regulation_type=self.regulation_type,
                subjects=len(user_ids),
                failed_regulation_ids=failed_before,
            ),
        )
        request.log.info(
            "Segment regulation %s (%s) created for %d user id(s)",
            regulation_id,
            self.regulation_type,
            len(user_ids),
        )
        return {"regulation_id": regulation_id, "reused": False}

    def _wait_for_quota(
        self, request: RequestScope, exc: ProviderQuotaExhausted, subjects: int, failed_before: list[str]
    ) -> dict[str, Any]:
        """Record that the step waits for Segment's quota until ``exc.not_before``: not a failure
        (the batch task goes on and does not retry), and what Segment said stays in the step."""
        due = exc.not_before.isoformat()
        request.record(
            steps.SEGMENT,
            StepStatus.PENDING,
            steps.SegmentErasure(
                waiting_for="quota",
                not_before=due,
                reason=str(exc),
                subjects=subjects,
                failed_regulation_ids=failed_before,
            ),
        )
        request.log.warning(
            "Segment's regulation quota is spent (HTTP %s, code %s): no regulation before %s; the "
            "request waits until then (deferred) while the other systems are erased now",
            exc.status,
            exc.code,
            due,
        )
        return {"regulation_id": None, "not_before": due}
