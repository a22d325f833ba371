"""Take a batch of pending requests for this run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.configuration import conf

from gdpr_erasure.batch import ComplianceStoreMixin, is_dry_run
from gdpr_erasure.store import RequestStatus
from gdpr_erasure.store.engine import DEFAULT_CONN_ID


class RequestClaimOperator(ComplianceStoreMixin, BaseOperator):
    """Atomically claim up to ``max_requests`` requests and return their ids in batches of
    ``batch_size`` (only ids: this list is XCom, which is stored in clear in Airflow's metadata
    DB). Claimed are pending requests, failed ones (retry), verifying ones (re-check), deferred
    ones whose ``not_before`` has passed (a provider's quota was reset) and those whose run died
    (lease expired). Deferred requests that are not due yet stay for a later run.

    The number of batches never exceeds ``[core] max_map_length``, so the mapped groups
    downstream always expand; what is left waits for the next run. In a dry run nothing is
    claimed: the pending requests are listed so they can be resolved and reported.

    :param max_requests: most requests this run takes (templated).
    :param batch_size: requests per mapped group (templated); each task of the group works on
        its batch a few requests at a time.
    :param request_ids: only these requests, if given (templated).
    :param lease: how long the claim holds before another run may take the request over; longer
        than a run normally lasts, short enough that a crash delays requests by hours, not days.
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    template_fields: Sequence[str] = ("max_requests", "batch_size", "request_ids")
    ui_color = "#e1f5fe"

    def __init__(
        self,
        *,
        max_requests: int | str = 1000,
        batch_size: int | str = 50,
        request_ids: list[str] | str | None = None,
        lease: timedelta = timedelta(hours=6),
        compliance_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_requests = max_requests
        self.batch_size = batch_size
        self.request_ids = request_ids
        self.lease = lease
        self.compliance_conn_id = compliance_conn_id

    def execute(self, context: Context) -> list[list[str]]:
        size = max(1, int(self.batch_size))
        ceiling = conf.getint("core", "max_map_length", fallback=1024) * size
        limit = min(int(self.max_requests), ceiling)
        wanted = _as_list(self.request_ids)
        if is_dry_run(context):
            pending = self.store.list_requests([RequestStatus.PENDING], limit=limit)
            ids = [r.id for r in pending if not wanted or r.id in wanted]
            self.log.info("dry run: %d pending request(s) will be resolved, nothing claimed", len(ids))
            return batches(ids, size)
        ids = self.store.claim(
            limit,
            claimed_by=f"{context['dag'].dag_id}/{context['run_id']}",
            lease=self.lease,
            request_ids=wanted or None,
            batch_size=size,  # each request records the map index of the batch it goes to
        )
        counts = self.store.counts_by_status()
        backlog = counts.get(RequestStatus.PENDING.value, 0)
        self.log.info(
            "claimed %d request(s) (limit %d) in %d batch(es) of up to %d; %d still pending for later runs",
            len(ids),
            limit,
            -(-len(ids) // size),
            size,
            backlog,
        )
        if counts.get(RequestStatus.DEFERRED.value):
            due = self.store.deferred_requests(limit=1)[0].not_before
            self.log.info(
                "%d request(s) deferred until a provider's quota resets; the next is due %s",
                counts[RequestStatus.DEFERRED.value],
                due.isoformat(),
            )
        return batches(ids, size)


def batches(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _as_list(value: list[str] | str | None) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]
