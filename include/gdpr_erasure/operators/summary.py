"""Report the run: how each request ended, which are nearing or past the GDPR deadline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from gdpr_erasure.batch import ComplianceStoreMixin, as_request_ids, is_dry_run, log_group
from gdpr_erasure.store import RequestStatus
from gdpr_erasure.store.engine import DEFAULT_CONN_ID
from gdpr_erasure.store.types import utcnow

#: Outcomes that mean this run did not do its job for the request.
_BAD = {RequestStatus.FAILED, RequestStatus.NEEDS_ATTENTION, RequestStatus.IN_PROGRESS}
GDPR_DEADLINE = timedelta(days=30)  # Art. 12(3): one month from receipt


class RunFailed(AirflowFailException):
    """Some requests did not complete, or some are past the legal deadline."""


class RunSummaryOperator(ComplianceStoreMixin, BaseOperator):
    """Count this run's requests per outcome, log a table, report requests nearing or past the
    30-day deadline, and fail the run when any request failed or any is overdue, so neither can
    hide behind a green run (the DAG's failure callback then alerts).

    ``verifying`` is not a failure: the provider accepted the deletion and a later run checks it.
    Nor is ``deferred``: a provider's quota is spent (Segment's monthly regulations); the summary
    lists when each such request is due, and warns when that is past its 30-day limit.

    :param request_ids: the batches ``claim_requests`` returned (templated / XComArg).
    :param warn_after: age at which an open request is reported as nearing the deadline.
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    template_fields: Sequence[str] = ("request_ids",)
    ui_color = "#eceff1"

    def __init__(
        self,
        *,
        request_ids: Any,
        warn_after: timedelta = timedelta(days=25),
        compliance_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.request_ids = request_ids
        self.warn_after = warn_after
        self.compliance_conn_id = compliance_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        if self.request_ids is None:
            # claim_requests never ran (the preflight failed, or the claim itself did): this task
            # is the run's last, so it must fail too or the run would show green.
            raise RunFailed("no request was claimed: claim_requests did not run (see the preflight's log)")
        ids = as_request_ids(self.request_ids)
        if is_dry_run(context):
            self.log.info(
                "dry run over %d pending request(s): resolved and reported, nothing deleted", len(ids)
            )
            return {"dry_run": True, "requests": len(ids)}
        requests = [self.store.get(rid) for rid in ids]
        counts = Counter(r.status.value for r in requests)
        bad = {r.id: r.status.value for r in requests if r.status in _BAD}
        deferred = sorted(
            (r for r in requests if r.status is RequestStatus.DEFERRED), key=lambda r: (r.not_before, r.id)
        )
        now = utcnow()
        nearing = self.store.open_requests_received_before(now - self.warn_after)
        overdue = [r for r in nearing if r.received_at < now - GDPR_DEADLINE]

        with log_group(self.log, f"Run summary: {len(ids)} request(s)"):
            for status in RequestStatus:
                if counts.get(status.value):
                    self.log.info("%-16s %d", status.value, counts[status.value])
            for request in requests:
                if request.status in _BAD:
                    self.log.warning(
                        "%s: %s (%s)", request.id, request.status.value, request.last_error or "-"
                    )
            self.log.info("compliance store now: %s", dict(sorted(self.store.counts_by_status().items())))
        if deferred:
            with log_group(self.log, f"Waiting for a provider's quota: {len(deferred)} request(s)"):
                for request in deferred:
                    self.log.info(
                        "%s: deferred until %s (%s)",
                        request.id,
                        request.not_before.isoformat(),
                        request.last_error or "-",
                    )
                    if request.not_before > request.received_at + GDPR_DEADLINE:
                        self.log.warning(
                            "%s: due after its 30-day limit (%s): ask the provider to raise the quota",
                            request.id,
                            (request.received_at + GDPR_DEADLINE).date().isoformat(),
                        )
        with log_group(
            self.log, f"GDPR deadline: {len(overdue)} overdue, {len(nearing) - len(overdue)} nearing"
        ):
            for request in nearing:
                age = (now - request.received_at).days
                self.log.warning("%s: %s, received %d days ago", request.id, request.status.value, age)

        summary = {
            "requests": len(ids),
            **counts,
            "overdue": len(overdue),
            "nearing_deadline": len(nearing) - len(overdue),
            # Request ids and times only (this is XCom): when each deferred request is due.
            "deferred_until": {r.id: r.not_before.isoformat() for r in deferred},
        }
        problems = []
        if bad:
            problems.append(f"{len(bad)} of {len(ids)} request(s) did not complete: {bad}")
        if overdue:
            problems.append(f"{len(overdue)} request(s) past the 30-day limit: {[r.id for r in overdue]}")
        if problems:
            raise RunFailed("; ".join(problems))
        return summary
