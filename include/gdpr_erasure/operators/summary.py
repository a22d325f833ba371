"""Report the run: how many requests ended how; fail the run if any request failed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from gdpr_erasure.operators.base import ComplianceStoreMixin, is_dry_run, log_group
from gdpr_erasure.store import RequestStatus
from gdpr_erasure.store.engine import DEFAULT_CONN_ID

_BAD = {RequestStatus.FAILED, RequestStatus.NEEDS_ATTENTION, RequestStatus.IN_PROGRESS}


class RunFailed(AirflowFailException):
    """Some requests of this run did not complete (retrying the summary would not change that)."""


class SummarizeRunOperator(ComplianceStoreMixin, BaseOperator):
    """Count this run's requests per outcome, log a table, and fail when any did not complete,
    so that one failed erasure cannot hide behind a green run.

    :param request_ids: the ids ``claim_requests`` returned (templated / XComArg).
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    template_fields: Sequence[str] = ("request_ids",)
    ui_color = "#eceff1"

    def __init__(self, *, request_ids: Any, compliance_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.request_ids = request_ids
        self.compliance_conn_id = compliance_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        ids = list(self.request_ids or [])
        if is_dry_run(context):
            self.log.info(
                "dry run over %d pending request(s): resolved and reported, nothing deleted", len(ids)
            )
            return {"dry_run": True, "requests": len(ids)}
        statuses = {rid: self.store.get(rid).status for rid in ids}
        counts = Counter(status.value for status in statuses.values())
        with log_group(self.log, f"Run summary: {len(ids)} request(s)"):
            for status in RequestStatus:
                if counts.get(status.value):
                    self.log.info("%-16s %d", status.value, counts[status.value])
            for rid, status in statuses.items():
                if status in _BAD:
                    self.log.warning(
                        "%s: %s (%s)", rid, status.value, self.store.get(rid).last_error or "no reason"
                    )
            overall = self.store.counts_by_status()
            self.log.info("compliance store now: %s", dict(sorted(overall.items())))
        bad = {rid: s.value for rid, s in statuses.items() if s in _BAD}
        if bad:
            raise RunFailed(f"{len(bad)} of {len(ids)} request(s) did not complete: {bad}")
        return {"requests": len(ids), **counts}
