"""Report the run: how each request ended (what the erasure policy kept of those closed with
exemptions, which are on a legal hold), which are nearing or past the GDPR deadline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from gdpr_erasure.batch import ComplianceStoreMixin, as_request_ids, is_dry_run, log_group
from gdpr_erasure.ledger.export import KEPT_ACTIONS
from gdpr_erasure.operators.ledger_record import review_key
from gdpr_erasure.store import ComplianceStore, ErasureRequest, RequestStatus
from gdpr_erasure.store.engine import DEFAULT_CONN_ID
from gdpr_erasure.store.types import utcnow

#: Outcomes that mean this run did not do its job for the request.
_BAD = {RequestStatus.FAILED, RequestStatus.NEEDS_ATTENTION, RequestStatus.IN_PROGRESS}
GDPR_DEADLINE = timedelta(days=30)  # Art. 12(3): one month from receipt


class RunFailed(AirflowFailException):
    """Some requests did not complete, or some are past the legal deadline."""


def kept_now(store: ComplianceStore, request: ErasureRequest) -> list[dict[str, Any]]:
    """What the erasure policy keeps of a request closed ``completed_with_exemptions``, as its
    latest ledger entry lists it: the review entry of its latest attempt when that attempt was a
    review (records are never rewritten), else its erasure record. Empty without a record.

    :param store: the compliance store.
    :param request: the request as stored.
    """
    entry = store.audit_entry(request.id)
    if entry is None:
        return []
    if request.attempts > int(entry.record.get("attempts") or 0):
        entry = store.audit_entry(review_key(request.id, request.attempts)) or entry
    return list(entry.record.get("kept") or [])


def _kept_line(item: dict[str, Any]) -> str:
    """One kept object for the log: its tag (never a ``cus_`` id), action, cases, and when it comes
    back: ``cus#0f58afa1ab99 withhold (open_dispute): review on 2026-03-02``."""
    why = ", ".join(item.get("cases") or []) or str(item.get("kind"))
    if item.get("review_date"):
        when = f"review on {str(item['review_date'])[:10]}"
    elif item.get("action") == "hold_for_review":
        when = "kept until a person decides"
    elif item.get("retained_until"):
        when = f"kept until {str(item['retained_until'])[:10]}"
    else:
        when = "no automatic review"
    return f"{item.get('id')} {item.get('action')} ({why}): {when}"


class RunSummaryOperator(ComplianceStoreMixin, BaseOperator):
    """Count this run's requests per outcome, log a table, report requests nearing or past the
    30-day deadline, and fail the run when any request failed or any is overdue, so neither can
    hide behind a green run (the DAG's failure callback then alerts).

    ``verifying`` is not a failure: the provider accepted the deletion and a later run checks it.
    Nor is ``deferred``: a provider's quota is spent (Segment's monthly regulations); the summary
    lists when each such request is due, and warns when that is past its 30-day limit. Nor is
    ``on_hold`` (a legal hold stopped it before any write; listed with its hold), nor
    ``completed_with_exemptions``: counted apart from ``completed``, with each object the erasure
    policy kept (its tag, action, cases and review date), the count per action and when each
    request is reviewed (docs/policy.md).

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
        exempted = [r for r in requests if r.status is RequestStatus.COMPLETED_WITH_EXEMPTIONS]
        kept = {r.id: kept_now(self.store, r) for r in exempted}
        kept_by_action = dict.fromkeys(KEPT_ACTIONS, 0)
        for items in kept.values():
            for item in items:
                kept_by_action[str(item.get("action"))] = kept_by_action.get(str(item.get("action")), 0) + 1
        held = [r for r in requests if r.status is RequestStatus.ON_HOLD]
        now = utcnow()
        nearing = self.store.open_requests_received_before(now - self.warn_after)
        overdue = [r for r in nearing if r.received_at < now - GDPR_DEADLINE]

        with log_group(self.log, f"Run summary: {len(ids)} request(s)"):
            for status in RequestStatus:
                if counts.get(status.value):
                    self.log.info("%-26s %d", status.value, counts[status.value])
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
        if exempted:
            objects = sum(len(items) for items in kept.values())
            with log_group(
                self.log, f"Kept by the erasure policy: {objects} object(s) of {len(exempted)} request(s)"
            ):
                for request in exempted:
                    for item in kept[request.id]:
                        self.log.info("%s: %s", request.id, _kept_line(item))
                    self.log.info(
                        "%s: completed with exemptions; %s",
                        request.id,
                        f"checked again from {request.not_before.isoformat()}"
                        if request.not_before
                        else "no automatic review (gdpr-erasure requeue checks it again)",
                    )
                self.log.info(
                    "by action: %s", ", ".join(f"{a} {n}" for a, n in kept_by_action.items() if n) or "-"
                )
        if held:
            with log_group(self.log, f"On legal hold: {len(held)} request(s), nothing written"):
                for request in held:
                    self.log.info(
                        "%s: %s; the erasure resumes after its release (gdpr-erasure hold list)",
                        request.id,
                        request.last_error or "on hold",
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
            # What the erasure policy kept, per action, and when each request comes back (none
            # for what is kept without a review date); the hold keeping each held request.
            "kept_by_action": kept_by_action,
            "review_dates": {r.id: r.not_before.isoformat() for r in exempted if r.not_before},
            "on_hold_by": {r.id: (r.last_error or "").removeprefix("on hold: ") for r in held},
        }
        problems = []
        if bad:
            problems.append(f"{len(bad)} of {len(ids)} request(s) did not complete: {bad}")
        if overdue:
            problems.append(f"{len(overdue)} request(s) past the 30-day limit: {[r.id for r in overdue]}")
        if problems:
            raise RunFailed("; ".join(problems))
        return summary
